package loadgen

import (
	"context"
	"testing"
	"time"
)

// fakeClock advances only when the pacer sleeps, and by stalls the test injects.
type fakeClock struct {
	now    time.Time
	slept  int
	stalls map[int]time.Duration // after the nth send, time jumps this far (the process was descheduled)
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) bool {
	c.slept++
	c.now = c.now.Add(d)
	return ctx.Err() == nil
}

func TestScheduleSpacing(t *testing.T) {
	s := scheduleFor(200, 0, 30*time.Second)
	if s.count != 6000 {
		t.Fatalf("200/s for 30s: %d orders, want 6000", s.count)
	}
	if s.due(0) != 0 || s.due(1) != 5*time.Millisecond || s.due(200) != time.Second || s.length() != 30*time.Second {
		t.Fatalf("due: %v %v %v, length %v", s.due(0), s.due(1), s.due(200), s.length())
	}
	if c := scheduleFor(20, 40, time.Hour); c.count != 40 {
		t.Fatalf("a count wins over the duration: %d", c.count)
	}
	if thirds := scheduleFor(3, 0, time.Second); thirds.due(1) != 333333333 {
		t.Fatalf("3/s: second send due at %v", thirds.due(1))
	}
}

func TestPaceIsOpenLoop(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &fakeClock{now: start, stalls: map[int]time.Duration{4: 35 * time.Millisecond}}
	s := schedule{rate: 100, count: 10} // every 10ms
	var sentAt []time.Duration
	var lates []time.Duration
	sent, late := pace(t.Context(), c, start, s, 2*time.Millisecond, func(n int, behind time.Duration) {
		if n != len(sentAt) {
			t.Fatalf("send %d out of order after %d", n, len(sentAt))
		}
		sentAt = append(sentAt, c.now.Sub(start))
		lates = append(lates, behind)
		c.now = c.now.Add(c.stalls[n]) // a slow send or a descheduled process
	})
	if sent != 10 || len(sentAt) != 10 {
		t.Fatalf("sent %d (%d calls), want every one of 10: late sends are sent, never dropped", sent, len(sentAt))
	}
	// Send 4 stalls 35ms: sends 5, 6 and 7 (due 50, 60, 70ms) go out at once at 75ms, late by 25, 15 and
	// 5ms; send 8 (due 80ms) is on time again: the schedule did not shift.
	want := []time.Duration{0, 10, 20, 30, 40, 75, 75, 75, 80, 90}
	for i, w := range want {
		if sentAt[i] != w*time.Millisecond {
			t.Fatalf("send %d at %v, want %v (all: %v)", i, sentAt[i], w*time.Millisecond, sentAt)
		}
	}
	if late.count != 3 || late.max != 25*time.Millisecond || lates[5] != 25*time.Millisecond || lates[8] != 0 {
		t.Fatalf("lateness %+v (per send %v), want 3 late, the latest 25ms", late, lates)
	}
}

func TestPaceStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	start := time.Now()
	c := &fakeClock{now: start}
	sent, _ := pace(ctx, c, start, schedule{rate: 10, count: 100}, time.Millisecond, func(n int, _ time.Duration) {
		if n == 4 {
			cancel()
		}
	})
	if sent != 5 {
		t.Fatalf("sent %d after cancelling at the fifth, want 5", sent)
	}
}
