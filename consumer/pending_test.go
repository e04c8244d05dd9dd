package consumer_test

import (
	"context"
	"errors"
	"maps"
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

// marked is a row of pendingSQL: a key and how many of its events were recorded.
type marked struct {
	Subject string
	Parts   int64
}

func (m marked) key() string { return m.Subject }

// pendingSQL finds the marked keys with a recorded part: all of them, here.
const pendingSQL = `SELECT subject, count(*) /* decide */ FROM applied WHERE subject = ANY($1) GROUP BY subject`

// decision is one call of a Pending's Decide.
type decision struct {
	key, cause string
	parts      int64
}

// pendingConsumer starts a consumer whose handler records an order.cancelled or order.confirmed event
// with a held-back insert and marks its subject, under a Pending that decides with decide; order.cancelled
// is unhurried, so a batch of them waits (up to a minute) for an order.confirmed.
func pendingConsumer(t *testing.T, f fixture, decide func(ctx context.Context, tx pgx.Tx, cause consumer.Event, row marked) error, tweak func(*consumer.Config)) *consumer.Consumer {
	t.Helper()
	part := func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if _, err := postgres.Later(tx).Exec(ctx, `INSERT INTO applied (event_id, subject, seq) VALUES ($1, $2, 1)`, ev.ID, ev.Subject); err != nil {
			return err
		}
		return consumer.MayBeDue(ctx, ev.Subject, ev)
	}
	r := cancelledRouter(t, part)
	r.OnEach(part, events.OrderConfirmed{})
	r.Unhurried(events.OrderCancelled{})
	r.Scope(consumer.Pending[marked]{Query: pendingSQL, Key: marked.key, Decide: decide})
	return f.start(t, r, func(c *consumer.Config) {
		c.Linger = time.Minute
		if tweak != nil {
			tweak(c)
		}
	})
}

// confirmedEvent is an order.confirmed event about subject: it ends a batch's wait.
func confirmedEvent(t *testing.T, subject string) events.Envelope {
	t.Helper()
	e, err := events.New("test", subject, events.OrderConfirmed{OrderID: subject})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestPendingDecidesABatchInOneRoundTrip: handlers that hold their writes back and mark their key with
// MayBeDue leave the decision to Pending: each key once, in the order first marked, caused by the event
// that marked it last, after one query that carries every held-back write in its round trip.
func TestPendingDecidesABatchInOneRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	tf, sent := f.traced(t)
	var mu sync.Mutex
	var got []decision
	c := pendingConsumer(t, tf, func(_ context.Context, _ pgx.Tx, cause consumer.Event, row marked) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, decision{row.Subject, cause.ID.String(), row.Parts})
		return nil
	}, nil)

	evs := []events.Envelope{event(t, "o1", 1), event(t, "o2", 1), event(t, "o1", 2), event(t, "o3", 1), confirmedEvent(t, "o2")}
	for _, e := range evs {
		f.produce(t, events.ToMessage("", e))
	}
	testenv.Eventually(t, 30*time.Second, "the events applied", func() bool { return c.Stats().Applied == uint64(len(evs)) })

	mu.Lock()
	defer mu.Unlock()
	want := []decision{{"o1", evs[2].ID.String(), 2}, {"o2", evs[4].ID.String(), 2}, {"o3", evs[3].ID.String(), 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("decisions %v, want %v", got, want)
	}
	trips := sent.touching("INSERT INTO applied", "/* decide */")
	if len(trips) != 1 || !slices.ContainsFunc(trips[0], func(s string) bool { return strings.Contains(s, "/* decide */") }) {
		t.Fatalf("the batch's writes and decision took %d round trips, want 1: %q", len(trips), trips)
	}
}

// TestAFailingDecisionIsItsCausesFailure: a decision that fails is the failure of the event that caused
// it, not of the batch: that event is parked (after its attempts; at once dead-lettered when the failure
// is permanent) without being applied, and the rest of the batch is applied and decided.
func TestAFailingDecisionIsItsCausesFailure(t *testing.T) {
	t.Parallel()
	for name, failure := range map[string]error{"permanent": consumer.Permanent(errors.New("undecidable")), "transient": errors.New("flaky")} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 1)
			c := pendingConsumer(t, f, func(ctx context.Context, tx pgx.Tx, cause consumer.Event, row marked) error {
				if row.Subject == "bad" {
					return failure
				}
				_, err := postgres.Later(tx).Exec(ctx, `INSERT INTO applied (event_id, subject, seq) VALUES ($1, $2, 0)`, cause.ID, row.Subject)
				return err
			}, func(c *consumer.Config) { c.MaxAttempts = 3 })

			evs := []events.Envelope{event(t, "o1", 1), event(t, "bad", 1), event(t, "o2", 1), confirmedEvent(t, "o3")}
			for _, e := range evs {
				f.produce(t, events.ToMessage("", e))
			}
			gaveUp := func(s consumer.Stats) uint64 { return s.Parked + s.DeadLettered }
			testenv.Eventually(t, 30*time.Second, "the events applied or given up", func() bool { return c.Stats().Applied == uint64(len(evs)) })

			s := c.Stats()
			if gaveUp(s) != 1 || s.Handled != 3 || (name == "permanent") != (s.DeadLettered == 1) {
				t.Fatalf("stats %+v: want bad's event given up (dead-lettered if permanent, else parked), the 3 others handled", s)
			}
			rows, err := f.pool.Query(context.Background(), `SELECT subject, count(*) FROM applied WHERE seq = 0 GROUP BY subject`)
			if err != nil {
				t.Fatal(err)
			}
			decided := map[string]int64{}
			for rows.Next() {
				var k string
				var n int64
				if err := rows.Scan(&k, &n); err != nil {
					t.Fatal(err)
				}
				decided[k] = n
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(decided, map[string]int64{"o1": 1, "o2": 1, "o3": 1}) {
				t.Fatalf("decisions committed %v, want o1, o2 and o3 once each", decided)
			}
			var bad int
			if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM applied WHERE subject = 'bad'`).Scan(&bad); err != nil || bad != 0 {
				t.Fatalf("bad's part recorded %d times (%v), want 0: a given-up event is not applied", bad, err)
			}
		})
	}
}
