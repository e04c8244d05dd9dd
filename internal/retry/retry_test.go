package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffGrowsAndCaps(t *testing.T) {
	lo, hi := 10*time.Millisecond, 200*time.Millisecond
	for attempt, want := range []time.Duration{10, 20, 40, 80, 160, 200, 200} {
		want *= time.Millisecond
		for range 50 {
			d := Backoff(attempt, lo, hi)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
	if d := Backoff(1000, lo, hi); d > hi {
		t.Fatalf("huge attempt overflowed the cap: %v", d)
	}
}

func TestSleepStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on a cancelled context reported a full wait")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep did not report a full wait")
	}
}
