package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/outbox"
)

// handOverRig is a relay with LocalCommits and a pool of its process whose transactions hand their rows
// over; the relay polls only hourly, so whatever it publishes it was handed or woken for. It has a Postgres
// cluster of its own: transaction ids and snapshots are the cluster's, and the other tests' transactions
// in a shared one would keep the relay reading (it reads while writers it cannot hear from are in
// progress) and hold back the xmin that settles missing ids.
type handOverRig struct {
	url     string
	pool    *pgxpool.Pool
	relay   *outbox.Relay
	brokers []string
	topic   string
}

func newHandOverRig(t *testing.T) *handOverRig { return newHandOverRigWith(t, nil) }

// newHandOverRigWith is newHandOverRig whose relay publishes through wrap's publisher around Kafka's, if
// wrap is not nil.
func newHandOverRigWith(t *testing.T, wrap func(outbox.Publisher) outbox.Publisher) *handOverRig {
	t.Helper()
	url := testenv.DurableServerURL(t)
	local := outbox.NewLocalCommits()
	r := &handOverRig{url: url, pool: connect(t, url, local.Configure), brokers: testenv.Kafka(t)}
	migrate(t, r.pool)
	r.topic = newTopic(t, r.brokers, 1)
	var pub outbox.Publisher = writer(t, r.brokers)
	if wrap != nil {
		pub = wrap(pub)
	}
	r.relay, _ = startRelay(t, r.pool, pub, testenv.Logger(t), outbox.WithPollInterval(time.Hour), outbox.WithLocalCommits(local))
	testenv.Eventually(t, 10*time.Second, "the relay to be active", func() bool { return r.relay.Stats().Active })
	return r
}

// commit appends an event for subject in a transaction of the relay's process, held back to its commit as
// a service's appends are.
func (r *handOverRig) commit(t *testing.T, subject string, seq int) {
	t.Helper()
	ctx := context.Background()
	tx, err := postgres.BeginLater(ctx, r.pool)
	if err != nil {
		t.Fatal(err)
	}
	e, err := events.New("test", subject, events.OrderCancelled{OrderID: subject, Reason: strconv.Itoa(seq)})
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Append(ctx, postgres.Later(tx), r.topic, e); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// commitInTurn commits events 1 to n for subject k, one at a time, each once the one before was taken or
// published, and checks that exactly they were published, in order.
func (r *handOverRig) commitInTurn(t *testing.T, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		r.commit(t, "k", i)
		// Published, not just handed over: a hand-over refused counts before its read, and a read after
		// the next commit would publish both rows as one batch (the hand-over of the second then found
		// read already).
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			s := r.relay.Stats()
			if s.Published >= uint64(i) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("row %d not published within 10s: stats %+v", i, s)
			}
		}
	}
	if got := r.order(t, n)["k"]; !slices.Equal(got, sequence(n)) {
		t.Fatalf("published %v, want 1 to %d", got, n)
	}
}

// order returns the sequence numbers published for each subject, in the order the topic holds them: want
// messages, and no more within a further second.
func (r *handOverRig) order(t *testing.T, want int) map[string][]int {
	t.Helper()
	got := map[string][]int{}
	msgs := consume(t, r.brokers, r.topic, want, 30*time.Second)
	if n := countMessages(t, r.brokers, r.topic, time.Second); n != want {
		t.Fatalf("the topic holds %d messages, want %d", n, want)
	}
	for _, m := range msgs {
		e, err := events.FromMessage(m)
		if err != nil {
			t.Fatalf("a published message is not the event appended: %v", err)
		}
		var p events.OrderCancelled
		if err := json.Unmarshal(e.Data, &p); err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p.Reason)
		got[e.Subject] = append(got[e.Subject], n)
	}
	return got
}

// TestCommittedRowsAreHandedToTheRelay: the rows of this process's transactions reach Kafka without the
// relay reading them back, intact and in order.
func TestCommittedRowsAreHandedToTheRelay(t *testing.T) {
	t.Parallel()
	r := newHandOverRig(t)
	const n = 20
	r.commitInTurn(t, n)
	// A read that carries deletes may find a commit before its hand-over is taken; most are taken.
	if s := r.relay.Stats(); s.HandOvers < n/2 {
		t.Fatalf("%d of %d transactions published as handed over (%d read instead)", s.HandOvers, n, s.HandOversRead)
	}
}

