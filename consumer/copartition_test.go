package consumer_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// TestLockConflictsRetryAtOnceWithoutUsingAttempts: a deadlock or serialization failure says nothing about
// the event, so however often it happens the event is applied in the end, never dead-lettered, and each
// conflict is counted.
func TestLockConflictsRetryAtOnceWithoutUsingAttempts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	var calls atomic.Int32
	f.produce(t, events.ToMessage("", event(t, "o-contended", 1)))
	c := f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		switch n := calls.Add(1); {
		case n <= 3:
			return fmt.Errorf("lock products: %w", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
		case n <= 6:
			return fmt.Errorf("update: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize access"})
		}
		return record(ctx, tx, ev)
	}), func(c *consumer.Config) { c.MaxAttempts = 2 })

	testenv.Eventually(t, 10*time.Second, "the contended event applied", func() bool { return f.appliedCount(t) == 1 })
	s := c.Stats()
	if s.DeadLettered != 0 || s.Conflicts != 6 || s.Retries != 0 {
		t.Fatalf("stats %+v: want 6 conflicts, no retries counted as failures, nothing dead-lettered", s)
	}
}

// TestEventsOfAKeyNeverRunConcurrentlyAcrossTopics: an order's events come from several topics, all keyed
// by order id with the same partition count; one worker per partition number handles them, so two events
// of one key are never in two transactions at once (the rows of an order have one writer).
func TestEventsOfAKeyNeverRunConcurrentlyAcrossTopics(t *testing.T) {
	t.Parallel()
	const partitions, keys, perTopic = 3, 12, 4
	f := newFixture(t, partitions)
	other := f
	other.topic = testenv.Name(t, "in2")
	if err := kafkaadmin.EnsureTopics(context.Background(), f.brokers, kafkaadmin.Topic{Name: other.topic, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	var msgsA, msgsB []kafka.Message
	for k := range keys {
		subject := fmt.Sprintf("p%d/o-%d", k%partitions, k)
		for i := range perTopic {
			msgsA = append(msgsA, events.ToMessage("", event(t, subject, i)))
			msgsB = append(msgsB, events.ToMessage("", event(t, subject, 100+i)))
		}
	}
	var mu sync.Mutex
	inFlight := map[string]int{}
	var overlaps atomic.Int32
	f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		mu.Lock()
		inFlight[ev.Subject]++
		if inFlight[ev.Subject] > 1 {
			overlaps.Add(1)
		}
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // widen the window in which another worker could take the same key
		mu.Lock()
		inFlight[ev.Subject]--
		mu.Unlock()
		return record(ctx, tx, ev)
	}), func(c *consumer.Config) { c.Topics = []string{f.topic, other.topic} })
	// Both topics at once, so that their partitions' messages interleave.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.produce(t, msgsA...) }()
	go func() { defer wg.Done(); other.produce(t, msgsB...) }()
	wg.Wait()

	testenv.Eventually(t, 30*time.Second, "every event applied", func() bool { return f.appliedCount(t) == 2*keys*perTopic })
	if n := overlaps.Load(); n > 0 {
		t.Fatalf("%d times two events of one key were handled at once by different workers", n)
	}
}
