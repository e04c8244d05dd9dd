package consumer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// A handler's AfterCommit work runs once per event that committed, though failures roll back and rerun
// the batch (the events before the failing one run again) and the failing handler registered it too.
func TestAfterCommitRunsOnceForCommittedWorkOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	var mu sync.Mutex
	committed := map[string]int{}
	var failures, calls atomic.Int32
	f.produce(t, events.ToMessage("", event(t, "o-first", 1)), events.ToMessage("", event(t, "o-flaky", 1)), events.ToMessage("", event(t, "o-last", 1)))
	f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		consumer.AfterCommit(ctx, func() { mu.Lock(); committed[ev.Subject]++; mu.Unlock() })
		if err := record(ctx, tx, ev); err != nil {
			return err
		}
		if ev.Subject == "o-flaky" && failures.Add(1) <= 2 {
			return errors.New("flaky dependency")
		}
		return nil
	}), func(c *consumer.Config) {
		c.OnHandled = func(eventType string, took time.Duration) {
			if eventType == "order.cancelled" && took > 0 {
				calls.Add(1)
			}
		}
	})
	testenv.Eventually(t, 10*time.Second, "every event applied", func() bool { return f.appliedCount(t) == 3 })
	testenv.Eventually(t, 10*time.Second, "the commit hooks of the last batch", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(committed) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	for subject, n := range committed {
		if n != 1 {
			t.Errorf("%s: after-commit work ran %d times, want once", subject, n)
		}
	}
	if n := calls.Load(); n < 5 { // o-first twice at least, o-flaky three times, o-last once
		t.Errorf("OnHandled told of %d handler calls, want every one (at least 5)", n)
	}
}