// outage is a publisher whose Kafka is unreachable while down is set.
type outage struct {
	next     outbox.Publisher
	down     atomic.Bool
	refusals atomic.Int64
}

func (o *outage) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if o.down.Load() {
		o.refusals.Add(1)
		return errors.New("kafka unreachable")
	}
	return o.next.WriteMessages(ctx, msgs...)
}

// TestHandedOverRowsOutlastAKafkaOutage: rows taken as handed over while Kafka is unreachable are
// retried, not dropped, and reach Kafka in order once it is back, the rows committed meanwhile after them.
func TestHandedOverRowsOutlastAKafkaOutage(t *testing.T) {
	t.Parallel()
	var kafkaDown *outage
	r := newHandOverRigWith(t, func(p outbox.Publisher) outbox.Publisher {
		kafkaDown = &outage{next: p}
		return kafkaDown
	})
	kafkaDown.down.Store(true)
	const n = 6
	for i := 1; i <= n/2; i++ {
		r.commit(t, "k", i)
	}
	testenv.Eventually(t, 10*time.Second, "the relay to retry against the outage", func() bool { return kafkaDown.refusals.Load() >= 2 })
	kafkaDown.down.Store(false)
	for i := n/2 + 1; i <= n; i++ {
		r.commit(t, "k", i)
	}
	if got := r.order(t, n)["k"]; !slices.Equal(got, sequence(n)) {
		t.Fatalf("published %v, want 1 to %d", got, n)
	}
	if s := r.relay.Stats(); s.HandOvers == 0 {
		t.Fatalf("no hand-over was taken (%d read, %d already read): the outage was not theirs", s.HandOversRead, s.HandOversSeen)
	}
}

