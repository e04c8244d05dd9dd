package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

func listParked(t *testing.T, f fixture, group string) []consumer.Parked {
	t.Helper()
	parked, err := consumer.ListParked(context.Background(), f.pool, group)
	if err != nil {
		t.Fatal(err)
	}
	return parked
}

// appliedSeqs returns the seq of every applied event of subject, in the order they were applied.
func (f fixture) appliedSeqs(t *testing.T, subject string) string {
	t.Helper()
	rows, _ := f.pool.Query(context.Background(), `SELECT seq FROM applied WHERE subject = $1 ORDER BY n`, subject)
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(seqs)
}

// TestRetryingPartitionStallsNoOther: the handler of partition 0's events keeps failing (transiently, with
// attempts to spare) while many more events than a worker buffers wait there; the other partitions' events
// are all applied meanwhile.
func TestRetryingPartitionStallsNoOther(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	const perPartition = 60
	var msgs []kafka.Message
	for i := 1; i <= perPartition; i++ {
		msgs = append(msgs, events.ToMessage("", event(t, fmt.Sprintf("p0/stuck-%d", i%3), i)))
	}
	for i := 1; i <= perPartition; i++ {
		for p := 1; p < 4; p++ {
			msgs = append(msgs, events.ToMessage("", event(t, fmt.Sprintf("p%d/flowing", p), i)))
		}
	}
	f.produce(t, msgs...)
	var stuckCalls atomic.Int32
	c := f.start(t, cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if ev.Partition == 0 {
			stuckCalls.Add(1)
			return errors.New("dependency of partition 0 down")
		}
		return record(ctx, tx, ev)
	}), func(c *consumer.Config) {
		c.BatchSize, c.MaxAttempts = 2, 1_000_000
		c.BackoffMin, c.BackoffMax = time.Millisecond, 5*time.Millisecond
	})

	testenv.Eventually(t, 60*time.Second, "every event of partitions 1 to 3 applied", func() bool { return f.appliedCount(t) == 3*perPartition })
	for p := 1; p < 4; p++ {
		if got, want := f.appliedSeqs(t, fmt.Sprintf("p%d/flowing", p)), fmt.Sprint(seq(1, perPartition)); got != want {
			t.Fatalf("partition %d applied %s, want %s", p, got, want)
		}
	}
	if stuckCalls.Load() < 2 {
		t.Fatalf("partition 0's handler ran %d times; it should have been retrying all along", stuckCalls.Load())
	}
	if s := c.Stats(); s.Parked != 0 || s.DeadLettered != 0 {
		t.Fatalf("stats %+v: partition 0 still had attempts to spare", s)
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestParkedKeyQueuesItsEventsAndIsReleasedInOrder: a key whose event fails past its attempts is parked with
// its later events (produced before and after the parking), other keys of the same partition flow; a release
// while the cause persists leaves everything parked; once fixed, a release applies them in order, and the
// key's new events flow again.
func TestParkedKeyQueuesItsEventsAndIsReleasedInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	ctx := context.Background()
	group := testenv.Name(t, "group")
	var broken atomic.Bool
	broken.Store(true)
	router := cancelledRouter(t, func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		if ev.Subject == "k-bad" && broken.Load() {
			return errors.New("downstream refuses k-bad for now")
		}
		return record(ctx, tx, ev)
	})
	c := f.start(t, router, func(c *consumer.Config) { c.MaxAttempts, c.Group = 2, group })
	msg := func(subject string, seq int) kafka.Message { return events.ToMessage("", event(t, subject, seq)) }
	f.produce(t, msg("k-bad", 1), msg("k-good", 1), msg("k-bad", 2), msg("k-good", 2), msg("k-bad", 3))

	testenv.Eventually(t, 30*time.Second, "k-good applied and k-bad's events parked", func() bool {
		return f.appliedSeqs(t, "k-good") == "[1 2]" && len(listParked(t, f, group)) == 3
	})
	f.produce(t, msg("k-bad", 4), msg("k-good", 3))
	testenv.Eventually(t, 30*time.Second, "k-good's next event applied", func() bool { return f.appliedSeqs(t, "k-good") == "[1 2 3]" })
	parked := listParked(t, f, group)
	if len(parked) != 4 {
		t.Fatalf("parked %+v, want k-bad's 4 events", parked)
	}
	for i, p := range parked {
		if p.Key != "k-bad" || p.Origin != fmt.Sprintf("%s/0@%d", f.topic, []int{0, 2, 4, 5}[i]) {
			t.Fatalf("parked event %d: %+v", i, p)
		}
	}
	if !strings.Contains(parked[0].Reason, "gave up after 2 attempts") || !strings.Contains(parked[1].Reason, "queued behind") {
		t.Fatalf("reasons %q, %q", parked[0].Reason, parked[1].Reason)
	}
	if n, err := c.ParkedKeys(ctx); err != nil || n != 1 {
		t.Fatalf("parked keys %d, %v; want 1", n, err)
	}
	if s := c.Stats(); s.Parked != 4 || s.DeadLettered != 0 {
		t.Fatalf("stats %+v, want 4 parked and nothing dead-lettered", s)
	}

	releaser := consumer.Releaser{Group: group, Pool: f.pool, Router: router, Log: zerolog.Nop()}
	res, err := releaser.Release(ctx, "k-bad")
	if err != nil || res.Applied != 0 || res.Remaining != 4 || res.Err == nil {
		t.Fatalf("release while still broken: %+v, %v; want all 4 left parked with the failure", res, err)
	}
	if parked := listParked(t, f, group); len(parked) != 4 || !strings.Contains(parked[0].Reason, "failed again") {
		t.Fatalf("after a failed release: %+v", parked)
	}
	if got := f.appliedSeqs(t, "k-bad"); got != "[]" {
		t.Fatalf("a failed release applied %s", got)
	}

	broken.Store(false)
	results, err := releaser.ReleaseAll(ctx)
	if err != nil || len(results) != 1 || results[0].Applied != 4 || results[0].Remaining != 0 || results[0].Err != nil {
		t.Fatalf("release once fixed: %+v, %v", results, err)
	}
	if got := f.appliedSeqs(t, "k-bad"); got != "[1 2 3 4]" {
		t.Fatalf("released events applied as %s, want in order", got)
	}
	if parked := listParked(t, f, group); len(parked) != 0 {
		t.Fatalf("still parked after release: %+v", parked)
	}
	f.produce(t, msg("k-bad", 5))
	testenv.Eventually(t, 30*time.Second, "k-bad's next event applied directly", func() bool { return f.appliedSeqs(t, "k-bad") == "[1 2 3 4 5]" })
	if n, err := c.ParkedKeys(ctx); err != nil || n != 0 {
		t.Fatalf("parked keys %d, %v; want 0", n, err)
	}
}
