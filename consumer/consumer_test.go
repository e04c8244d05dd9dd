package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/devstack/pgembed"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/outbox"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is a service database with inbox, outbox (for dead letters) and an "applied" table the test
// handlers write to, a topic with its dead-letter topic, and a relay publishing dead letters.
type fixture struct {
	pool    *pgxpool.Pool
	brokers []string
	topic   string
}

func newFixture(t *testing.T, partitions int) fixture {
	t.Helper()
	ctx := context.Background()
	f := fixture{pool: testenv.Postgres(t), brokers: testenv.Kafka(t), topic: testenv.Name(t, "in")}
	if err := postgres.Migrate(ctx, f.pool, "outbox", outbox.Migrations()); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Migrate(ctx, f.pool, "inbox", consumer.Migrations()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `CREATE TABLE applied (n bigserial PRIMARY KEY, event_id uuid NOT NULL, subject text NOT NULL, seq int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	err := kafkaadmin.EnsureTopics(ctx, f.brokers,
		kafkaadmin.Topic{Name: f.topic, Partitions: partitions},
		kafkaadmin.Topic{Name: f.topic + consumer.DLQSuffix, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	w := outbox.NewKafkaWriter(f.brokers, 100, kafkaconn.Config{})
	t.Cleanup(func() { _ = w.Close() })
	relay := outbox.NewRelay(f.pool, w, testenv.Logger(t), outbox.WithPollInterval(100*time.Millisecond))
	run(t, relay.Run)
	return f
}

// run runs fn until the test ends and checks it returned cleanly.
func run(t *testing.T, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("did not stop within 30s of cancellation")
		}
	})
}

func (f fixture) start(t *testing.T, router *consumer.Router, tweak func(*consumer.Config)) *consumer.Consumer {
	t.Helper()
	cfg := consumer.Config{
		Brokers: f.brokers, Group: testenv.Name(t, "group"), Topics: []string{f.topic},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := consumer.New(cfg, f.pool, router, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c.Run)
	return c
}

// produce writes msgs to the fixture topic, each to the partition named by its key's "pN/" prefix if any.
func (f fixture) produce(t *testing.T, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{
		Addr: kafka.TCP(f.brokers...), Topic: f.topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Transport: &kafka.Transport{}, // fresh metadata: the topic was just created
		Balancer: kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int {
			if p, _, ok := strings.Cut(string(m.Key), "/"); ok && strings.HasPrefix(p, "p") {
				n, _ := strconv.Atoi(p[1:])
				return partitions[n%len(partitions)]
			}
			return partitions[0]
		}),
	}
	defer w.Close()
	for i := range msgs {
		msgs[i].Topic = ""
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func event(t *testing.T, subject string, seq int) events.Envelope {
	t.Helper()
	e, err := events.New("test", subject, events.OrderCancelled{OrderID: subject, Reason: strconv.Itoa(seq)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// record is a handler that stores the event in "applied".
func record(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	seq, _ := strconv.Atoi(ev.Payload.(events.OrderCancelled).Reason)
	_, err := tx.Exec(ctx, `INSERT INTO applied (event_id, subject, seq) VALUES ($1, $2, $3)`, ev.ID, ev.Subject, seq)
	return err
}

// cancelledRouter routes order.cancelled to h.
func cancelledRouter(t *testing.T, h consumer.Handler) *consumer.Router {
	t.Helper()
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	r := consumer.NewRouter(reg)
	r.OnEach(h, events.OrderCancelled{})
	return r
}

// countsWhen waits up to 10 s for the consumer's counts to satisfy ok and returns them (the last ones read,
// if they never do): a worker counts a batch once its commit has returned, a moment after its rows are
// visible to the test.
func countsWhen(t *testing.T, c *consumer.Consumer, ok func(consumer.Stats) bool) consumer.Stats {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if s := c.Stats(); ok(s) || time.Now().After(deadline) {
			return s
		}
	}
}

func (f fixture) appliedCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM applied`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRedeliveredEventIsAppliedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	e1, e2 := event(t, "o-1", 1), event(t, "o-1", 2)
	f.produce(t, events.ToMessage("", e1), events.ToMessage("", e1), events.ToMessage("", e2), events.ToMessage("", e1))
	c := f.start(t, cancelledRouter(t, record), nil)

	testenv.Eventually(t, 30*time.Second, "all four deliveries handled", func() bool {
		s := c.Stats()
		return s.Applied == 4
	})
	if n := f.appliedCount(t); n != 2 {
		t.Fatalf("%d events applied, want 2", n)
	}
	if s := c.Stats(); s.Duplicates != 2 {
		t.Fatalf("stats %+v, want 2 duplicates", s)
	}
}

func TestPoisonEventsAreDeadLetteredAndProcessingContinues(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	good := event(t, "o-good", 1)
	badPayload := event(t, "o-bad", 1)
	badPayload.Data = json.RawMessage(`{"order_id": 42}`)
	refused := event(t, "o-refused", 1)
	panics := event(t, "o-panics", 1)
	f.produce(t,
		kafka.Message{Key: []byte("o-garbage"), Value: []byte("not an event")},
		events.ToMessage("", badPayload),
		events.ToMessage("", refused),
		events.ToMessage("", panics),
		events.ToMessage("", good),
	)
	c := f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		switch ev.Subject {
		case "o-refused":
			return consumer.Permanent(errors.New("order o-refused is refused"))
		case "o-panics":
			var m map[string]int
			m["boom"]++ // a bug: assignment to a nil map
		}
		return record(ctx, tx, ev)
	}), nil)

	dead := consume(t, f.brokers, f.topic+consumer.DLQSuffix, 4)
	wantReasons := []string{"malformed event", "decode order.cancelled v1 payload", "order o-refused is refused", "handler panicked: assignment to entry in nil map"}
	for i, m := range dead {
		h := headers(m)
		if !strings.Contains(h[consumer.HeaderDLQError], wantReasons[i]) {
			t.Errorf("dead letter %d: error %q, want it to mention %q", i, h[consumer.HeaderDLQError], wantReasons[i])
		}
		if h[consumer.HeaderDLQTopic] != f.topic || h[consumer.HeaderDLQOffset] != strconv.Itoa(i) {
			t.Errorf("dead letter %d: origin %s@%s, want %s@%d", i, h[consumer.HeaderDLQTopic], h[consumer.HeaderDLQOffset], f.topic, i)
		}
	}
	if string(dead[0].Value) != "not an event" {
		t.Errorf("dead letter kept value %q", dead[0].Value)
	}
	testenv.Eventually(t, 10*time.Second, "the good event applied", func() bool { return f.appliedCount(t) == 1 })
	if s := countsWhen(t, c, func(s consumer.Stats) bool { return s.DeadLettered == 4 }); s.DeadLettered != 4 {
		t.Fatalf("stats %+v, want 4 dead letters", s)
	}
}

