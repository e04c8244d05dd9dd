package orderview_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

// hosted is the read model run by the host as in production, on this test's topics.
type hosted struct {
	fixture
	unit *host.Unit
	stop func()
}

// kafkaEnv is a broker and one topic per service (with its dead-letter topic), named for this test.
type kafkaEnv struct {
	brokers []string
	topics  map[string]string // service name → this test's topic for it
}

func newKafkaEnv(t *testing.T) kafkaEnv {
	t.Helper()
	k := kafkaEnv{brokers: testenv.Kafka(t), topics: map[string]string{}}
	var all []kafkaadmin.Topic
	for _, s := range sagas.Services() {
		k.topics[s] = testenv.Name(t, s)
		all = append(all, kafkaadmin.Topic{Name: k.topics[s], Partitions: 3}, kafkaadmin.Topic{Name: k.topics[s] + consumer.DLQSuffix, Partitions: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkaadmin.EnsureTopics(ctx, k.brokers, all...); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	return k
}

// produce publishes each event to the topic of the service that emits it (its Source).
func (k kafkaEnv) produce(t *testing.T, evs ...events.Envelope) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(k.brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	msgs := make([]kafka.Message, len(evs))
	for i, e := range evs {
		topic, ok := k.topics[e.Source]
		if !ok {
			t.Fatalf("no topic for source %q", e.Source)
		}
		msgs[i] = events.ToMessage(topic, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// host opens the read model as group on dbURL through host.Open and runs it until stop or the test's end.
func (k kafkaEnv) host(t *testing.T, dbURL, group string) hosted {
	t.Helper()
	ctx := context.Background()
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	spec := orderview.Spec(orderview.Config{Group: group})
	if spec.Name != group || spec.Topic != "" || !reflect.DeepEqual(spec.Consumes, sagas.Topics()) {
		t.Fatalf("spec: name %q, topic %q, consumes %v", spec.Name, spec.Topic, spec.Consumes)
	}
	spec.Consumes = nil
	for _, s := range sagas.Services() {
		spec.Consumes = append(spec.Consumes, k.topics[s])
	}
	var svc *orderview.Service
	build := spec.Build
	spec.Build = func(d host.Deps) (host.Service, error) {
		s, err := build(d)
		svc, _ = s.(*orderview.Service)
		return s, err
	}
	unit, err := host.Open(ctx, spec, dbURL, k.brokers, reg, testenv.Logger(t), host.Options{Consumer: func(c *consumer.Config) {
		c.BackoffMin, c.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	}})
	if err != nil {
		t.Fatalf("open %s: %v", group, err)
	}
	if svc == nil {
		t.Fatal("Spec.Build did not build an *orderview.Service")
	}
	mux := http.NewServeMux()
	unit.Routes(mux)
	srv := httptest.NewServer(mux)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- unit.Run(runCtx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run %s: %v", group, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30s", group)
		}
		srv.Close()
		unit.Close()
	}
	t.Cleanup(stop)
	return hosted{fixture: fixture{svc: svc, pool: unit.Pool(), srv: srv}, unit: unit, stop: stop}
}

// eventually polls cond every 20ms until it holds, failing the test after within.

// groupName is a consumer group unique to this call that is also a valid migration component name.
func groupName(t *testing.T) string {
	n := testenv.Name(t, "g")
	return "ov_" + n[len(n)-8:]
}

func TestHostedProjectionDedupeAndReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := newKafkaEnv(t)
	dbURL := testenv.DatabaseURL(t)
	group := groupName(t)
	h := k.host(t, dbURL, group)
	s := newSaga(t)

	// stock.reserved first: the order exists only as a partial row, which the API does not show.
	k.produce(t, s.reserved(100*time.Millisecond, 1200, events.PricedLine{SKU: "mug", Quantity: 2, PriceCents: 600}))
	testenv.Eventually(t, 30*time.Second, "stock.reserved on the timeline", func() bool {
		var n int
		err := h.pool.QueryRow(ctx, `SELECT count(*) FROM timeline WHERE order_id = $1`, s.id).Scan(&n)
		return err == nil && n == 1
	})
	if status, _, _ := h.fetch(t, "/v1/orders/"+s.id); status != http.StatusNotFound {
		t.Fatalf("order before order.placed: status %d, want 404", status)
	}

	placed := s.placed(0, "cust-h", events.Item{SKU: "mug", Quantity: 2})
	k.produce(t,
		placed,
		s.event("payment", 200*time.Millisecond, events.PaymentDeclined{OrderID: s.id, Reason: "limit"}),
		s.cancelled(300*time.Millisecond, events.ReasonPaymentDeclined),
		s.released(400*time.Millisecond),
		s.event("notification", 500*time.Millisecond, events.NotificationSent{OrderID: s.id, Outcome: "order.cancelled", Channel: "log"}),
	)
	// An event type the registry does not know still makes the timeline.
	audit := s.unknown("audit.noted", 600*time.Millisecond)
	audit.Source = sagas.Shipping
	k.produce(t, audit)

	var settled orderview.Order
	testenv.Eventually(t, 30*time.Second, "the cancelled order with its whole timeline", func() bool {
		var found bool
		settled, found = h.lookup(t, s.id)
		return found && settled.Status == orderview.Cancelled && len(settled.Timeline) == 7
	})
	if settled.Reason != events.ReasonPaymentDeclined || *settled.TotalCents != 1200 || *settled.Items[0].PriceCents != 600 ||
		!settled.UpdatedAt.Equal(base.Add(600*time.Millisecond)) || settled.Timeline[6].Type != "audit.noted" {
		t.Fatalf("order %+v", settled)
	}

	// A redelivered event is recognised by the inbox and changes nothing.
	k.produce(t, placed)
	testenv.Eventually(t, 30*time.Second, "the redelivered order.placed deduplicated", func() bool {
		return h.unit.Consumer().Stats().Duplicates >= 1
	})
	if again := h.get(t, s.id); !reflect.DeepEqual(again, settled) {
		t.Fatalf("after a redelivery:\n got %+v\nwant %+v", again, settled)
	}

	// Replay: stop, reset (as an operator's command would, with a pool of its own), and rebuild under a new
	// group in the same database.
	h.stop()
	pool, err := postgres.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	admin, err := orderview.New(orderview.Config{Group: group}, pool, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Reset(ctx); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if _, err := admin.Get(ctx, settled.ID); !errors.Is(err, orderview.ErrNotFound) {
		t.Fatalf("get after reset: %v, want ErrNotFound", err)
	}
	replay := k.host(t, dbURL, groupName(t))
	var rebuilt orderview.Order
	testenv.Eventually(t, 30*time.Second, "the replay to rebuild the order", func() bool {
		var found bool
		rebuilt, found = replay.lookup(t, s.id)
		return found && len(rebuilt.Timeline) == 7
	})
	if !reflect.DeepEqual(rebuilt, settled) {
		t.Fatalf("rebuilt order differs:\n got %+v\nwant %+v", rebuilt, settled)
	}
}
