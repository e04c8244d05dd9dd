package loadgen

import (
	"context"
	"math"
	"time"

	"github.com/choreo-dev/choreo/internal/retry"
)

// schedule is an open-loop plan of sends: the nth order is due at start + n/rate, whatever happened to
// the ones before it, so a slow system is offered the same load as a fast one.
type schedule struct {
	rate  float64 // orders per second
	count int     // how many orders
}

// scheduleFor is the schedule of rate orders per second for count orders, or for d when count is 0.
func scheduleFor(rate float64, count int, d time.Duration) schedule {
	if count <= 0 {
		count = int(math.Round(rate * d.Seconds()))
	}
	return schedule{rate: rate, count: count}
}

// due is when the nth send (from 0) is due, relative to the start.
func (s schedule) due(n int) time.Duration {
	return time.Duration(float64(n) * float64(time.Second) / s.rate)
}

// length is how long offering the whole schedule takes.
func (s schedule) length() time.Duration { return s.due(s.count) }

// clock is time as the pacer sees it; tests drive it by hand.
type clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends, and reports whether it waited the full d.
	Sleep(ctx context.Context, d time.Duration) bool
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Sleep(ctx context.Context, d time.Duration) bool { return retry.Sleep(ctx, d) }

// lateness counts the sends that left later than they were due.
type lateness struct {
	count int           // sends more than the tolerance late
	max   time.Duration // the latest one
}

// pace calls send for every entry of s at its due time, from start, until ctx ends. A send that is
// overdue (the process was descheduled, or send was slow) goes out at once, late, and is counted in the
// lateness when it is more than tolerance late: sends are never skipped or merged, and the schedule never
// shifts, so the offered rate stays the one asked for. send must not block. pace returns how many it sent.
func pace(ctx context.Context, c clock, start time.Time, s schedule, tolerance time.Duration, send func(n int, late time.Duration)) (int, lateness) {
	var late lateness
	for n := range s.count {
		due := start.Add(s.due(n))
		if wait := due.Sub(c.Now()); wait > 0 && !c.Sleep(ctx, wait) {
			return n, late
		}
		if ctx.Err() != nil {
			return n, late
		}
		behind := max(c.Now().Sub(due), 0)
		if behind > tolerance {
			late.count++
		}
		late.max = max(late.max, behind)
		send(n, behind)
	}
	return s.count, late
}