// TestTransientFailuresRetryThenPark: a transient failure is retried; once its attempts are spent the
// event is parked (not dead-lettered) and the events after it are applied.
func TestTransientFailuresRetryThenPark(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	group := testenv.Name(t, "group")
	var flakyCalls, brokenCalls atomic.Int32
	f.produce(t, events.ToMessage("", event(t, "o-flaky", 1)), events.ToMessage("", event(t, "o-broken", 1)), events.ToMessage("", event(t, "o-after", 1)))
	c := f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if err := record(ctx, tx, ev); err != nil { // written, then rolled back with the savepoint on failure
			return err
		}
		switch ev.Subject {
		case "o-flaky":
			if flakyCalls.Add(1) <= 2 {
				return errors.New("flaky dependency")
			}
		case "o-broken":
			brokenCalls.Add(1)
			return errors.New("always broken")
		}
		return nil
	}), func(c *consumer.Config) { c.MaxAttempts, c.Group = 3, group })

	testenv.Eventually(t, 30*time.Second, "flaky and after applied", func() bool { return f.appliedCount(t) == 2 })
	rows, _ := f.pool.Query(context.Background(), `SELECT subject FROM applied ORDER BY n`)
	subjects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(subjects) != "[o-flaky o-after]" {
		t.Fatalf("applied %v; failed attempts must leave nothing behind", subjects)
	}
	if flakyCalls.Load() != 3 || brokenCalls.Load() != 3 {
		t.Fatalf("flaky called %d times (want 3), broken %d (want 3)", flakyCalls.Load(), brokenCalls.Load())
	}
	parked := listParked(t, f, group)
	if len(parked) != 1 || parked[0].Key != "o-broken" || !strings.Contains(parked[0].Reason, "gave up after 3 attempts: ") ||
		!strings.Contains(parked[0].Reason, "always broken") || parked[0].EventType != "order.cancelled" {
		t.Fatalf("parked %+v, want o-broken after 3 attempts", parked)
	}
	// The second attempt follows the first at once, alone in a savepoint; only later ones wait a backoff.
	if s := countsWhen(t, c, func(s consumer.Stats) bool { return s.Parked == 1 }); s.Retries < 2 || s.DeadLettered != 0 || s.Parked != 1 {
		t.Fatalf("stats %+v, want at least 2 retries after a backoff, 1 parked, nothing dead-lettered", s)
	}
}

// TestAFailingHeldBackWriteIsItsHandlersFailure: a write a handler holds back (postgres.Later) fails in the
// round trip of a later event's statement or of the commit; the failure is still its handler's: that event
// is retried and parked, the others are applied once.
func TestAFailingHeldBackWriteIsItsHandlersFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	group := testenv.Name(t, "group")
	if _, err := f.pool.Exec(context.Background(), `CREATE TABLE checked (subject text PRIMARY KEY, v int NOT NULL CHECK (v >= 0))`); err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for _, s := range []string{"o-1", "o-bad", "o-2", "o-3"} {
		msgs = append(msgs, events.ToMessage("", event(t, s, 1)))
	}
	f.produce(t, msgs...)
	c := f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if err := record(ctx, tx, ev); err != nil { // carries what the handler before held back
			return err
		}
		v := 1
		if ev.Subject == "o-bad" {
			v = -1
		}
		_, err := postgres.Later(tx).Exec(ctx, `INSERT INTO checked (subject, v) VALUES ($1, $2)`, ev.Subject, v)
		return err
	}), func(c *consumer.Config) { c.MaxAttempts, c.Group = 3, group })

	testenv.Eventually(t, 30*time.Second, "o-bad parked", func() bool { return c.Stats().Parked == 1 })
	testenv.Eventually(t, 10*time.Second, "the other events applied", func() bool { return f.appliedCount(t) == 3 })
	rows, _ := f.pool.Query(context.Background(), `SELECT a.subject FROM applied a JOIN checked c USING (subject) ORDER BY a.n`)
	subjects, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(subjects) != "[o-1 o-2 o-3]" {
		t.Fatalf("applied %v, want o-1 o-2 o-3 each once with their held-back writes", subjects)
	}
	parked := listParked(t, f, group)
	if len(parked) != 1 || parked[0].Key != "o-bad" || !strings.Contains(parked[0].Reason, "gave up after 3 attempts: ") ||
		!strings.Contains(parked[0].Reason, "checked_v_check") {
		t.Fatalf("parked %+v, want o-bad after 3 attempts, for its check constraint", parked)
	}
	if s := countsWhen(t, c, func(s consumer.Stats) bool { return s.Handled == 3 }); s.DeadLettered != 0 || s.Handled != 3 {
		t.Fatalf("stats %+v, want 3 handled, 1 parked, nothing dead-lettered", s)
	}
}

