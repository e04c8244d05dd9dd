package sagas

import (
	"os"
	"slices"
	"testing"

	"github.com/choreo-dev/choreo/events"
)

func TestEveryEventIsKnownAndEmittedOnce(t *testing.T) {
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	emitters := map[string]string{}
	for _, r := range OrderSaga() {
		for _, e := range r.Emits {
			if !reg.Known(e, 1) {
				t.Errorf("%s emits %s, which events.Catalog does not know", r.Service, e)
			}
			if prev, ok := emitters[e]; ok && prev != r.Service {
				t.Errorf("%s is emitted by both %s and %s; an event type has one owner", e, prev, r.Service)
			}
			emitters[e] = r.Service
		}
		if r.IsEvent() && Emitter(r.Trigger) == "" {
			t.Errorf("%s reacts to %s, which nobody emits", r.Service, r.Trigger)
		}
	}
}

func TestEveryFailureIsCompensated(t *testing.T) {
	// A failure after a reservation must release it, and after an authorization must refund it.
	want := map[string][]string{
		"payment.declined": {Inventory, Order},
		"shipment.failed":  {Inventory, Payment, Order},
		"order.cancelled":  {Inventory, Payment, Shipping, Notification},
		// A rejected customer ends the order; the order.cancelled that follows undoes the reservation.
		"customer.rejected": {Order},
	}
	for event, services := range want {
		for _, s := range services {
			if !slices.Contains(ReactionsOf(s), event) {
				t.Errorf("%s does not react to %s", s, event)
			}
		}
	}
}

func TestSubscriptions(t *testing.T) {
	got := Subscriptions(Payment)
	want := []string{"customer.events", "inventory.events", "order.events", "shipping.events"}
	if !slices.Equal(got, want) {
		t.Fatalf("payment consumes %v, want %v", got, want)
	}
	if subs := Subscriptions(Notification); !slices.Equal(subs, []string{"customer.events", "order.events"}) {
		t.Fatalf("notification consumes %v", subs)
	}
}

func TestDocIsCurrent(t *testing.T) {
	b, err := os.ReadFile("../docs/saga.md")
	if err != nil {
		t.Fatalf("read docs/saga.md: %v (regenerate: go run ./cmd/choreo saga > docs/saga.md)", err)
	}
	if string(b) != Markdown() {
		t.Fatal("docs/saga.md is stale: go run ./cmd/choreo saga > docs/saga.md")
	}
}

// TestUnhurried: records of an order's events and the steps after its outcome are off the critical path;
// a compensation, a step on the path, a member of a join and a record of a customer's lifecycle are not.
func TestUnhurried(t *testing.T) {
	for service, want := range map[string][]string{
		Inventory:    {"order.confirmed"},                                    // the sale; not its releases
		Payment:      nil,                                                    // order.placed is in its join; the credit limit is a lifecycle record
		Shipping:     nil,                                                    // order.placed is in its join; order.cancelled is a compensation
		Notification: {"order.cancelled", "order.confirmed", "order.placed"}, // not customer.updated
		Order:        nil,
		Customer:     nil,
	} {
		if got := Unhurried(service); !slices.Equal(got, want) {
			t.Errorf("Unhurried(%s) = %v, want %v", service, got, want)
		}
	}
}

// TestJoinsAreReactionsOfTheirService: each member of a join is an event the service reacts to, and at
// least one of them is a step (the one the saga's usual course ends the join with).
func TestJoinsAreReactionsOfTheirService(t *testing.T) {
	for _, j := range OrderJoins() {
		step := false
		for _, typ := range j.Types {
			if !slices.Contains(ReactionsOf(j.Service), typ) {
				t.Errorf("%s joins %v, but does not react to %s", j.Service, j.Types, typ)
			}
			for _, r := range OrderSaga() {
				step = step || r.Service == j.Service && r.Trigger == typ && r.Kind == Forward
			}
		}
		if !step {
			t.Errorf("%s joins %v, none of which is a step", j.Service, j.Types)
		}
	}
	if got := Joins(Payment); !slices.Equal(got, []string{"customer.approved+order.placed+stock.reserved"}) {
		t.Errorf("Joins(payment) = %v", got)
	}
	if got := Joins(Shipping); !slices.Equal(got, []string{"order.placed+payment.authorized"}) {
		t.Errorf("Joins(shipping) = %v", got)
	}
}
