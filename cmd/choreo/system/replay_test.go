package system_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

// TestReplayRebuildsReadModel settles some sagas, stops the system, wipes the read model and deletes its
// consumer group (what `choreo replay` does), starts the system again and waits for the read model to be
// rebuilt, identical, from the topics.
func TestReplayRebuildsReadModel(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	ctx, stop := context.WithCancel(context.Background())
	first := startUntil(t, ctx, cfg)
	s := sku(t)
	first.putProduct(s, 300, 2)
	var ids []string
	for _, o := range []orderRequest{newOrder(first.customer("kim"), s, 1, "tok_visa", "US"), newOrder(first.customer("lee"), s, 5, "tok_visa", "US"), newOrder(first.customer("max"), s, 1, "tok_decline", "US")} {
		ids = append(ids, first.place(o))
	}
	for _, id := range ids {
		first.settled(id, "notification.sent")
	}
	first.drained() // compensations may still be in flight after the outcome is projected
	before := map[string]string{}
	for _, id := range ids {
		before[id] = first.viewSummary(id)
	}
	group := cfg.Host.Namespace + orderview.Name

	if err := kafkaadmin.DeleteGroup(ctx, cfg.Brokers, group); !errors.Is(err, kafkaadmin.ErrGroupActive) {
		t.Fatalf("deleting the group of a running read model: %v, want ErrGroupActive", err)
	}
	stop()
	first.wait()
	viewURL, err := postgres.EnsureDatabase(context.Background(), cfg.ServerURL, cfg.Host.Namespace+orderview.Name)
	if err != nil {
		t.Fatal(err)
	}
	viewPool, err := postgres.Connect(context.Background(), viewURL)
	if err != nil {
		t.Fatal(err)
	}
	defer viewPool.Close()
	view, err := orderview.New(orderview.Config{Group: group}, viewPool, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := view.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the stopped group to be deletable", func() bool {
		return kafkaadmin.DeleteGroup(context.Background(), cfg.Brokers, group) == nil
	})

	second := start(t, cfg)
	for _, id := range ids {
		testenv.Eventually(t, 60*time.Second, "order "+id+" rebuilt", func() bool { return second.viewSummary(id) == before[id] })
	}
	if n := scalar[int](second, sagas.Order, `SELECT count(*) FROM orders`); n != len(ids) {
		t.Fatalf("replaying the read model changed the order service: %d orders", n)
	}
}