// heldLock is a BatchScope that holds back a lock for the batch, as the notification service's does.
type heldLock struct{}

func (heldLock) Begin(ctx context.Context, tx pgx.Tx, _ []consumer.Event) (context.Context, error) {
	_, err := postgres.Later(tx).Exec(ctx, `SELECT pg_advisory_xact_lock(42)`)
	return ctx, err
}
func (heldLock) Finish(context.Context, pgx.Tx) error { return nil }

// TestAHeldBackWriteThatCannotBePreparedIsItsHandlersFailure: a held-back statement that Postgres cannot
// even prepare (a column that does not exist) fails its whole round trip before anything runs, behind a
// lock the batch held back first; the failure is still its handler's: that event is parked, the others
// are applied.
func TestAHeldBackWriteThatCannotBePreparedIsItsHandlersFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	group := testenv.Name(t, "group")
	var msgs []kafka.Message
	for _, s := range []string{"o-1", "o-bad", "o-2"} {
		msgs = append(msgs, events.ToMessage("", event(t, s, 1)))
	}
	f.produce(t, msgs...)
	router := cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		sql := `INSERT INTO applied (event_id, subject, seq) VALUES ($1, $2, 1)`
		if ev.Subject == "o-bad" {
			sql = `INSERT INTO applied (event_id, subject, no_such_column) VALUES ($1, $2, 1)`
		}
		_, err := postgres.Later(tx).Exec(ctx, sql, ev.ID, ev.Subject)
		return err
	})
	router.Scope(heldLock{})
	c := f.start(t, router, func(c *consumer.Config) { c.MaxAttempts, c.Group = 3, group })

	testenv.Eventually(t, 30*time.Second, "o-bad parked", func() bool { return c.Stats().Parked == 1 })
	testenv.Eventually(t, 10*time.Second, "the other events applied", func() bool { return f.appliedCount(t) == 2 })
	if parked := listParked(t, f, group); len(parked) != 1 || parked[0].Key != "o-bad" || !strings.Contains(parked[0].Reason, "no_such_column") {
		t.Fatalf("parked %+v, want o-bad for its unknown column", parked)
	}
}

// TestPartitionsRunInParallelEachInOrder blocks the first event of two partitions until both are being
// handled at once (so partitions are not serialised), and checks every key's events apply in order. Should
// the two first batches have been combined into one transaction, it is cancelled after CombineTimeout and
// each applied on its own, in parallel.
func TestPartitionsRunInParallelEachInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	const keys, perKey = 8, 40
	var msgs []kafka.Message
	for i := 1; i <= perKey; i++ {
		for k := range keys {
			msgs = append(msgs, events.ToMessage("", event(t, fmt.Sprintf("p%d/k%d", k%4, k), i)))
		}
	}
	f.produce(t, msgs...)

	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	var gate0, gate1 sync.Once
	f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		gate := map[int]*sync.Once{0: &gate0, 1: &gate1}[ev.Partition]
		if gate != nil {
			gate.Do(func() { arrived.Done() })
			select {
			case <-both:
			case <-ctx.Done(): // a combined transaction was cancelled
				return ctx.Err()
			case <-time.After(20 * time.Second):
				return consumer.Permanent(errors.New("partitions 0 and 1 were never handled at the same time"))
			}
		}
		return record(ctx, tx, ev)
	}), func(c *consumer.Config) { c.CombineTimeout = 200 * time.Millisecond })

	testenv.Eventually(t, 60*time.Second, "all events applied", func() bool { return f.appliedCount(t) == keys*perKey })
	rows, _ := f.pool.Query(context.Background(), `SELECT subject, seq FROM applied ORDER BY n`)
	type row struct {
		Subject string
		Seq     int
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int{}
	for _, r := range got {
		if r.Seq != last[r.Subject]+1 {
			t.Fatalf("%s: event %d applied after %d", r.Subject, r.Seq, last[r.Subject])
		}
		last[r.Subject] = r.Seq
	}
}

