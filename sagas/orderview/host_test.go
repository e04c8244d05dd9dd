package orderview_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/projection"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

// hosted is the read model run by the host as in production, on this test's topics.
type hosted struct {
	fixture
	unit *host.Unit
}

// kafkaEnv is a broker and every service's topic under a namespace of this test.
type kafkaEnv struct {
	brokers []string
	ns      string
}

func newKafkaEnv(t *testing.T) kafkaEnv {
	t.Helper()
	k := kafkaEnv{brokers: testenv.Kafka(t), ns: testenv.Name(t, "ov") + "."}
	var all []kafkaadmin.Topic
	for _, topic := range sagas.Topics() {
		all = append(all, kafkaadmin.Topic{Name: k.ns + topic, Partitions: 3})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkaadmin.EnsureTopics(ctx, k.brokers, all...); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	return k
}

// produce publishes each event to the topic of the service that emits it (its Source).
func (k kafkaEnv) produce(t testing.TB, evs ...events.Envelope) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(k.brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	msgs := make([]kafka.Message, len(evs))
	for i, e := range evs {
		msgs[i] = events.ToMessage(k.ns+sagas.Topic(e.Source), e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Errorf("produce: %v", err)
	}
}

func (k kafkaEnv) config() projection.Config {
	return projection.Config{Brokers: k.brokers, Namespace: k.ns, BatchEvents: 500, MaxWait: 20 * time.Millisecond}
}

// host opens the read model on dbURL through host.Open and runs it until the test's end.
func (k kafkaEnv) host(t *testing.T, dbURL string) hosted {
	t.Helper()
	return k.hostWith(t, dbURL, func(*projection.Config) {})
}

// hostWith is host with the projections' configuration changed by configure.
func (k kafkaEnv) hostWith(t *testing.T, dbURL string, configure func(*projection.Config)) hosted {
	t.Helper()
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	spec := orderview.Spec(orderview.Config{})
	if !spec.Replayable() || len(spec.Consumes) != 0 {
		t.Fatalf("spec %s: a read model must be replayable and consume through its projections only", spec.Name)
	}
	unit, err := host.Open(context.Background(), spec, dbURL, k.brokers, reg, testenv.Logger(t), host.Options{Namespace: k.ns,
		Projector: func(c *projection.Config) { c.BatchEvents, c.MaxWait = 500, 20*time.Millisecond; configure(c) }})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	svc, _ := unit.Service().(*orderview.Service)
	mux := http.NewServeMux()
	unit.Routes(mux)
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- unit.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		srv.Close()
		unit.Close()
	})
	return hosted{fixture: fixture{svc: svc, pool: unit.Pool(), srv: srv}, unit: unit}
}

// runner is a second runner of the order projection on the hosted database: what `choreo replay` runs.
func (h hosted) runner(t *testing.T, k kafkaEnv) *projection.Runner {
	t.Helper()
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	cfg := k.config()
	cfg.Log = testenv.Logger(t)
	return projection.New(cfg, h.pool, reg, orderview.Projection{})
}

func TestHostedProjectionReplayAndVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := newKafkaEnv(t)
	h := k.host(t, testenv.DatabaseURL(t))
	s := newSaga(t)

	// stock.reserved first: the order exists only as a partial row, which the API does not show.
	k.produce(t, s.reserved(100*time.Millisecond, 1200, events.PricedLine{SKU: "mug", Quantity: 2, PriceCents: 600}))
	testenv.Eventually(t, 30*time.Second, "stock.reserved on the timeline", func() bool {
		var n int
		err := h.pool.QueryRow(ctx, `SELECT count(*) FROM orderview.timeline WHERE order_id = $1`, s.id).Scan(&n)
		return err == nil && n == 1
	})
	if status, _, _ := h.fetch(t, "/v1/orders/"+s.id); status != http.StatusNotFound {
		t.Fatalf("order before order.placed: status %d, want 404", status)
	}
	placed := s.placed(0, "cust-h", events.Item{SKU: "mug", Quantity: 2})
	audit := s.unknown("audit.noted", 600*time.Millisecond) // a type the registry does not know still makes the timeline
	audit.Source = sagas.Shipping
	k.produce(t, placed,
		s.event("payment", 200*time.Millisecond, events.PaymentDeclined{OrderID: s.id, Reason: "limit"}),
		s.cancelled(300*time.Millisecond, events.ReasonPaymentDeclined),
		s.released(400*time.Millisecond),
		s.event("notification", 500*time.Millisecond, events.NotificationSent{OrderID: s.id, Outcome: "order.cancelled", Channel: "log"}),
		audit, placed) // and order.placed again, as a relay may publish it twice
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

	r := h.runner(t, k)
	res, err := rebuild(t, r, projection.RebuildOptions{Verify: true})
	if err != nil || res.Different != 0 || res.Applied != 8 {
		t.Fatalf("verify: %v; %d events, %d differences: %+v", err, res.Applied, res.Different, res.Differences)
	}
	// An operator's hand edit (or a bug fixed since) is a difference Verify reports.
	if _, err := h.pool.Exec(ctx, `UPDATE orderview.orders SET status = 'CONFIRMED' WHERE id = $1`, s.id); err != nil {
		t.Fatal(err)
	}
	res, err = rebuild(t, r, projection.RebuildOptions{Verify: true})
	if err != nil || res.Different != 1 || res.Differences[0].Table != "orders" || res.Differences[0].Key != s.id ||
		!strings.Contains(res.Differences[0].Live, `"CONFIRMED"`) || !strings.Contains(res.Differences[0].Rebuilt, `"CANCELLED"`) {
		t.Fatalf("verify after an edit: %v; %+v", err, res.Differences)
	}
	// The replay puts it right, online; the live runner continues from the new copy.
	if res, err = rebuild(t, r, projection.RebuildOptions{}); err != nil || !res.Swapped {
		t.Fatalf("replay: %v (%+v)", err, res)
	}
	if again := h.get(t, s.id); !reflect.DeepEqual(again, settled) {
		t.Fatalf("after the replay:\n got %+v\nwant %+v", again, settled)
	}
	later := newSaga(t)
	k.produce(t, later.placed(0, "cust-l", events.Item{SKU: "tea", Quantity: 1}))
	testenv.Eventually(t, 30*time.Second, "an order placed after the swap", func() bool { _, ok := h.lookup(t, later.id); return ok })
}

// TestArrivalsWithinTheApplyIntervalShareATransaction sends orders one by one, closer together than the
// apply interval: the read model applies them in a few transactions, not one per order, and shows them all.
func TestArrivalsWithinTheApplyIntervalShareATransaction(t *testing.T) {
	t.Parallel()
	k := newKafkaEnv(t)
	h := k.hostWith(t, testenv.DatabaseURL(t), func(c *projection.Config) { c.ApplyInterval = 300 * time.Millisecond })
	var runner *projection.Runner
	for _, r := range h.unit.Projections() {
		if r.Projection().Name() == "orderview" {
			runner = r
		}
	}
	if runner == nil {
		t.Fatal("the unit runs no orderview projection")
	}
	// A first order, once shown, means the live copy exists (a fresh database builds it first, uncounted).
	first := newSaga(t)
	k.produce(t, first.placed(0, "cust-i", events.Item{SKU: "mug", Quantity: 1}))
	testenv.Eventually(t, 30*time.Second, "the first order", func() bool { _, ok := h.lookup(t, first.id); return ok })
	before := runner.Stats()
	const orders = 20
	ids := make([]string, orders)
	for i := range ids {
		s := newSaga(t)
		ids[i] = s.id
		k.produce(t, s.placed(0, "cust-i", events.Item{SKU: "mug", Quantity: 1}))
		time.Sleep(10 * time.Millisecond)
	}
	testenv.Eventually(t, 30*time.Second, "every order applied", func() bool { return runner.Stats().Applied-before.Applied >= orders })
	for _, id := range ids {
		if _, ok := h.lookup(t, id); !ok {
			t.Fatalf("order %s applied but not in the read model", id)
		}
	}
	// 20 sends over at least 200ms: one transaction per order without the interval, about two with it.
	if st := runner.Stats(); st.Batches-before.Batches > orders/4 {
		t.Fatalf("%d events applied in %d transactions, want at most %d", st.Applied-before.Applied, st.Batches-before.Batches, orders/4)
	}
}

