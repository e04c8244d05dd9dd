package outbox_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/devstack/kafkaembed"
	"github.com/choreo-dev/choreo/internal/devstack/pgembed"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/outbox"
)

func TestRollbackPublishesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)

	rolledBack, err := events.New("test", "o-rollback", events.OrderConfirmed{OrderID: "o-rollback"})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Append(ctx, tx, topic, rolledBack); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	committed := appendEvents(t, pool, topic, "o-commit", 1, 1)

	startRelay(t, pool, writer(t, brokers), testenv.Logger(t))
	// The committed event was appended after the rolled-back one; once it arrives, the rolled-back one
	// would have arrived before it.
	got := consume(t, brokers, topic, 1, 20*time.Second)
	e, err := events.FromMessage(got[0])
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != committed[0].ID {
		t.Fatalf("first message is %s (%s), want the committed event %s", e.ID, e.Subject, committed[0].ID)
	}
	testenv.Eventually(t, 10*time.Second, "outbox emptied", func() bool { return countRows(t, pool) == 0 })
}

func TestEnvelopeRoundTripThroughKafka(t *testing.T) {
	t.Parallel()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 3)
	placed, err := events.New("order", "o-rt", events.OrderPlaced{OrderID: "o-rt", CustomerID: "c", Items: []events.Item{{SKU: "s", Quantity: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	placed.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	reserved, err := events.New("inventory", "o-rt", events.StockReserved{OrderID: "o-rt", TotalCents: 999})
	if err != nil {
		t.Fatal(err)
	}
	reserved = reserved.CausedBy(placed)
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Append(context.Background(), tx, topic, placed, reserved); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	startRelay(t, pool, writer(t, brokers), testenv.Logger(t))

	got := consume(t, brokers, topic, 2, 20*time.Second)
	for i, want := range []events.Envelope{placed, reserved} {
		e, err := events.FromMessage(got[i])
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(got[i].Key) != want.Subject {
			t.Errorf("message %d key %q, want subject %q", i, got[i].Key, want.Subject)
		}
		if e.ID != want.ID || e.Type != want.Type || e.Version != want.Version || e.Source != want.Source ||
			e.CorrelationID != want.CorrelationID || e.CausationID != want.CausationID || e.TraceParent != want.TraceParent ||
			!e.Time.Equal(want.Time) || string(e.Data) != string(want.Data) {
			t.Errorf("message %d:\n got %+v\nwant %+v", i, e, want)
		}
	}
}

// TestPerKeyOrderWithConcurrentWritersAndTwoRelays has writers that, like a service locking its aggregate,
// serialise per key, and two relay instances on the same outbox. Every key's events must arrive in the order
// they were committed.
func TestPerKeyOrderWithConcurrentWritersAndTwoRelays(t *testing.T) {
	t.Parallel()
	t.Run("writers of another process", func(t *testing.T) { t.Parallel(); perKeyOrder(t, false) })
	// Writers in the relays' process hand their committed rows over (LocalCommits), and the relays publish
	// them without a read when no lower id is missing.
	t.Run("writers of the relays' process", func(t *testing.T) { t.Parallel(); perKeyOrder(t, true) })
}

func perKeyOrder(t *testing.T, local bool) {
	ctx := context.Background()
	var configure []func(*pgxpool.Config)
	var relayOpts []outbox.Option
	url := ""
	if local {
		l := outbox.NewLocalCommits()
		configure = append(configure, l.Configure)
		relayOpts = append(relayOpts, outbox.WithLocalCommits(l))
		url = testenv.DurableServerURL(t) // a cluster of its own, as handOverRig's
	} else {
		url = testenv.DatabaseURL(t)
	}
	pool, brokers := connect(t, url, configure...), testenv.Kafka(t)
	migrate(t, pool)
	topic := newTopic(t, brokers, 4)
	if _, err := pool.Exec(ctx, `CREATE TABLE aggregate (key text PRIMARY KEY, seq int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const keys, writers, perWriter = 16, 8, 60
	for k := range keys {
		if _, err := pool.Exec(ctx, `INSERT INTO aggregate VALUES ($1, 0)`, fmt.Sprintf("k%02d", k)); err != nil {
			t.Fatal(err)
		}
	}
	log := testenv.Logger(t)
	r1, _ := startRelay(t, pool, writer(t, brokers), log, append(relayOpts, outbox.WithBatchSize(50))...)
	r2, _ := startRelay(t, pool, writer(t, brokers), log, append(relayOpts, outbox.WithBatchSize(50))...)

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if err := appendNext(ctx, pool, topic, fmt.Sprintf("k%02d", (w*7+i)%keys), local); err != nil {
					errs <- err
					return
				}
				if local && i%2 == 1 {
					time.Sleep(time.Millisecond) // let the relay wait at times, so that it takes hand-overs
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	got := consume(t, brokers, topic, writers*perWriter, 60*time.Second)
	last := map[string]int{}
	seen := map[string]bool{}
	for _, m := range got {
		e, err := events.FromMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if seen[e.ID.String()] {
			continue // a redelivered duplicate; consumers dedupe it
		}
		seen[e.ID.String()] = true
		var p events.OrderCancelled
		if err := json.Unmarshal(e.Data, &p); err != nil {
			t.Fatal(err)
		}
		seq, _ := strconv.Atoi(p.Reason)
		if seq != last[e.Subject]+1 {
			t.Fatalf("key %s: event %d arrived after %d", e.Subject, seq, last[e.Subject])
		}
		last[e.Subject] = seq
	}
	s1, s2 := r1.Stats(), r2.Stats()
	if s1.Active == s2.Active {
		t.Fatalf("want exactly one active relay, got active=%v and active=%v", s1.Active, s2.Active)
	}
	if handed := s1.HandOvers + s2.HandOvers; local && handed == 0 {
		t.Fatalf("no transaction's rows were published as handed over (%d read instead)", s1.HandOversRead+s2.HandOversRead)
	}
	t.Logf("hand-overs: %d published, %d read", s1.HandOvers+s2.HandOvers, s1.HandOversRead+s2.HandOversRead)
}

// TestALateCommitIsNotOvertakenByItsKeysNextRow: a transaction takes an outbox id, then others commit a
// backlog with higher ids, which the relay streams in full batches past it; only then does it commit, and
// its key's next row after it. The late row must still be published first.
func TestALateCommitIsNotOvertakenByItsKeysNextRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	relay, _ := startRelay(t, pool, writer(t, brokers), testenv.Logger(t), outbox.WithBatchSize(10))
	testenv.Eventually(t, 10*time.Second, "the relay to be active", func() bool { return relay.Stats().Active })

	late, err := pool.Begin(ctx) // takes its id now, commits after the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	first, err := events.New("test", "late", events.OrderCancelled{OrderID: "late", Reason: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Append(ctx, late, topic, first); err != nil {
		t.Fatal(err)
	}
	const backlog = 3000
	appendEvents(t, pool, topic, "other", 1, backlog)
	testenv.Eventually(t, 10*time.Second, "the relay to stream the backlog", func() bool { return relay.Stats().Published >= 100 })
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, pool, topic, "late", 2, 1)
	atCommit := relay.Stats().Published

	got := consume(t, brokers, topic, backlog+2, 60*time.Second)
	var order []string
	for _, m := range got {
		if e, err := events.FromMessage(m); err == nil && e.Subject == "late" {
			order = append(order, string(e.Data))
		}
	}
	if len(order) < 2 || !strings.Contains(order[0], `"reason":"1"`) {
		t.Fatalf("key late published as %v, want its first row first", order)
	}
	if atCommit >= backlog {
		t.Fatalf("the relay had published the whole backlog (%d rows) when the late row committed: nothing was streamed past it", atCommit)
	}
}

// appendNext increments key's sequence under its row lock and appends the matching event, in one
// transaction (see begin for heldBack).
func appendNext(ctx context.Context, pool *pgxpool.Pool, topic, key string, heldBack bool) error {
	tx, err := begin(ctx, pool, heldBack)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var seq int
	if err := tx.QueryRow(ctx, `UPDATE aggregate SET seq = seq + 1 WHERE key = $1 RETURNING seq`, key).Scan(&seq); err != nil {
		return fmt.Errorf("bump %s: %w", key, err)
	}
	e, err := events.New("test", key, events.OrderCancelled{OrderID: key, Reason: strconv.Itoa(seq)})
	if err != nil {
		return err
	}
	if err := outbox.Append(ctx, postgres.Later(tx), topic, e); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// crashAfterAck publishes for real, then behaves as if the process died before the rows were deleted: it
// never returns success, so the relay cannot mark the batch.
type crashAfterAck struct {
	w     *kafka.Writer
	acked chan struct{}
	once  sync.Once
}

func (c *crashAfterAck) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if err := c.w.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	c.once.Do(func() { close(c.acked) })
	<-ctx.Done()
	return ctx.Err()
}

func TestCrashBetweenPublishAndDeleteGivesDuplicatesNotLoss(t *testing.T) {
	t.Parallel()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 2)
	sent := appendEvents(t, pool, topic, "o-crash", 1, 30)

	crashing := &crashAfterAck{w: writer(t, brokers), acked: make(chan struct{})}
	_, stop := startRelay(t, pool, crashing, testenv.Logger(t), outbox.WithShutdownGrace(0), outbox.WithBatchSize(10))
	select {
	case <-crashing.acked:
	case <-time.After(20 * time.Second):
		t.Fatal("the first batch was never published")
	}
	stop()
	if n := countRows(t, pool); n != 30 {
		t.Fatalf("after the crash %d rows remain, want all 30 (the acked batch was not deleted)", n)
	}

	startRelay(t, pool, writer(t, brokers), testenv.Logger(t), outbox.WithBatchSize(10))
	got := consume(t, brokers, topic, 40, 30*time.Second) // the first batch of 10 twice, then the rest
	counts := map[string]int{}
	for _, m := range got {
		e, err := events.FromMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		counts[e.ID.String()]++
	}
	for i, e := range sent {
		want := 1
		if i < 10 {
			want = 2
		}
		if counts[e.ID.String()] != want {
			t.Errorf("event %d delivered %d times, want %d", i, counts[e.ID.String()], want)
		}
	}
	testenv.Eventually(t, 10*time.Second, "outbox emptied", func() bool { return countRows(t, pool) == 0 })
}

func TestKafkaOutageThenRecovery(t *testing.T) {
	t.Parallel()
	pool := outboxDB(t)
	dir := t.TempDir()
	broker, err := kafkaembed.Start(kafkaembed.Config{Addr: "127.0.0.1:0", DataDir: dir, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	brokers := broker.Brokers()
	topic := newTopic(t, brokers, 2)
	relay, _ := startRelay(t, pool, writer(t, brokers), testenv.Logger(t))
	appendEvents(t, pool, topic, "o-before", 1, 20)
	testenv.Eventually(t, 20*time.Second, "first events published", func() bool { return relay.Stats().Published == 20 })

	broker.Close()
	appendEvents(t, pool, topic, "o-during", 1, 20)
	testenv.Eventually(t, 30*time.Second, "the relay to retry against the stopped broker", func() bool { return relay.Stats().Retries > 0 })
	if n := countRows(t, pool); n != 20 {
		t.Fatalf("while Kafka is down %d rows wait, want 20", n)
	}

	broker, err = kafkaembed.Start(kafkaembed.Config{Addr: brokers[0], DataDir: dir, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatalf("restart broker: %v", err)
	}
	t.Cleanup(broker.Close)
	got := consume(t, brokers, topic, 40, 60*time.Second)
	ids := map[string]bool{}
	for _, m := range got {
		ids[string(m.Key)+"/"+headerValue(m, events.HeaderID)] = true
	}
	if len(ids) != 40 {
		t.Fatalf("%d distinct events delivered, want 40", len(ids))
	}
	testenv.Eventually(t, 10*time.Second, "outbox emptied", func() bool { return countRows(t, pool) == 0 })
}

func TestPostgresOutageThenRecovery(t *testing.T) {
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
	port := cluster.Port()
	pool, err := postgres.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	migrate(t, pool)
	brokers := testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	relay, _ := startRelay(t, pool, writer(t, brokers), testenv.Logger(t))
	appendEvents(t, pool, topic, "o-pg", 1, 10)
	testenv.Eventually(t, 20*time.Second, "first events published", func() bool { return relay.Stats().Published == 10 })

	if err := cluster.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the relay to notice Postgres is gone", func() bool { return !relay.Stats().Active })
	cluster, err = pgembed.Start(ctx, pgembed.Config{DataDir: dir, Port: port, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	appendEvents(t, pool, topic, "o-pg", 11, 10)
	got := consume(t, brokers, topic, 20, 60*time.Second)
	if e, err := events.FromMessage(got[19]); err != nil || e.Subject != "o-pg" {
		t.Fatalf("last message: %v %v", e, err)
	}
	testenv.Eventually(t, 20*time.Second, "outbox emptied", func() bool { return countRows(t, pool) == 0 })
}

func TestBacklogIsObservable(t *testing.T) {
	t.Parallel()
	pool := outboxDB(t)
	appendEvents(t, pool, "nowhere", "o-backlog", 1, 7)
	r := outbox.NewRelay(pool, failingPublisher{}, testenv.Logger(t))
	n, oldest, err := r.Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 7 || oldest <= 0 {
		t.Fatalf("backlog %d rows, oldest %v; want 7 rows and a positive age", n, oldest)
	}
}

type failingPublisher struct{}

func (failingPublisher) WriteMessages(context.Context, ...kafka.Message) error {
	return errors.New("unreachable")
}

func headerValue(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestStandbyHoldsNoSnapshotAndTakesOver: a standby relay must not keep a statement open while it waits (it
// would hold back VACUUM for the whole database), and must take over when the active relay stops.
func TestStandbyHoldsNoSnapshotAndTakesOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	log := testenv.Logger(t)
	first, stopFirst := startRelay(t, pool, writer(t, brokers), log)
	testenv.Eventually(t, 10*time.Second, "the first relay to be active", func() bool { return first.Stats().Active })
	second, _ := startRelay(t, pool, writer(t, brokers), log, outbox.WithPollInterval(50*time.Millisecond))
	appendEvents(t, pool, topic, "o-standby", 1, 5)
	testenv.Eventually(t, 10*time.Second, "the active relay to publish", func() bool { return first.Stats().Published == 5 })

	// The active relay's own statements take snapshots for a moment; a standby blocked in a statement
	// would hold one all along. So some moment must show none.
	holding := -1
	for range 50 {
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL`).Scan(&holding)
		if err != nil {
			t.Fatal(err)
		}
		if holding == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if holding != 0 || second.Stats().Active {
		t.Fatalf("%d sessions hold a snapshot throughout (want 0); standby active: %v", holding, second.Stats().Active)
	}

	stopFirst()
	testenv.Eventually(t, 20*time.Second, "the standby to take over", func() bool { return second.Stats().Active })
	appendEvents(t, pool, topic, "o-standby", 6, 5)
	testenv.Eventually(t, 20*time.Second, "the new active relay to publish", func() bool { return second.Stats().Published == 5 })
	consume(t, brokers, topic, 10, 20*time.Second)
}

// TestLargeMessagesAreBatchedByBytes: batches stay within MaxBatchBytes, so kafka-go never splits one
// partition's share into several produce requests (which could reorder a key on a retry), and a backlog of
// large messages keeps flowing without waiting for the poll.
func TestLargeMessagesAreBatchedByBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	big := make([]byte, 200_000)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 { // 2.4 MB for one key
		if err := outbox.AppendMessages(ctx, tx, kafka.Message{Topic: topic, Key: []byte("k"), Value: append([]byte(strconv.Itoa(i)+":"), big...)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var batches []int
	startRelay(t, pool, writer(t, brokers), testenv.Logger(t), outbox.WithPollInterval(time.Hour), outbox.WithOnPublished(func(recs []outbox.Record) {
		bytes := 0
		for _, r := range recs {
			bytes += len(r.Message.Value)
		}
		mu.Lock()
		batches = append(batches, bytes)
		mu.Unlock()
	}))
	got := consume(t, brokers, topic, 12, 30*time.Second)
	for i, m := range got {
		if prefix := strconv.Itoa(i) + ":"; string(m.Value[:len(prefix)]) != prefix {
			t.Fatalf("message %d is %q...", i, m.Value[:8])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) < 3 {
		t.Fatalf("2.4 MB went out in %d batches, want at least 3", len(batches))
	}
	for _, b := range batches {
		if b > outbox.MaxBatchBytes {
			t.Fatalf("a batch carried %d bytes, over MaxBatchBytes", b)
		}
	}
}

func TestAppendRejectsMessagesKafkaWouldRefuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tx := outboxTx(t)
	err := outbox.AppendMessages(ctx, tx, kafka.Message{Topic: "t", Value: make([]byte, outbox.MaxMessageBytes+1)})
	if !errors.Is(err, outbox.ErrMessageTooLarge) {
		t.Fatalf("err = %v, want ErrMessageTooLarge", err)
	}
}

// TestWritersNotifyOnlyWhileTheRelaySleeps: NOTIFY serialises commits database-wide, so writers send it only
// while the relay asks (outbox_relay.waiting: down while it streams a backlog); a relay waiting for work
// wakes at once (not at the poll) when an event commits.
func TestWritersNotifyOnlyWhileTheRelaySleeps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	waiting := func() bool { return relayWaiting(t, pool) }
	relay, stop := startRelay(t, pool, writer(t, brokers), testenv.Logger(t), outbox.WithPollInterval(time.Hour))
	testenv.Eventually(t, 10*time.Second, "the idle relay to ask for notifications", waiting)
	for i := range 3 { // each wakes the sleeping relay: with an hour's poll, only a notification can
		appendEvents(t, pool, topic, "o-flag", i+1, 1)
		testenv.Eventually(t, 10*time.Second, "a notified relay to publish", func() bool { return relay.Stats().Published == uint64(i+1) })
		testenv.Eventually(t, 10*time.Second, "the relay to sleep again", waiting)
	}

	// With the flag down, commits send no notification. The relay is stopped for this
	// part, so that a late wake-up of its own cannot raise the flag again under the test.
	stop()
	if _, err := pool.Exec(ctx, `UPDATE outbox_relay SET waiting = false`); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN outbox"); err != nil {
		t.Fatal(err)
	}
	tx, _ := pool.Begin(ctx)
	if err := outbox.AppendMessages(ctx, tx, kafka.Message{Topic: "nowhere", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if n, err := conn.Conn().WaitForNotification(waitCtx); err == nil {
		t.Fatalf("a commit notified although the relay was awake: %+v", n)
	}
	_, _ = conn.Exec(ctx, "UNLISTEN *")
}

// TestWriterKeepsAKeysOrderAcrossItsTwoWriters: outbox.Writer sends small batches through a small writer
// and large ones through a large one; a key's events interleaved across both arrive in order, and the
// relay's batches keep to the large writer's size.
func TestWriterKeepsAKeysOrderAcrossItsTwoWriters(t *testing.T) {
	t.Parallel()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 3)
	w := outbox.NewWriter(brokers, 100, kafkaconn.Config{})
	t.Cleanup(func() { _ = w.Close() })
	var mu sync.Mutex
	var sizes []int
	startRelay(t, pool, w, testenv.Logger(t), outbox.WithBatchSize(1000), outbox.WithOnPublished(func(recs []outbox.Record) {
		mu.Lock()
		sizes = append(sizes, len(recs))
		mu.Unlock()
	}))
	var want []events.Envelope
	for i, n := range []int{1, 250, 2, 40, 1} { // small, large (three batches), small, large, small
		want = append(want, appendEvents(t, pool, topic, "o-two-writers", len(want)+1, n)...)
		if i%2 == 0 {
			consume(t, brokers, topic, len(want), 20*time.Second) // published before the next commit
		}
	}
	got := consume(t, brokers, topic, len(want), 20*time.Second)
	for i, m := range got {
		if id := headerValue(m, "ce_id"); id != want[i].ID.String() {
			t.Fatalf("message %d is event %s, want %s (the key's order broke)", i, id, want[i].ID)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	small, large := 0, 0
	for _, n := range sizes {
		if n > 100 {
			t.Fatalf("a batch of %d rows, over the writer's 100", n)
		}
		if n <= 32 {
			small++
		} else {
			large++
		}
	}
	if small == 0 || large == 0 {
		t.Fatalf("batch sizes %v: want both small and large batches", sizes)
	}
}

// TestBatchesNeverExceedTheWritersBatchSize: a relay batch larger than the kafka-go writer's BatchSize would
// be split into several produce requests per partition, so the relay keeps to the writer's size.
func TestBatchesNeverExceedTheWritersBatchSize(t *testing.T) {
	t.Parallel()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	appendEvents(t, pool, topic, "o-small", 1, 50)
	w := outbox.NewKafkaWriter(brokers, 10, kafkaconn.Config{})
	t.Cleanup(func() { _ = w.Close() })
	var mu sync.Mutex
	largest := 0
	startRelay(t, pool, w, testenv.Logger(t), outbox.WithBatchSize(100), outbox.WithOnPublished(func(recs []outbox.Record) {
		mu.Lock()
		largest = max(largest, len(recs))
		mu.Unlock()
	}))
	consume(t, brokers, topic, 50, 20*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if largest > 10 {
		t.Fatalf("a batch of %d rows went to a writer with BatchSize 10", largest)
	}
}

// TestRowsOfThePreviousVersionArePublished: during a rolling upgrade, processes of the previous version
// still write headers as JSON; the relay publishes those rows with their headers, in id order with the
// new ones.
func TestRowsOfThePreviousVersionArePublished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	_, err := pool.Exec(ctx, `INSERT INTO outbox (topic, key, headers, value) VALUES ($1, 'k', $2, 'old')`,
		topic, `[{"k":"ce_type","v":"`+base64.StdEncoding.EncodeToString([]byte("order.placed"))+`"},{"k":"bin","v":"AAH/"}]`)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.AppendMessages(ctx, pool, kafka.Message{Topic: topic, Key: []byte("k"), Value: []byte("new"),
		Headers: []kafka.Header{{Key: "ce_type", Value: []byte("order.cancelled")}}}); err != nil {
		t.Fatal(err)
	}
	startRelay(t, pool, writer(t, brokers), testenv.Logger(t))
	got := consume(t, brokers, topic, 2, 20*time.Second)
	if string(got[0].Value) != "old" || headerValue(got[0], "ce_type") != "order.placed" || headerValue(got[0], "bin") != "\x00\x01\xff" {
		t.Errorf("the previous version's row arrived as %q with headers %v", got[0].Value, got[0].Headers)
	}
	if string(got[1].Value) != "new" || headerValue(got[1], "ce_type") != "order.cancelled" {
		t.Errorf("the new row arrived as %q with headers %v", got[1].Value, got[1].Headers)
	}
}

// TestARowInsertedWhileTheRelayWasAwakeIsNotLeftToThePoll: while the relay streams a backlog it lets
// writers stop notifying. A writer that inserted then (it will not notify) and commits only after the relay
// caught up and asked for notifications again must still be published at once, not at the next poll: the
// relay keeps reading until the transactions in progress when it raised the flag have ended. With an hour's
// poll, only that can publish the row.
func TestARowInsertedWhileTheRelayWasAwakeIsNotLeftToThePoll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, brokers := outboxDB(t), testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	waiting := func() bool { return relayWaiting(t, pool) }
	gate := &gatedPublisher{next: writer(t, brokers), open: make(chan struct{})}
	appendEvents(t, pool, topic, "backlog", 1, 5)
	relay, _ := startRelay(t, pool, gate, testenv.Logger(t), outbox.WithPollInterval(time.Hour), outbox.WithBatchSize(1))
	// Full batches of one row: the relay streams, with the flag down, and blocks on the closed gate.
	testenv.Eventually(t, 10*time.Second, "the streaming relay to let writers stop notifying", func() bool { return !waiting() })
	late, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	if err := outbox.AppendMessages(ctx, late, kafka.Message{Topic: topic, Key: []byte("late"), Value: []byte("late")}); err != nil {
		t.Fatal(err)
	}
	close(gate.open) // the backlog drains; the relay catches up and raises the flag with the writer in progress
	testenv.Eventually(t, 10*time.Second, "the backlog to be published and the flag raised", func() bool {
		return relay.Stats().Published == 5 && waiting()
	})
	if err := late.Commit(ctx); err != nil { // saw the flag down: no notification
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the late row to be published without a notification", func() bool { return relay.Stats().Published == 6 })
}

// gatedPublisher publishes through next once open is closed.
type gatedPublisher struct {
	next outbox.Publisher
	open chan struct{}
}

func (g *gatedPublisher) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.next.WriteMessages(ctx, msgs...)
}

// TestLocalCommitsWakeTheRelayWithoutNotify: writers of the relay's own process (a pool configured with
// its LocalCommits) wake it in process and send no NOTIFY; writers of another process still notify, and
// do again once a relay of another process takes over. With an hour's poll, only a wake-up publishes.
func TestLocalCommitsWakeTheRelayWithoutNotify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	remote := connect(t, url) // another process's writers
	migrate(t, remote)
	local := outbox.NewLocalCommits()
	pool := connect(t, url, local.Configure)
	brokers := testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	listener, err := remote.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	if _, err := listener.Exec(ctx, "LISTEN outbox"); err != nil {
		t.Fatal(err)
	}
	notified := func() bool {
		waitCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := listener.Conn().WaitForNotification(waitCtx)
		return err == nil
	}

	relay, stop := startRelay(t, pool, writer(t, brokers), testenv.Logger(t), outbox.WithPollInterval(time.Hour), outbox.WithLocalCommits(local))
	// Active: it has named this process as the holder (the flag is up from the start, so it tells nothing).
	testenv.Eventually(t, 10*time.Second, "the relay to be active", func() bool { return relay.Stats().Active })
	drain(listener) // the flag's own history is not under test
	appendEvents(t, pool, topic, "local", 1, 1)
	testenv.Eventually(t, 10*time.Second, "a local commit to wake the relay", func() bool { return relay.Stats().Published == 1 })
	if notified() {
		t.Fatal("a commit of the relay's own process sent a NOTIFY")
	}
	appendEvents(t, remote, topic, "remote", 1, 1)
	if !notified() {
		t.Fatal("a commit of another process sent no NOTIFY")
	}
	testenv.Eventually(t, 10*time.Second, "a notified relay to publish", func() bool { return relay.Stats().Published == 2 })

	// Another process's relay takes over: this process's writers must notify it.
	stop()
	// The old holder's backend releases the lock as it exits, just after Run returned; a standby that
	// found it taken would poll again only in an hour.
	testenv.Eventually(t, 10*time.Second, "the outbox lock to be released", func() bool {
		var held bool
		err := remote.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&held)
		return err == nil && !held
	})
	other, _ := startRelay(t, remote, writer(t, brokers), testenv.Logger(t), outbox.WithPollInterval(time.Hour))
	testenv.Eventually(t, 10*time.Second, "the other relay to be active", func() bool { return other.Stats().Active })
	appendEvents(t, pool, topic, "local", 2, 1)
	testenv.Eventually(t, 10*time.Second, "the new holder to be notified", func() bool { return other.Stats().Published == 1 })
}

// drain returns the notifications already received on conn.
func drain(conn *pgxpool.Conn) []*pgconn.Notification {
	var got []*pgconn.Notification
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		n, err := conn.Conn().WaitForNotification(ctx)
		cancel()
		if err != nil {
			return got
		}
		got = append(got, n)
	}
}

// relayWaiting reads the flag with which the relay asks writers to notify it.
func relayWaiting(t *testing.T, pool *pgxpool.Pool) bool {
	t.Helper()
	var w bool
	if err := pool.QueryRow(context.Background(), `SELECT waiting FROM outbox_relay`).Scan(&w); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestDeferredAppendsAreWrittenTogetherInOrder: in a context from Deferred, appends to its transaction are
// checked at once, written by FlushDeferred in append order (one statement), and appends through another
// Execer are not held back.
func TestDeferredAppendsAreWrittenTogetherInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tx := outboxTx(t)
	rows := func() []string {
		t.Helper()
		rs, _ := tx.Query(ctx, `SELECT convert_from(value, 'UTF8') FROM outbox ORDER BY id`)
		got, err := pgx.CollectRows(rs, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	dctx := outbox.Deferred(ctx, tx)
	for _, v := range []string{"a", "b", "c"} {
		if err := outbox.AppendMessages(dctx, tx, kafka.Message{Topic: "t", Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	err := outbox.AppendMessages(dctx, tx, kafka.Message{Topic: "t", Value: make([]byte, outbox.MaxMessageBytes+1)})
	if !errors.Is(err, outbox.ErrMessageTooLarge) {
		t.Fatalf("a deferred append of a message Kafka would refuse: %v, want ErrMessageTooLarge", err)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.AppendMessages(dctx, sp, kafka.Message{Topic: "t", Value: []byte("direct")}); err != nil {
		t.Fatal(err)
	}
	if err := sp.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rows()); got != "[direct]" {
		t.Fatalf("before the flush the outbox holds %s, want [direct]", got)
	}
	if err := outbox.FlushDeferred(dctx); err != nil {
		t.Fatal(err)
	}
	if err := outbox.FlushDeferred(dctx); err != nil { // nothing left: writes nothing twice
		t.Fatal(err)
	}
	if got := fmt.Sprint(rows()); got != "[direct a b c]" {
		t.Fatalf("after the flush the outbox holds %s, want [direct a b c]", got)
	}
}

// TestDeletesRideWithTheNextRead: under a stream of commits the relay deletes published rows in the round
// trip of its next read, so each row costs about one round trip, not a read and a delete; rows published
// when no commit follows are deleted too, and nothing stays in the outbox.
func TestDeletesRideWithTheNextRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	local := outbox.NewLocalCommits()
	writers := connect(t, url, local.Configure)
	migrate(t, writers)
	trips := &roundTrips{}
	relayPool := connect(t, url, func(c *pgxpool.Config) { c.ConnConfig.Tracer = trips })
	brokers := testenv.Kafka(t)
	topic := newTopic(t, brokers, 1)
	relay, _ := startRelay(t, relayPool, writer(t, brokers), testenv.Logger(t), outbox.WithPollInterval(time.Hour), outbox.WithLocalCommits(local))
	testenv.Eventually(t, 10*time.Second, "the relay to be active", func() bool { return relay.Stats().Active })

	const rows = 40
	before := trips.outbox.Load()
	for i := range rows {
		appendEvents(t, writers, topic, "stream", i, 1)
		time.Sleep(5 * time.Millisecond)
	}
	testenv.Eventually(t, 10*time.Second, "every row published and deleted", func() bool {
		var left int
		err := writers.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&left)
		return err == nil && left == 0 && relay.Stats().Published == rows
	})
	// A read and a delete for each row would be 80 round trips.
	if n := trips.outbox.Load() - before; n > rows*3/2 {
		t.Fatalf("%d round trips on the outbox for %d rows committed one by one, want at most %d", n, rows, rows*3/2)
	}
}

// roundTrips counts the round trips of a pool's statements on the outbox table (a batch is one).
type roundTrips struct{ outbox atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "FROM outbox") {
		r.outbox.Add(1)
	}
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	for _, q := range data.Batch.QueuedQueries {
		if strings.Contains(q.SQL, "FROM outbox") {
			r.outbox.Add(1)
			break
		}
	}
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestTheOutboxIsVacuumedAfterAFixedNumberOfDeletes: the outbox carries its own autovacuum settings, a
// fixed number of dead rows rather than a share of the table. A queue table is all dead rows between
// vacuums; the default, a fifth of the table, lets them pile up. (It checks the settings, not a vacuum:
// when that happens depends on the server's naptime, which a run against DATABASE_URL does not set.)
func TestTheOutboxIsVacuumedAfterAFixedNumberOfDeletes(t *testing.T) {
	t.Parallel()
	var opts []string
	if err := outboxDB(t).QueryRow(context.Background(),
		`SELECT reloptions FROM pg_class WHERE oid = 'outbox'::regclass`).Scan(&opts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=500"} {
		if !slices.Contains(opts, want) {
			t.Errorf("outbox reloptions %v lack %s", opts, want)
		}
	}
}