// TestASlowPartitionHoldsUpNoOther: a handler of partition 0 blocks until the test ends (a lock held
// elsewhere, a dependency that hangs). Batches of other partitions combined into its transaction wait for it
// at most CombineTimeout; then they are applied on their own, and partition 1 keeps flowing.
func TestASlowPartitionHoldsUpNoOther(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	released := make(chan struct{})
	var blocked atomic.Bool
	c := f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if ev.Partition == 0 {
			blocked.Store(true)
			select {
			case <-released:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return record(ctx, tx, ev)
	}), func(c *consumer.Config) { c.CombineTimeout = 200 * time.Millisecond })
	t.Cleanup(func() { close(released) }) // before the consumer stops (cleanups run last first)
	const n = 30
	var stuckMsgs, flowingMsgs []kafka.Message
	for i := 1; i <= n; i++ {
		stuckMsgs = append(stuckMsgs, events.ToMessage("", event(t, "p0/stuck", i)))
		flowingMsgs = append(flowingMsgs, events.ToMessage("", event(t, "p1/flowing", i)))
	}
	// Partition 0 first, until its handler blocks (in the combiner's transaction, which its timeout ends),
	// then partition 1, which must flow while partition 0 stays stuck.
	f.produce(t, stuckMsgs...)
	testenv.Eventually(t, 30*time.Second, "partition 0's handler to block", blocked.Load)
	f.produce(t, flowingMsgs...)
	testenv.Eventually(t, 30*time.Second, "partition 1's events applied while partition 0 is stuck", func() bool {
		return f.appliedCount(t) == n
	})
	var stuck int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM applied WHERE subject = 'p0/stuck'`).Scan(&stuck); err != nil {
		t.Fatal(err)
	}
	if stuck != 0 || c.Stats().Applied < n {
		t.Fatalf("%d of partition 0's events applied (want 0), stats %+v", stuck, c.Stats())
	}
}

// TestEventsWithoutAHandlerMoveTheOffsetOnly: events of types the service does not handle are counted as
// ignored and skipped without being recorded; the handled one among them is applied once.
func TestEventsWithoutAHandlerMoveTheOffsetOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	var msgs []kafka.Message
	for i := range 5 {
		e, err := events.New("test", fmt.Sprintf("o-%d", i), events.OrderConfirmed{OrderID: fmt.Sprintf("o-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, events.ToMessage("", e))
	}
	f.produce(t, msgs...) // a batch of nothing this consumer handles
	c := f.start(t, cancelledRouter(t, record), nil)
	testenv.Eventually(t, 20*time.Second, "the ignored events to be passed", func() bool { return c.Stats().Ignored == 5 })
	f.produce(t, events.ToMessage("", event(t, "o-handled", 1)))
	testenv.Eventually(t, 20*time.Second, "the handled event to be applied", func() bool { return f.appliedCount(t) == 1 })
	var inbox int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM inbox`).Scan(&inbox); err != nil {
		t.Fatal(err)
	}
	if s := countsWhen(t, c, func(s consumer.Stats) bool { return s.Applied == 6 }); inbox != 1 || s.Applied != 6 || s.Ignored != 5 || s.Handled != 1 {
		t.Fatalf("inbox rows %d (want 1), stats %+v (want 6 applied, 5 ignored, 1 handled)", inbox, s)
	}
}