// TestReplayNeverShowsAPartialModel replays while orders keep arriving and readers keep counting: no read
// sees fewer orders than the one before it, and at the end every order is there.
func TestReplayNeverShowsAPartialModel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := newKafkaEnv(t)
	h := k.host(t, testenv.DatabaseURL(t))
	count := func() int { // -1: no live copy yet
		var n int
		if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM orderview.orders WHERE created_at IS NOT NULL`).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	sagaEvents := func() []events.Envelope {
		s := newSaga(t)
		return []events.Envelope{s.placed(0, "c", events.Item{SKU: "a", Quantity: 1}),
			s.reserved(time.Second, 5, events.PricedLine{SKU: "a", Quantity: 1, PriceCents: 5}), s.confirmed(2 * time.Second)}
	}
	const before = 1500
	var evs []events.Envelope
	for range before {
		evs = append(evs, sagaEvents()...)
	}
	k.produce(t, evs...)
	testenv.Eventually(t, 60*time.Second, "the orders projected", func() bool { return count() == before })

	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		placed   atomic.Int64
		shrunk   atomic.Int64
		readings atomic.Int64
	)
	placed.Store(before)
	wg.Add(2)
	go func() { // new orders keep arriving
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			k.produce(t, sagaEvents()...)
			placed.Add(1)
		}
	}()
	go func() { // readers never see fewer orders than before
		defer wg.Done()
		last := before
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := count()
			if n < last {
				shrunk.Add(1)
				t.Errorf("a read saw %d orders after one saw %d", n, last)
			}
			last = max(last, n)
			readings.Add(1)
		}
	}()
	res, err := rebuild(t, h.runner(t, k), projection.RebuildOptions{})
	close(stop)
	wg.Wait()
	if err != nil || !res.Swapped {
		t.Fatalf("replay: %v (%+v)", err, res)
	}
	testenv.Eventually(t, 60*time.Second, "every order, old and new, after the replay", func() bool { return count() == int(placed.Load()) })
	t.Logf("replayed %d events at %.0f/s while %d orders arrived; %d reads, none saw fewer orders", res.Applied, res.Rate(), placed.Load()-before, readings.Load())
}

// TestStoredV1EventsReplayIntoTheSameModel projects a stored order.placed v1 and the same order as v2:
// both give the same order (the v1 one in the default currency), live and after a replay.
func TestStoredV1EventsReplayIntoTheSameModel(t *testing.T) {
	t.Parallel()
	k := newKafkaEnv(t)
	h := k.host(t, testenv.DatabaseURL(t))
	data, err := os.ReadFile("testdata/order_placed_v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v1 events.OrderPlacedV1
	if err := json.Unmarshal(data, &v1); err != nil {
		t.Fatal(err)
	}
	old, now := newSaga(t), newSaga(t)
	stored := old.event("order", 0, events.OrderConfirmed{OrderID: old.id}) // an envelope, then the stored v1 payload
	stored.Type, stored.Version, stored.Data = "order.placed", 1, data
	v2 := v1.Upcast().(events.OrderPlaced)
	k.produce(t, stored, now.event("order", 0, v2))
	var a, b orderview.Order
	testenv.Eventually(t, 30*time.Second, "both orders projected", func() bool {
		var ok1, ok2 bool
		a, ok1 = h.lookup(t, old.id)
		b, ok2 = h.lookup(t, now.id)
		return ok1 && ok2
	})
	if a.Currency != "USD" || a.CustomerID != "alice" || !reflect.DeepEqual(a.Items, b.Items) || a.Currency != b.Currency || a.Status != b.Status {
		t.Fatalf("v1 order %+v\nv2 order %+v", a, b)
	}
	if a.Timeline[0].Version != 1 || b.Timeline[0].Version != 2 {
		t.Fatalf("timeline versions %d and %d, want 1 and 2", a.Timeline[0].Version, b.Timeline[0].Version)
	}
	if res, err := rebuild(t, h.runner(t, k), projection.RebuildOptions{}); err != nil || !res.Swapped {
		t.Fatalf("replay: %v", err)
	}
	if again := h.get(t, old.id); !reflect.DeepEqual(again, a) {
		t.Fatalf("the v1 order after a replay:\n got %+v\nwant %+v", again, a)
	}
}

// rebuild runs r.Rebuild, waiting while another rebuild of the projection holds it: the host builds a
// missing live copy the same way when it starts, and may still hold the lock a moment after its swap.
func rebuild(t *testing.T, r *projection.Runner, opts projection.RebuildOptions) (projection.Result, error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := r.Rebuild(context.Background(), opts)
		if !errors.Is(err, projection.ErrBusy) || time.Now().After(deadline) {
			return res, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
