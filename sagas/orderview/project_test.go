package orderview_test

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

func TestStockReservedBeforeOrderPlaced(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	s := newSaga(t)

	f.project(t, s.reserved(time.Second, 1700,
		events.PricedLine{SKU: "mug", Quantity: 2, PriceCents: 600}, events.PricedLine{SKU: "tea", Quantity: 1, PriceCents: 500}))
	var p httpapi.Problem
	if status := f.getJSON(t, "/v1/orders/"+s.id, &p); status != http.StatusNotFound || p.Status != http.StatusNotFound {
		t.Fatalf("order with only stock.reserved: status %d, problem %+v; want 404 until order.placed", status, p)
	}
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM orderview.orders WHERE id = $1 AND total_cents = 1700`, s.id).Scan(&n); err != nil || n != 1 {
		t.Fatalf("partial row with the reserved total: %d rows (err %v), want 1", n, err)
	}

	f.project(t, s.placed(0, "cust-1", events.Item{SKU: "mug", Quantity: 2}, events.Item{SKU: "tea", Quantity: 1}))
	got := f.get(t, s.id)
	want := orderview.Order{
		ID: got.ID, CustomerID: "cust-1", Status: orderview.Pending, Reason: "", Currency: "USD",
		Items:      []orderview.Item{{SKU: "mug", Quantity: 2, PriceCents: ptr[int64](600)}, {SKU: "tea", Quantity: 1, PriceCents: ptr[int64](500)}},
		TotalCents: ptr[int64](1700),
		CreatedAt:  base, UpdatedAt: base.Add(time.Second), // the later event was applied first
	}
	if got.ID.String() != s.id {
		t.Fatalf("id %s, want %s", got.ID, s.id)
	}
	got.Timeline = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order:\n got %+v\nwant %+v", got, want)
	}
}

// The events of one saga arrive in order within each topic but in any order across topics; every
// interleaving must give the same projection.
func TestProjectionIsTheSameInEveryCrossTopicOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	type ev struct {
		name, topic string
		build       func(saga) events.Envelope
	}
	all := []ev{
		{"placed", "order", func(s saga) events.Envelope {
			return s.placed(0, "cust-x", events.Item{SKU: "mug", Quantity: 3})
		}},
		{"reserved", "inventory", func(s saga) events.Envelope {
			return s.reserved(time.Second, 1800, events.PricedLine{SKU: "mug", Quantity: 3, PriceCents: 600})
		}},
		{"declined", "payment", func(s saga) events.Envelope {
			return s.event("payment", 2*time.Second, events.PaymentDeclined{OrderID: s.id, Reason: "limit"})
		}},
		{"cancelled", "order", func(s saga) events.Envelope { return s.cancelled(3*time.Second, events.ReasonPaymentDeclined) }},
		{"released", "inventory", func(s saga) events.Envelope { return s.released(4 * time.Second) }},
		{"audit", "audit", func(s saga) events.Envelope { return s.unknown("audit.noted", 5*time.Second) }},
	}
	var want *orderview.Order
	wantTypes := []string{"order.placed", "stock.reserved", "payment.declined", "order.cancelled", "stock.released", "audit.noted"}
	orders := 0
	for perm := range permutations(len(all)) {
		if !inTopicOrder(perm, func(i int) string { return all[i].topic }) {
			continue
		}
		orders++
		s := newSaga(t)
		var names []string
		for _, i := range perm {
			f.project(t, all[i].build(s))
			names = append(names, all[i].name)
		}
		got := f.get(t, s.id)
		var types []string
		for _, e := range got.Timeline {
			types = append(types, e.Type)
		}
		if !slices.Equal(types, wantTypes) {
			t.Fatalf("applied %v: timeline %v, want %v", names, types, wantTypes)
		}
		got.ID, got.Timeline = [16]byte{}, nil
		if want == nil {
			want = &got
			if got.Status != orderview.Cancelled || got.Reason != events.ReasonPaymentDeclined || *got.TotalCents != 1800 ||
				!got.CreatedAt.Equal(base) || !got.UpdatedAt.Equal(base.Add(5*time.Second)) {
				t.Fatalf("applied %v: %+v", names, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, *want) {
			t.Fatalf("applied %v:\n got %+v\nwant %+v", names, got, *want)
		}
	}
	if orders != 180 { // 6! / (2! * 2!) for the two topics with two events each
		t.Fatalf("tried %d orders, want 180", orders)
	}
}

// permutations yields every ordering of 0..n-1.
func permutations(n int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		var rec func(prefix []int, rest []int) bool
		rec = func(prefix, rest []int) bool {
			if len(rest) == 0 {
				return yield(slices.Clone(prefix))
			}
			for i := range rest {
				next := append(slices.Clone(rest[:i]), rest[i+1:]...)
				if !rec(append(prefix, rest[i]), next) {
					return false
				}
			}
			return true
		}
		rest := make([]int, n)
		for i := range rest {
			rest[i] = i
		}
		rec(nil, rest)
	}
}

// inTopicOrder reports whether perm keeps the events of each topic in their original (index) order.
func inTopicOrder(perm []int, topic func(int) string) bool {
	last := map[string]int{}
	for _, i := range perm {
		if prev, ok := last[topic(i)]; ok && prev > i {
			return false
		}
		last[topic(i)] = i
	}
	return true
}

func TestRedeliveryChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	s := newSaga(t)
	evs := []events.Envelope{
		s.placed(0, "cust-r", events.Item{SKU: "mug", Quantity: 1}),
		s.reserved(time.Second, 600, events.PricedLine{SKU: "mug", Quantity: 1, PriceCents: 600}),
		s.confirmed(2 * time.Second),
	}
	f.project(t, evs...)
	before := f.get(t, s.id)
	// Every event again, in reverse, then the first one again last: as a redelivery after a lost offset
	// commit, past the inbox (a replay into a kept projection, say).
	for _, e := range slices.Backward(evs) {
		f.project(t, e)
	}
	f.project(t, evs[0])
	after := f.get(t, s.id)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("redelivery changed the order:\nbefore %+v\n after %+v", before, after)
	}
	if len(after.Timeline) != 3 || after.Status != orderview.Confirmed {
		t.Fatalf("after redelivery: status %s, %d timeline entries; want CONFIRMED and 3", after.Status, len(after.Timeline))
	}
}

func TestSettledOrderStaysSettled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	tests := []struct {
		name       string
		evs        func(s saga) []events.Envelope
		wantStatus string
		wantReason string
	}{
		{"confirmed before placed", func(s saga) []events.Envelope {
			return []events.Envelope{s.confirmed(time.Second), s.placed(0, "c", events.Item{SKU: "a", Quantity: 1})}
		}, orderview.Confirmed, ""},
		{"cancelled before placed", func(s saga) []events.Envelope {
			return []events.Envelope{s.cancelled(time.Second, events.ReasonExpired), s.placed(0, "c", events.Item{SKU: "a", Quantity: 1})}
		}, orderview.Cancelled, events.ReasonExpired},
		{"first outcome wins", func(s saga) []events.Envelope {
			return []events.Envelope{s.placed(0, "c", events.Item{SKU: "a", Quantity: 1}), s.cancelled(time.Second, events.ReasonOutOfStock), s.confirmed(2 * time.Second)}
		}, orderview.Cancelled, events.ReasonOutOfStock},
		{"pending", func(s saga) []events.Envelope {
			return []events.Envelope{s.placed(0, "c", events.Item{SKU: "a", Quantity: 1})}
		}, orderview.Pending, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSaga(t)
			f.project(t, tt.evs(s)...)
			got := f.get(t, s.id)
			if got.Status != tt.wantStatus || got.Reason != tt.wantReason {
				t.Fatalf("status %q reason %q, want %q %q", got.Status, got.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

func TestTimelineSortsByTimeThenID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	s := newSaga(t)
	tied := []events.Envelope{s.unknown("z.first.by.id", time.Second), s.unknown("a.second.by.id", time.Second)}
	if tied[0].ID.String() > tied[1].ID.String() { // UUIDv7s of one process increase; keep the test honest
		t.Fatalf("ids %s and %s are not increasing", tied[0].ID, tied[1].ID)
	}
	f.project(t, tied[1], s.unknown("late", 3*time.Second), tied[0], s.placed(0, "c", events.Item{SKU: "a", Quantity: 1}))
	var types []string
	for _, e := range f.get(t, s.id).Timeline {
		types = append(types, e.Type)
	}
	if want := []string{"order.placed", "z.first.by.id", "a.second.by.id", "late"}; !slices.Equal(types, want) {
		t.Fatalf("timeline %v, want %v", types, want)
	}
}

func TestEventWithoutOrderIDIsSkipped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	s := newSaga(t)
	e := s.unknown("x", 0)
	e.Subject = "not-a-uuid"
	f.projectBatch(t, e, s.placed(0, "c", events.Item{SKU: "a", Quantity: 1}))
	if o := f.get(t, s.id); len(o.Timeline) != 1 {
		t.Fatalf("timeline %+v, want only order.placed", o.Timeline)
	}
}

// TestOneBatchFoldsEachOrder applies a whole saga, outcome before placement and a duplicate among them,
// as one batch: the set-wise upsert must give what one event at a time gives.
func TestOneBatchFoldsEachOrder(t *testing.T) {
	t.Parallel()
	f, g := newFixture(t, orderview.Config{}), newFixture(t, orderview.Config{})
	s := newSaga(t)
	placed := s.placed(0, "cust-b", events.Item{SKU: "mug", Quantity: 2})
	evs := []events.Envelope{
		s.reserved(time.Second, 1200, events.PricedLine{SKU: "mug", Quantity: 2, PriceCents: 600}),
		placed, s.cancelled(2*time.Second, events.ReasonPaymentDeclined), placed, s.confirmed(3 * time.Second),
	}
	f.projectBatch(t, evs...)
	g.project(t, evs...)
	batch, single := f.get(t, s.id), g.get(t, s.id)
	if !reflect.DeepEqual(batch, single) {
		t.Fatalf("one batch:\n %+v\none event at a time:\n %+v", batch, single)
	}
	if batch.Status != orderview.Cancelled || len(batch.Timeline) != 4 || *batch.TotalCents != 1200 || batch.Currency != "USD" {
		t.Fatalf("order %+v", batch)
	}
}

// TestCustomerEventsMakeNoOrder: the customer service's lifecycle events share its topic with its saga
// steps, and their subject, a customer id, is a UUID too; they must not become orders.
func TestCustomerEventsMakeNoOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, orderview.Config{})
	customer := newSaga(t) // a UUID, as customer ids are
	f.projectBatch(t, customer.event("customer", 0, events.CustomerRegistered{CustomerID: customer.id, Email: "a@example.com", Name: "A"}),
		customer.event("customer", time.Second, events.CustomerBlocked{CustomerID: customer.id}))
	var rows int
	if err := f.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM orderview.orders WHERE id = $1) + (SELECT count(*) FROM orderview.timeline WHERE order_id = $1)`, customer.id).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("a customer's lifecycle events left %d order or timeline rows", rows)
	}
}