func consume(t *testing.T, brokers []string, topic string, want int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []kafka.Message
	for len(got) < want {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read %d of %d from %s: %v", len(got), want, topic, err)
		}
		got = append(got, m)
	}
	return got
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// TestConsumerRidesOutKafkaOutage stops a private broker under a running consumer and starts it again: the
// consumer must keep running and apply what is produced afterwards.
func TestConsumerRidesOutKafkaOutage(t *testing.T) {
	t.Parallel()
	broker := testenv.OwnKafka(t)
	f := fixture{pool: testenv.Postgres(t), brokers: broker.Brokers(), topic: testenv.Name(t, "in")}
	ctx := context.Background()
	for name, files := range map[string]fs.FS{"outbox": outbox.Migrations(), "inbox": consumer.Migrations()} {
		if err := postgres.Migrate(ctx, f.pool, name, files); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.pool.Exec(ctx, `CREATE TABLE applied (n bigserial PRIMARY KEY, event_id uuid NOT NULL, subject text NOT NULL, seq int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := kafkaadmin.EnsureTopics(ctx, f.brokers, kafkaadmin.Topic{Name: f.topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	c := f.start(t, cancelledRouter(t, record), func(c *consumer.Config) {
		c.SessionTimeout, c.RebalanceTimeout = 6*time.Second, 6*time.Second
	})
	f.produce(t, events.ToMessage("", event(t, "o-1", 1)))
	testenv.Eventually(t, 30*time.Second, "the first event applied", func() bool { return f.appliedCount(t) == 1 })

	broker.Close()
	testenv.Eventually(t, 60*time.Second, "the consumer to notice the outage", func() bool { return c.Stats().FetchErrors > 0 })
	if err := broker.Restart(); err != nil {
		t.Fatal(err)
	}
	f.produce(t, events.ToMessage("", event(t, "o-1", 2)))
	testenv.Eventually(t, 90*time.Second, "the event produced after the outage applied", func() bool { return f.appliedCount(t) == 2 })
}

// TestRedriveHandsDeadLettersBack dead-letters an event its handler refuses, "fixes" the handler, redrives
// the dead-letter topic and checks the event is applied once; a second redrive finds nothing to do.
func TestRedriveHandsDeadLettersBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	group := testenv.Name(t, "group")
	var fixed atomic.Bool
	f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if ev.Subject == "o-bug" && !fixed.Load() {
			return consumer.Permanent(errors.New("bug in handler"))
		}
		return record(ctx, tx, ev)
	}), func(c *consumer.Config) { c.Group = group })
	f.produce(t, events.ToMessage("", event(t, "o-bug", 1)), events.ToMessage("", event(t, "o-ok", 1)))
	consume(t, f.brokers, f.topic+consumer.DLQSuffix, 1)
	testenv.Eventually(t, 10*time.Second, "the good event applied", func() bool { return f.appliedCount(t) == 1 })

	fixed.Store(true)
	r := consumer.Redriver{Brokers: f.brokers, Group: group, Pool: f.pool}
	var seen []consumer.DeadLetter
	n, err := r.Redrive(context.Background(), f.topic+consumer.DLQSuffix, func(d consumer.DeadLetter, ok bool) { seen = append(seen, d) })
	if err != nil || n != 1 {
		t.Fatalf("redrive: %d, %v; want 1 redriven", n, err)
	}
	if len(seen) != 1 || seen[0].EventType != "order.cancelled" || !strings.Contains(seen[0].Error, "bug in handler") || seen[0].Consumer != group {
		t.Fatalf("dead letters reported: %+v", seen)
	}
	testenv.Eventually(t, 30*time.Second, "the redriven event applied", func() bool { return f.appliedCount(t) == 2 })
	if n, err := r.Redrive(context.Background(), f.topic+consumer.DLQSuffix, nil); err != nil || n != 0 {
		t.Fatalf("second redrive: %d, %v; want nothing left", n, err)
	}
}

// TestShutdownDrainsInFlightEvents stops the consumer while a handler is in the middle of an event: Run must
// let it finish, commit the database and the offset, and only then return.
func TestShutdownDrainsInFlightEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	group := testenv.Name(t, "group")
	inside, release := make(chan struct{}), make(chan struct{})
	c, err := consumer.New(consumer.Config{Brokers: f.brokers, Group: group, Topics: []string{f.topic},
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Grace: 30 * time.Second},
		f.pool, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
			close(inside)
			<-release
			return record(ctx, tx, ev)
		}), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	f.produce(t, events.ToMessage("", event(t, "o-slow", 1)))
	select {
	case <-inside:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler never started")
	}
	cancel() // shutdown begins while the event is in flight
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) before its in-flight event finished", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := f.appliedCount(t); n != 1 {
		t.Fatalf("%d events applied, want the in-flight one", n)
	}
	offsets, err := kafkaadmin.GroupOffsets(context.Background(), f.brokers, group, f.topic)
	if err != nil || len(offsets) != 1 || offsets[0].Lag() != 0 {
		t.Fatalf("offsets %+v (%v): the drained event's offset must be committed", offsets, err)
	}
}

// TestConsumerRidesOutPostgresOutage stops the service's Postgres under a running consumer: the event that
// arrives meanwhile must be applied once the database is back, not dead-lettered, and the consumer must
// keep running.
func TestConsumerRidesOutPostgresOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil { // the server runs as user postgres
		t.Fatal(err)
	}
	cluster, err := pgembed.Start(ctx, pgembed.Config{DataDir: dir, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	pool, err := postgres.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f := fixture{pool: pool, brokers: testenv.Kafka(t), topic: testenv.Name(t, "in")}
	for name, files := range map[string]fs.FS{"outbox": outbox.Migrations(), "inbox": consumer.Migrations()} {
		if err := postgres.Migrate(ctx, pool, name, files); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE applied (n bigserial PRIMARY KEY, event_id uuid NOT NULL, subject text NOT NULL, seq int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := kafkaadmin.EnsureTopics(ctx, f.brokers, kafkaadmin.Topic{Name: f.topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	c := f.start(t, cancelledRouter(t, record), nil)
	f.produce(t, events.ToMessage("", event(t, "o-pg", 1)))
	testenv.Eventually(t, 30*time.Second, "the first event applied", func() bool { return f.appliedCount(t) == 1 })

	port := cluster.Port()
	if err := cluster.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	f.produce(t, events.ToMessage("", event(t, "o-pg", 2)))
	testenv.Eventually(t, 30*time.Second, "the consumer to retry against the stopped database", func() bool { return c.Stats().Retries > 0 })
	if cluster, err = pgembed.Start(ctx, pgembed.Config{DataDir: dir, Port: port, Log: testenv.Logger(t)}); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	testenv.Eventually(t, 60*time.Second, "the event from the outage applied", func() bool { return f.appliedCount(t) == 2 })
	if s := c.Stats(); s.DeadLettered != 0 {
		t.Fatalf("stats %+v: an outage must not dead-letter anything", s)
	}
}

// TestTheInboxForgetsEventsOlderThanItsRetention: the consumer deletes its own group's handled ids older
// than InboxRetention, and keeps the newer ones and every other group's.
func TestTheInboxForgetsEventsOlderThanItsRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, 1)
	group := testenv.Name(t, "group")
	// 2,000 handled events an hour old and 2,000 of the last minute, for this group and for another.
	_, err := f.pool.Exec(ctx, `INSERT INTO inbox (consumer, event_id, topic, partition, "offset", received_at)
		SELECT c, gen_random_uuid(), 't', 0, n, now() - CASE WHEN n <= 2000 THEN interval '1 hour' ELSE interval '1 minute' END
		FROM generate_series(1, 4000) n, unnest(ARRAY[$1, 'other']) c`, group)
	if err != nil {
		t.Fatal(err)
	}
	f.start(t, cancelledRouter(t, record), func(c *consumer.Config) {
		c.Group, c.InboxRetention = group, 30*time.Minute
	})
	count := func(consumer string) (n int) {
		if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM inbox WHERE consumer = $1`, consumer).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	testenv.Eventually(t, 30*time.Second, "the hour-old ids deleted", func() bool { return count(group) == 2000 })
	if n := count("other"); n != 4000 {
		t.Errorf("another group's inbox holds %d ids, want all 4000", n)
	}
}

// TestArrivalsWithinTheApplyIntervalShareATransaction: with an ApplyInterval, events that arrive one by one
// within it are applied in one transaction, not one each.
func TestArrivalsWithinTheApplyIntervalShareATransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, 3)
	if _, err := f.pool.Exec(ctx, `CREATE TABLE applied_in (event_id uuid PRIMARY KEY, txid bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	inTx := func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		_, err := tx.Exec(ctx, `INSERT INTO applied_in VALUES ($1, txid_current())`, ev.ID)
		return err
	}
	const n, interval = 30, 300 * time.Millisecond
	f.start(t, cancelledRouter(t, inTx), func(c *consumer.Config) { c.ApplyInterval = interval })
	// 30 events over three partitions, one every 10 ms or so: applied at once, each would be a transaction.
	began := time.Now()
	for i := range n {
		f.produce(t, events.ToMessage("", event(t, fmt.Sprintf("p%d/o-%d", i%3, i), i)))
		time.Sleep(10 * time.Millisecond)
	}
	spread := time.Since(began)
	var applied, txs int
	testenv.Eventually(t, 30*time.Second, "every event applied", func() bool {
		if err := f.pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT txid) FROM applied_in`).Scan(&applied, &txs); err != nil {
			t.Fatal(err)
		}
		return applied == n
	})
	// The first at once, then about one transaction per interval while they arrive (give or take the
	// delivery's own delays), and the last ones: a few, not one per event.
	if most := int(spread/interval) + 4; txs > most {
		t.Errorf("%d events sent over %v took %d transactions; with a %v interval at most %d", n, spread, txs, interval, most)
	}
	t.Logf("%d events sent over %v in %d transactions", n, spread, txs)
}

