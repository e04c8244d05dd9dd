package consumer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// TestCommitterMergesWhileACommitIsInFlight: workers never wait for the coordinator; what they hand in
// while a commit is in flight goes out in one request, with the highest offset of each partition, and the
// offsets added before the generation ends are committed once the workers have stopped.
func TestCommitterMergesWhileACommitIsInFlight(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]map[int]int64
	release := make(chan struct{})
	commit := func(offsets map[string]map[int]int64) error {
		if len(got) == 0 {
			<-release // the first commit is slow
		}
		mu.Lock()
		defer mu.Unlock()
		got = append(got, offsets)
		return nil
	}
	c := newCommitter(commit, Config{BackoffMin: time.Millisecond, BackoffMax: time.Millisecond}, zerolog.Nop())
	genCtx, endGen := context.WithCancel(context.Background())
	workersDone := make(chan struct{})
	finished := make(chan struct{})
	go func() { defer close(finished); c.run(genCtx, workersDone) }()

	c.add("a", 0, 10) // taken by the first commit, which blocks
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.pending) == 0 })
	c.add("a", 0, 11) // all merged into the next one
	c.add("a", 1, 5)
	c.add("a", 0, 12)
	c.add("b", 0, 3)
	close(release)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })

	endGen()
	c.add("a", 1, 6) // a worker finishing its last batch after the generation ended
	close(workersDone)
	<-finished

	want := []map[string]map[int]int64{
		{"a": {0: 10}},
		{"a": {0: 12, 1: 5}, "b": {0: 3}},
		{"a": {1: 6}},
	}
	if len(got) != len(want) {
		t.Fatalf("%d commits %v, want %v", len(got), got, want)
	}
	for i := range want {
		for topic, parts := range want[i] {
			for p, off := range parts {
				if got[i][topic][p] != off {
					t.Errorf("commit %d: %s/%d = %d, want %d (got %v)", i, topic, p, got[i][topic][p], off, got[i])
				}
			}
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// TestCommitterCommitsAtMostOncePerInterval: after a commit, what workers hand in waits for the interval
// (an hour here), and goes out at once when the generation ends instead.
func TestCommitterCommitsAtMostOncePerInterval(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]map[int]int64
	commit := func(offsets map[string]map[int]int64) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, offsets)
		return nil
	}
	c := newCommitter(commit, Config{CommitInterval: time.Hour}, zerolog.Nop())
	genCtx, endGen := context.WithCancel(context.Background())
	workersDone := make(chan struct{})
	finished := make(chan struct{})
	go func() { defer close(finished); c.run(genCtx, workersDone) }()
	c.add("a", 0, 1)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	for i := range 100 {
		c.add("a", 0, int64(i+2))
	}
	time.Sleep(50 * time.Millisecond) // time for a wrong second commit to happen
	mu.Lock()
	early := len(got)
	mu.Unlock()
	if early != 1 {
		t.Fatalf("%d commits within the interval, want 1", early)
	}
	endGen()
	close(workersDone)
	<-finished
	if len(got) != 2 || got[1]["a"][0] != 101 {
		t.Fatalf("commits %v, want the last offset 101 committed when the generation ended", got)
	}
}

// TestCommitterRetriesFailedCommitsButNotAnEndedGeneration: a commit the coordinator refuses for a passing
// reason is tried again with the same offsets; one refused because the generation ended is dropped at once
// (the next owner starts from the previous commit and dedupes what it gets again).
func TestCommitterRetriesFailedCommitsButNotAnEndedGeneration(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failWith  error
		wantCalls int
	}{
		{"coordinator unavailable twice", kafka.GroupCoordinatorNotAvailable, 3},
		{"generation ended", kafka.RebalanceInProgress, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []map[string]map[int]int64
			commit := func(offsets map[string]map[int]int64) error {
				calls = append(calls, offsets)
				if len(calls) < 3 {
					return tc.failWith
				}
				return nil
			}
			c := newCommitter(commit, Config{BackoffMin: time.Millisecond, BackoffMax: time.Millisecond}, zerolog.Nop())
			c.add("a", 0, 7)
			c.flush(context.Background())
			if len(calls) != tc.wantCalls {
				t.Fatalf("%d commit calls, want %d", len(calls), tc.wantCalls)
			}
			for i, got := range calls {
				if got["a"][0] != 7 {
					t.Errorf("call %d committed %v, want a/0 at 7", i, got)
				}
			}
			if c.take() != nil {
				t.Error("offsets left pending after the flush")
			}
		})
	}
}
