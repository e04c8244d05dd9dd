package loadgen

import (
	"sync"
	"time"
)

// record is one offered order and what became of it.
type record struct {
	want     Outcome
	offered  time.Time // when it left the schedule: the POST started then, unless the bound was hit
	id       string    // the order id, once accepted
	failure  string    // why it was not accepted: "HTTP 503", "transport: timeout", "concurrency bound"
	accepted bool
	finished bool
	final    time.Time // the final event's time
	got      Outcome
}

func (r record) latency() time.Duration { return max(r.final.Sub(r.offered), 0) }

// final is an order's last saga event: order.confirmed or order.cancelled.
type final struct {
	orderID string
	outcome Outcome
	at      time.Time
}

// tracker matches final events to offered orders. A final event may arrive before the POST that
// created the order has answered; it is kept until the answer names the order.
type tracker struct {
	mu      sync.Mutex
	records []*record          // every record of the current phase, in offer order
	pending map[string]*record // accepted and not yet final, by order id
	early   map[string]early   // finals of orders not (yet) known
	pruned  time.Time          // when early was last pruned
}

type early struct {
	final
	seen time.Time
}

func newTracker() *tracker {
	return &tracker{pending: map[string]*record{}, early: map[string]early{}}
}

// earlyKept is how long a final of an unknown order is kept for its POST's answer: far longer than any
// POST may take, after which it is another client's order.
const earlyKept = 2 * time.Minute

// offer adds a record to the current phase.
func (t *tracker) offer(r *record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.records = append(t.records, r)
}

// reset starts a new phase and returns the records of the one that ends. Orders of the old phase still
// pending are no longer waited for.
func (t *tracker) reset() []*record {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.records
	t.records = nil
	clear(t.pending)
	return old
}

// answered records the POST's outcome: accepted with the order id, or failed.
func (t *tracker) answered(r *record, id, failure string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if failure != "" {
		r.failure = failure
		return
	}
	r.accepted, r.id = true, id
	if f, ok := t.early[id]; ok {
		delete(t.early, id)
		r.finish(f.final)
		return
	}
	t.pending[id] = r
}

// finished records a final event; finals of orders this run did not place are kept a while, then dropped.
func (t *tracker) finished(f final, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.pending[f.orderID]; ok {
		delete(t.pending, f.orderID)
		r.finish(f)
		return
	}
	t.early[f.orderID] = early{final: f, seen: now}
	if now.Sub(t.pruned) < time.Second {
		return
	}
	t.pruned = now
	for id, e := range t.early {
		if now.Sub(e.seen) > earlyKept {
			delete(t.early, id)
		}
	}
}

func (r *record) finish(f final) {
	if r.finished { // a redelivered final event
		return
	}
	r.finished, r.final, r.got = true, f.at, f.outcome
}

// pendingIDs lists the accepted orders not final yet (for polling).
func (t *tracker) pendingIDs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]string, 0, len(t.pending))
	for id := range t.pending {
		ids = append(ids, id)
	}
	return ids
}

// snapshot copies the current phase's records, for progress and reports.
func (t *tracker) snapshot() []record {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]record, len(t.records))
	for i, r := range t.records {
		out[i] = *r
	}
	return out
}

// settled reports whether every offered order has an answer and every accepted one is final.
func (t *tracker) settled() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.records {
		if (r.failure == "" && !r.accepted) || (r.accepted && !r.finished) {
			return false
		}
	}
	return true
}
