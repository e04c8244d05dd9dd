package order

import (
	"testing"
	"time"
)

func TestDeadlinesMoveThePlanOnlyEarlier(t *testing.T) {
	d := newDeadlines()
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	moved := func() bool {
		select {
		case <-d.moved:
			return true
		default:
			return false
		}
	}

	// Nothing planned (no pending order known): the first deadline announced is the plan.
	d.announce(t0.Add(time.Minute))
	if !moved() || !d.plan(time.Time{}).Equal(t0.Add(time.Minute)) {
		t.Fatalf("first announce: plan %v", d.plan(time.Time{}))
	}
	// Later deadlines, the common case, neither move the plan nor wake the sweeper.
	d.announce(t0.Add(2 * time.Minute))
	if moved() || !d.plan(time.Time{}).Equal(t0.Add(time.Minute)) {
		t.Fatalf("later announce moved the plan to %v", d.plan(time.Time{}))
	}
	// An earlier one does both.
	d.announce(t0.Add(30 * time.Second))
	if !moved() || !d.plan(time.Time{}).Equal(t0.Add(30*time.Second)) {
		t.Fatalf("earlier announce: plan %v", d.plan(time.Time{}))
	}

	// A sweep forgets the plan; what is announced during it and what it finds combine to the earliest.
	d.forget()
	d.announce(t0.Add(3 * time.Minute))
	if got := d.plan(t0.Add(4 * time.Minute)); !got.Equal(t0.Add(3 * time.Minute)) {
		t.Fatalf("announced during the sweep, then the sweep's next: plan %v", got)
	}
	d.forget()
	if got := d.plan(t0.Add(4 * time.Minute)); !got.Equal(t0.Add(4 * time.Minute)) {
		t.Fatalf("the sweep's next alone: plan %v", got)
	}
	d.forget()
	if got := d.plan(time.Time{}); !got.IsZero() {
		t.Fatalf("no pending order and nothing announced: plan %v", got)
	}
}