// requests records the SQL of each request a pool's connections send: a query's, or a batch's statements.
type requests struct {
	mu   sync.Mutex
	sent [][]string
}

func (r *requests) add(sqls ...string) {
	r.mu.Lock()
	r.sent = append(r.sent, sqls)
	r.mu.Unlock()
}

func (r *requests) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.add(d.SQL)
	return ctx
}
func (r *requests) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *requests) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	var sqls []string
	for _, q := range d.Batch.QueuedQueries {
		sqls = append(sqls, q.SQL)
	}
	r.add(sqls...)
	return ctx
}
func (r *requests) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *requests) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// touching returns the requests one of whose statements contains any of words.
func (r *requests) touching(words ...string) [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]string
	for _, sqls := range r.sent {
		if slices.ContainsFunc(sqls, func(s string) bool {
			return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(s, w) })
		}) {
			out = append(out, sqls)
		}
	}
	return out
}

// traced returns f with a pool of its own whose round trips are recorded in the returned requests.
func (f fixture) traced(t *testing.T) (fixture, *requests) {
	t.Helper()
	sent := &requests{}
	pool, err := postgres.Connect(context.Background(), f.pool.Config().ConnConfig.ConnString(), func(c *pgxpool.Config) { c.ConnConfig.Tracer = sent })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f.pool = pool
	return f, sent
}

// TestAFirstTryIsOneRoundTripWhenItsWritesAreHeldBack: an event whose handler only holds writes back is
// applied in one round trip, BEGIN, inbox write, the handler's write and COMMIT together, since the first
// try does not wait for the inbox; its redelivery is still found in the inbox and skipped.
func TestAFirstTryIsOneRoundTripWhenItsWritesAreHeldBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	tf, sent := f.traced(t)
	held := func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		_, err := postgres.Later(tx).Exec(ctx, `INSERT INTO applied (event_id, subject, seq) VALUES ($1, $2, 1)`, ev.ID, ev.Subject)
		return err
	}
	c := tf.start(t, cancelledRouter(t, held), nil)
	e := event(t, "o-1", 1)
	f.produce(t, events.ToMessage("", e))
	testenv.Eventually(t, 30*time.Second, "the event applied", func() bool { return c.Stats().Applied == 1 })

	trips := sent.touching("INSERT INTO inbox", "inbox_record_new", "event_id = ANY", "INSERT INTO applied") // not the retention's DELETE
	if len(trips) != 1 {
		t.Fatalf("the event took %d round trips, want 1: %q", len(trips), trips)
	}
	want := []string{"begin", "inbox_record_new", "INSERT INTO applied", "commit"}
	if got := trips[0]; len(got) != len(want) || !slices.EqualFunc(got, want, strings.Contains) {
		t.Fatalf("the event's round trip sent %q, want statements containing %q in that order", got, want)
	}

	f.produce(t, events.ToMessage("", e))
	testenv.Eventually(t, 30*time.Second, "the redelivery handled", func() bool { return c.Stats().Applied == 2 })
	if n, s := f.appliedCount(t), c.Stats(); n != 1 || s.Duplicates != 1 {
		t.Fatalf("after the redelivery: %d rows applied (want 1), stats %+v (want 1 duplicate)", n, s)
	}
}

