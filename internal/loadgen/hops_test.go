package loadgen

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/choreo-dev/choreo/events"
)

// TestHopsBreakASagaDownByStep builds the events of two orders and of an order of another load, and checks
// each step's and each service's delays.
func TestHopsBreakASagaDownByStep(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	var evs []sentEvent
	// emit adds an event of order made at made and sent at sent, caused by cause (nil: the saga's first).
	emit := func(order, typ, source string, cause *sentEvent, made, sent float64) *sentEvent {
		e := sentEvent{Envelope: events.Envelope{ID: uuid.New(), Type: typ, Source: source, Subject: order, Time: at(made)}, sent: at(sent)}
		if cause != nil {
			e.CausationID = cause.ID.String()
		}
		evs = append(evs, e)
		return &evs[len(evs)-1]
	}
	for i, order := range []string{"o1", "o2", "other"} {
		d := float64(i) // o2's steps take a millisecond longer than o1's
		placed := emit(order, "order.placed", "order", nil, 0, 2)
		reserved := emit(order, "stock.reserved", "inventory", placed, 10+d, 13+d)
		emit(order, "customer.approved", "customer", placed, 5, 6)
		authorized := emit(order, "payment.authorized", "payment", reserved, 40+2*d, 41+2*d)
		emit(order, "order.confirmed", "order", authorized, 50+3*d, 50.5+3*d) // sent within the millisecond it was made
	}
	evs[0].CausationID = uuid.NewString() // a cause the load did not read: no step
	again := evs[1]                       // o1's stock.reserved, published again 100 ms later: counted once, from its first send
	again.sent = again.sent.Add(100 * time.Millisecond)
	evs = append(evs, again)

	h := hopsOf(evs, map[string]bool{"o1": true, "o2": true})
	if h.Orders != 2 || h.Events != 10 {
		t.Fatalf("orders %d events %d, want 2 and 10", h.Orders, h.Events)
	}
	type step struct{ cause, effect, by string }
	wantSteps := []step{ // in the order the saga takes them
		{"order.placed", "customer.approved", "customer"},
		{"order.placed", "stock.reserved", "inventory"},
		{"stock.reserved", "payment.authorized", "payment"},
		{"payment.authorized", "order.confirmed", "order"},
	}
	wantDelay := map[step][2]time.Duration{ // o1's and o2's: percentiles are nearest-rank
		wantSteps[0]: {3 * time.Millisecond, 3 * time.Millisecond},
		wantSteps[1]: {8 * time.Millisecond, 9 * time.Millisecond},
		wantSteps[2]: {27 * time.Millisecond, 28 * time.Millisecond},
		wantSteps[3]: {9 * time.Millisecond, 10 * time.Millisecond},
	}
	if len(h.Steps) != len(wantSteps) {
		t.Fatalf("steps %+v, want %v", h.Steps, wantSteps)
	}
	for i, s := range h.Steps {
		k := step{s.Cause, s.Effect, s.Service}
		if k != wantSteps[i] {
			t.Errorf("step %d is %v, want %v", i, k, wantSteps[i])
		}
		if w := wantDelay[k]; s.Delay.N != 2 || s.Delay.P50 != w[0] || s.Delay.Max != w[1] {
			t.Errorf("%v: %+v, want p50 %s and max %s of 2", k, s.Delay, w[0], w[1])
		}
	}
	wantSends := map[string][2]time.Duration{ // p50, max
		"customer":  {time.Millisecond, time.Millisecond},
		"inventory": {3 * time.Millisecond, 3 * time.Millisecond},
		"order":     {500 * time.Microsecond, 2 * time.Millisecond},
		"payment":   {time.Millisecond, time.Millisecond},
	}
	if len(h.Sends) != len(wantSends) {
		t.Fatalf("sends %+v, want %v", h.Sends, wantSends)
	}
	for _, s := range h.Sends {
		if w := wantSends[s.Service]; s.Delay.P50 != w[0] || s.Delay.Max != w[1] {
			t.Errorf("%s sends: %+v, want p50 %s max %s", s.Service, s.Delay, w[0], w[1])
		}
	}

	// A send stamped before its event was made (the timestamp's milliseconds, or another host's clock)
	// counts as no time, not as negative.
	evs[1].sent = evs[1].Time.Add(-time.Millisecond)
	for _, s := range hopsOf(evs, map[string]bool{"o1": true}).Sends {
		if s.Delay.P50 < 0 {
			t.Errorf("%s: negative send %s", s.Service, s.Delay.P50)
		}
	}

	var out bytes.Buffer
	h.Print(&out)
	for _, want := range []string{"10 events of 2 orders", "stock.reserved → payment.authorized", "27.0ms", "inventory"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed breakdown lacks %q:\n%s", want, out.String())
		}
	}
}

// TestHopsListStepsInTheSagasOrder: steps sort by how many causes back their effects are from the saga's
// first event, before when they happened, so that a late first step comes before an early second one.
func TestHopsListStepsInTheSagasOrder(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var evs []sentEvent
	emit := func(order, typ string, cause *sentEvent, ms int) *sentEvent {
		e := sentEvent{Envelope: events.Envelope{ID: uuid.New(), Type: typ, Source: "s", Subject: order, Time: t0.Add(time.Duration(ms) * time.Millisecond)}}
		e.sent = e.Time
		if cause != nil {
			e.CausationID = cause.ID.String()
		}
		evs = append(evs, e)
		return &evs[len(evs)-1]
	}
	evs = make([]sentEvent, 0, 8) // emit keeps pointers into evs
	x := emit("x", "a", nil, 0)
	emit("x", "c", emit("x", "b", x, 50), 60)  // a → b at 50 ms, b → c at 60 ms
	emit("y", "d", emit("y", "a", nil, 0), 80) // a → d at 80 ms: a first step, later than x's second
	var got []string
	for _, s := range hopsOf(evs, map[string]bool{"x": true, "y": true}).Steps {
		got = append(got, s.Cause+"→"+s.Effect)
	}
	if want := []string{"a→b", "a→d", "b→c"}; !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
}