// TestAHandOverDoesNotOvertakeALateCommit: a transaction takes an outbox id and commits only after a
// higher id was published, without the relay hearing of it (a writer of the relay's process that
// LocalCommits does not watch). The next row of its key, handed over, must not be published before it:
// the relay reads instead, and finds both in order.
func TestAHandOverDoesNotOvertakeALateCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newHandOverRig(t)
	var holder string
	if err := r.pool.QueryRow(ctx, `SELECT holder FROM outbox_relay WHERE id = 1`).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	silent := connect(t, r.url, func(c *pgxpool.Config) { // the trigger takes it for a LocalCommits writer
		c.ConnConfig.RuntimeParams["choreo.outbox_writer"] = holder
	})
	late, err := silent.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	first, err := events.New("test", "late", events.OrderCancelled{OrderID: "late", Reason: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Append(ctx, late, r.topic, first); err != nil { // takes its id now
		t.Fatal(err)
	}
	r.commit(t, "other", 1)
	testenv.Eventually(t, 10*time.Second, "the row above the late one to be published", func() bool { return r.relay.Stats().Published == 1 })
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r.commit(t, "late", 2)

	if got := r.order(t, 3)["late"]; len(got) != 2 || got[0] != 1 {
		t.Fatalf("key late published as %v, want [1 2]", got)
	}
}

// TestHandOversResumeAfterAnIDThatNeverCommits: an id taken by a transaction that rolls back is never
// read; the relay reads until it knows that, then takes hand-overs again.
func TestHandOversResumeAfterAnIDThatNeverCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newHandOverRig(t)
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lost, err := events.New("test", "k", events.OrderCancelled{OrderID: "k", Reason: "lost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Append(ctx, tx, r.topic, lost); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 10
	r.commitInTurn(t, n)
	s := r.relay.Stats()
	if s.HandOvers == n {
		t.Fatal("every commit was taken as handed over, the first after the lost id too")
	}
	if s.HandOvers < n/2 {
		t.Fatalf("after the lost id: %d hand-overs published, %d read; the relay did not settle the lost id", s.HandOvers, s.HandOversRead)
	}
}

// TestOutboxIDsAreTakenAfterTheirTransactionID: the frontier's argument needs a row's transaction to have
// its id before the row takes its outbox id. A default evaluated with the id's shows whether the
// transaction had one then: with migration 006's trigger it does, without it not yet.
func TestOutboxIDsAreTakenAfterTheirTransactionID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := outboxDB(t)
	if _, err := pool.Exec(ctx, `ALTER TABLE outbox ADD COLUMN had_xact_id boolean DEFAULT (pg_current_xact_id_if_assigned() IS NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		trigger string
		want    bool
	}{{"ENABLE", true}, {"DISABLE", false}} {
		if _, err := pool.Exec(ctx, `ALTER TABLE outbox `+c.trigger+` TRIGGER outbox_take_xact_id`); err != nil {
			t.Fatal(err)
		}
		var had bool
		if err := pool.QueryRow(ctx, `INSERT INTO outbox (topic, value) VALUES ('t', 'v') RETURNING had_xact_id`).Scan(&had); err != nil {
			t.Fatal(err)
		}
		if had != c.want {
			t.Fatalf("trigger %sD: the transaction had its id when the row took its outbox id: %v, want %v", c.trigger, had, c.want)
		}
	}
	// A cache would let one session take an id below another's that was read already.
	var cache int64
	if err := pool.QueryRow(ctx, `SELECT cache_size FROM pg_sequences WHERE schemaname || '.' || sequencename = pg_get_serial_sequence('outbox', 'id')`).Scan(&cache); err != nil || cache != 1 {
		t.Fatalf("the outbox's id sequence caches %d ids (%v), want 1", cache, err)
	}
}

// sequence returns 1 to n.
func sequence(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// countMessages returns how many messages topic holds, reading it from the start until none came for quiet.
func countMessages(t *testing.T, brokers []string, topic string, quiet time.Duration) int {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	n := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		_, err := r.FetchMessage(ctx)
		cancel()
		if err != nil {
			return n
		}
		n++
	}
}

// TestLocalCommitsHandOverOnlyWhatCommitted: LocalCommits hands a committed transaction's rows over, with
// their ids, only while a relay accepts them; a transaction that rolled back to a savepoint after its
// append went out, or that rolled back, hands nothing over.
func TestLocalCommitsHandOverOnlyWhatCommitted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	local := outbox.NewLocalCommits()
	pool := connect(t, testenv.DatabaseURL(t), local.Configure)
	migrate(t, pool)
	woken := func() bool {
		select {
		case <-local.Woken():
			return true
		default:
			return false
		}
	}
	commit := func(name string, before, after func(tx *postgres.Tx)) {
		t.Helper()
		tx, err := postgres.BeginLater(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if before != nil {
			before(tx)
		}
		e, err := events.New("test", name, events.OrderCancelled{OrderID: name, Reason: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Append(ctx, postgres.Later(tx), "t", e); err != nil {
			t.Fatal(err)
		}
		if after != nil {
			after(tx)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}

	commit("unaccepted", nil, nil)
	if len(local.Handed()) != 0 || !woken() {
		t.Fatalf("no relay accepts: %d hand-overs queued, want none and a wake-up", len(local.Handed()))
	}

	local.Accept(true)
	commit("accepted", nil, nil)
	if woken() || len(local.Handed()) != 1 {
		t.Fatalf("a relay accepts: %d hand-overs queued, want 1 and no wake-up", len(local.Handed()))
	}
	recs := <-local.Handed()
	var id int64
	if err := pool.QueryRow(ctx, `SELECT max(id) FROM outbox`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != id || recs[0].Message.Topic != "t" || !strings.Contains(string(recs[0].Message.Value), "accepted") {
		t.Fatalf("handed over %+v, want the row with id %d", recs, id)
	}

	// The append goes out inside a savepoint, which is then rolled back: the rows are gone.
	var sp pgx.Tx
	commit("undone", func(tx *postgres.Tx) {
		var err error
		if sp, err = tx.Begin(ctx); err != nil {
			t.Fatal(err)
		}
	}, func(*postgres.Tx) {
		if _, err := sp.Exec(ctx, `SELECT 1`); err != nil { // carries the held-back append
			t.Fatal(err)
		}
		if err := sp.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if len(local.Handed()) != 0 {
		t.Fatalf("handed over the row with id %d, which a savepoint's rollback undid", (<-local.Handed())[0].ID)
	}
	if n := countRows(t, pool); n != 2 {
		t.Fatalf("%d rows in the outbox, want 2 (the savepoint's rollback undid the third)", n)
	}
}