// lingerFixture starts a consumer over three partitions whose router applies order.cancelled, marked
// Unhurried, and order.confirmed, not marked, recording each event's transaction in applied_in.
func lingerFixture(t *testing.T, linger time.Duration) (fixture, *consumer.Consumer) {
	t.Helper()
	return lingerFixtureWith(t, linger, func(r *consumer.Router) { r.Unhurried(events.OrderCancelled{}) })
}

// lingerFixtureWith is lingerFixture with what the router marks (and any routes besides) set by mark.
func lingerFixtureWith(t *testing.T, linger time.Duration, mark func(*consumer.Router)) (fixture, *consumer.Consumer) {
	t.Helper()
	f := newFixture(t, 3)
	if _, err := f.pool.Exec(context.Background(), `CREATE TABLE applied_in (event_id uuid PRIMARY KEY, type text NOT NULL, txid bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	r := cancelledRouter(t, applyIn)
	r.OnEach(applyIn, events.OrderConfirmed{})
	mark(r)
	return f, f.start(t, r, func(c *consumer.Config) { c.Linger = linger })
}

// applyIn records the event and its transaction in applied_in.
func applyIn(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO applied_in VALUES ($1, $2, txid_current())`, ev.ID, ev.Type)
	return err
}

// message is an event of payload p about subject, as a Kafka message.
func message(t *testing.T, subject string, p events.Payload) kafka.Message {
	t.Helper()
	e, err := events.New("test", subject, p)
	if err != nil {
		t.Fatal(err)
	}
	return events.ToMessage("", e)
}

func confirmed(t *testing.T, subject string) kafka.Message {
	return message(t, subject, events.OrderConfirmed{OrderID: subject})
}

func sold(t *testing.T, subject string) kafka.Message {
	return message(t, subject, events.StockSold{OrderID: subject})
}

