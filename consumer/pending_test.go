package consumer_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// TestPendingDecidesABatchInOneRoundTrip: handlers that hold their writes back and mark their key with
// MayBeDue leave the batch's decision to Pending: one call per batch, with each key once in the order
// first marked and the event that marked it last, whose one query carries every held-back write.
func TestPendingDecidesABatchInOneRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	tf, sent := f.traced(t)

	type call struct {
		keys, causes []string
		recorded     int // rows of applied the decision's query saw
	}
	var mu sync.Mutex
	var calls []call
	part := func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if _, err := postgres.Later(tx).Exec(ctx, `INSERT INTO applied (event_id, subject, seq) VALUES ($1, $2, 1)`, ev.ID, ev.Subject); err != nil {
			return err
		}
		return consumer.MayBeDue(ctx, ev.Subject, ev)
	}
	decide := func(ctx context.Context, tx pgx.Tx, due []consumer.Due) error {
		c := call{}
		for _, d := range due {
			c.keys, c.causes = append(c.keys, d.Key), append(c.causes, d.Cause.ID.String())
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) /* decide */ FROM applied WHERE subject = ANY($1)`, c.keys).Scan(&c.recorded); err != nil {
			return err
		}
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		return nil
	}
	r := cancelledRouter(t, part) // order.cancelled, marked unhurried: the batch waits for order.confirmed
	r.OnEach(part, events.OrderConfirmed{})
	r.Unhurried(events.OrderCancelled{})
	r.Scope(consumer.Pending{Decide: decide})
	c := tf.start(t, r, func(c *consumer.Config) { c.Linger = time.Minute })

	evs := []events.Envelope{event(t, "o1", 1), event(t, "o2", 1), event(t, "o1", 2), event(t, "o3", 1)}
	last, err := events.New("test", "o2", events.OrderConfirmed{OrderID: "o2"})
	if err != nil {
		t.Fatal(err)
	}
	evs = append(evs, last)
	for _, e := range evs {
		f.produce(t, events.ToMessage("", e))
	}
	testenv.Eventually(t, 30*time.Second, "the events applied", func() bool { return c.Stats().Applied == uint64(len(evs)) })

	mu.Lock()
	defer mu.Unlock()
	want := call{keys: []string{"o1", "o2", "o3"}, causes: []string{evs[2].ID.String(), last.ID.String(), evs[3].ID.String()}, recorded: 5}
	if len(calls) != 1 || !slices.Equal(calls[0].keys, want.keys) || !slices.Equal(calls[0].causes, want.causes) || calls[0].recorded != want.recorded {
		t.Fatalf("decisions %+v, want one: %+v", calls, want)
	}
	trips := sent.touching("INSERT INTO applied", "/* decide */")
	if len(trips) != 1 || !slices.ContainsFunc(trips[0], func(s string) bool { return strings.Contains(s, "/* decide */") }) {
		t.Fatalf("the batch's writes and decision took %d round trips, want 1: %q", len(trips), trips)
	}
}