// appliedIn returns how many events of each type applied_in holds, and in how many transactions.
func (f fixture) appliedIn(t *testing.T) (byType map[string]int, txs int) {
	t.Helper()
	byType = map[string]int{}
	rows, err := f.pool.Query(context.Background(), `SELECT type, count(*), (SELECT count(DISTINCT txid) FROM applied_in) FROM applied_in GROUP BY type`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var typ string
		var n int
		if err := rows.Scan(&typ, &n, &txs); err != nil {
			t.Fatal(err)
		}
		byType[typ] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return byType, txs
}

// appliedWhen waits until applied_in holds at least want's count of each type, and returns its counts and
// the number of transactions they took.
func (f fixture) appliedWhen(t *testing.T, what string, want map[string]int) (map[string]int, int) {
	t.Helper()
	var got map[string]int
	var txs int
	testenv.Eventually(t, 30*time.Second, what, func() bool {
		got, txs = f.appliedIn(t)
		for typ, n := range want {
			if got[typ] < n {
				return false
			}
		}
		return true
	})
	return got, txs
}

// TestUnhurriedEventsWaitForAnEventOnThePathToShareItsTransaction: a batch of unhurried events waits (here
// for as long as the test could run) while other partitions go on, and an event nobody handles does not
// end the wait; the first handled event of another type on their partition does, at once, and all of them
// commit in one transaction.
func TestUnhurriedEventsWaitForAnEventOnThePathToShareItsTransaction(t *testing.T) {
	t.Parallel()
	f, c := lingerFixture(t, time.Hour)
	for i := range 5 { // one by one: applied at once, each would be a transaction
		f.produce(t, events.ToMessage("", event(t, fmt.Sprintf("p0/o-%d", i), i)))
		time.Sleep(10 * time.Millisecond)
	}
	// Partition 1's event on the path is applied meanwhile; partition 0's still wait.
	f.produce(t, confirmed(t, "p1/o-other"))
	f.appliedWhen(t, "the other partition's event applied", map[string]int{"order.confirmed": 1})
	// An event nobody here handles joins the wait without ending it: it needs no transaction.
	f.produce(t, sold(t, "p0/o-sold"))
	time.Sleep(500 * time.Millisecond) // time to arrive: it would end the wait within milliseconds
	if got, _ := f.appliedIn(t); got["order.cancelled"] != 0 {
		t.Fatalf("%d unhurried events applied before an event on the path came or their hour was over", got["order.cancelled"])
	}
	f.produce(t, confirmed(t, "p0/o-next"))
	got, txs := f.appliedWhen(t, "the waiting events applied with the one that ended the wait", map[string]int{"order.confirmed": 2})
	if got["order.cancelled"] != 5 || txs != 2 {
		t.Errorf("applied %v in %d transactions; want the 5 waiting events in the transaction of the event that came next (2 in all)", got, txs)
	}
	s := countsWhen(t, c, func(s consumer.Stats) bool { return s.Applied == 8 })
	if s.LingerJoined == 0 || s.LingerExpired != 0 {
		t.Errorf("lingered batches: %d joined, %d expired; want the wait joined by the event on the path, none expired", s.LingerJoined, s.LingerExpired)
	}
	if s.Ignored != 1 {
		t.Errorf("%d events ignored; want the one nobody handles", s.Ignored)
	}
}

// TestUnhurriedEventsAloneAreAppliedOnceTheLingerIsOver: with no event on the path to end the wait,
// unhurried events that arrive one by one are applied when the linger is over, together.
func TestUnhurriedEventsAloneAreAppliedOnceTheLingerIsOver(t *testing.T) {
	t.Parallel()
	const linger = 500 * time.Millisecond
	f, c := lingerFixture(t, linger)
	began := time.Now()
	for i := range 10 {
		f.produce(t, events.ToMessage("", event(t, fmt.Sprintf("p0/o-%d", i), i)))
		time.Sleep(10 * time.Millisecond)
	}
	spread := time.Since(began)
	_, txs := f.appliedWhen(t, "every event applied", map[string]int{"order.cancelled": 10})
	// One transaction per linger while they arrive, and the last ones (a late delivery may start another):
	// a few, not one per event.
	if most := int(spread/linger) + 3; txs > most {
		t.Errorf("10 events sent over %v took %d transactions; with a %v linger at most %d", spread, txs, linger, most)
	}
	if s := c.Stats(); s.LingerExpired != uint64(txs) || s.LingerJoined != 0 {
		t.Errorf("lingered batches: %d joined, %d expired; want every one of the %d transactions' waits expired", s.LingerJoined, s.LingerExpired, txs)
	}
	t.Logf("10 events sent over %v in %d transactions", spread, txs)
}

// TestTheFirstOfAJoinWaitsForTheSecond: of two joined types, the first to arrive for a key waits (here for
// as long as the test could run) and commits with the second; a second whose first was applied already
// (with an event of another type, which ended its wait) does not wait at all.
func TestTheFirstOfAJoinWaitsForTheSecond(t *testing.T) {
	t.Parallel()
	f, _ := lingerFixtureWith(t, time.Hour, func(r *consumer.Router) {
		r.Join(events.OrderCancelled{}, events.OrderConfirmed{})
		r.OnEach(applyIn, events.StockSold{})
	})
	// Two orders' firsts, each of the pair's other type.
	f.produce(t, events.ToMessage("", event(t, "p0/o-a", 1)), confirmed(t, "p0/o-b"))
	time.Sleep(500 * time.Millisecond) // time to arrive: they would be applied within milliseconds
	if got, _ := f.appliedIn(t); len(got) != 0 {
		t.Fatalf("applied %v before any second of a pair came or the hour was over", got)
	}
	// o-a's second: it ends the wait, and both orders' firsts commit with it.
	f.produce(t, confirmed(t, "p0/o-a"))
	got, txs := f.appliedWhen(t, "the firsts applied with the second", map[string]int{"order.confirmed": 2})
	if got["order.cancelled"] != 1 || txs != 1 {
		t.Fatalf("applied %v in %d transactions; want o-a's pair and o-b's first in one", got, txs)
	}
	// o-b's second: its first was applied, so it does not wait for anything.
	f.produce(t, events.ToMessage("", event(t, "p0/o-b", 2)))
	f.appliedWhen(t, "the second of a pair whose first was applied", map[string]int{"order.cancelled": 2})
	// A first that an urgent event of another type took along: its second does not wait either.
	f.produce(t, events.ToMessage("", event(t, "p0/o-c", 3)), sold(t, "p0/o-other"))
	f.appliedWhen(t, "the first applied with the urgent event", map[string]int{"order.cancelled": 3, "stock.sold": 1})
	f.produce(t, confirmed(t, "p0/o-c"))
	if _, txs = f.appliedWhen(t, "its second applied", map[string]int{"order.confirmed": 3}); txs != 4 {
		t.Errorf("%d transactions; want 4: the first pair with o-b's first, o-b's second, o-c's first with stock.sold, o-c's second", txs)
	}
}

// TestAJoinOfThreeWaitsForItsLast: with three joined types, the first two of a key wait, in whichever
// order they come, and the third commits all of them.
func TestAJoinOfThreeWaitsForItsLast(t *testing.T) {
	t.Parallel()
	f, _ := lingerFixtureWith(t, time.Hour, func(r *consumer.Router) {
		r.OnEach(applyIn, events.StockSold{})
		r.Join(events.OrderCancelled{}, events.OrderConfirmed{}, events.StockSold{})
	})
	f.produce(t, sold(t, "p0/o-a"), confirmed(t, "p0/o-a"))
	time.Sleep(500 * time.Millisecond) // time to arrive: they would be applied within milliseconds
	if got, _ := f.appliedIn(t); len(got) != 0 {
		t.Fatalf("applied %v before the join's last came or the hour was over", got)
	}
	f.produce(t, events.ToMessage("", event(t, "p0/o-a", 1)))
	got, txs := f.appliedWhen(t, "the join applied with its last", map[string]int{"order.cancelled": 1})
	if got["order.confirmed"] != 1 || got["stock.sold"] != 1 || txs != 1 {
		t.Errorf("applied %v in %d transactions; want the three in one", got, txs)
	}
}
