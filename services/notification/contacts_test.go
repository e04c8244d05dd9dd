package notification_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/servicetest"
	"github.com/choreo-dev/choreo/services/notification"
)

type record struct{ Status, Recipient, Body string }

func notificationOf(t *testing.T, s *servicetest.Service, orderID string) record {
	t.Helper()
	var r record
	err := s.Pool.QueryRow(context.Background(), `SELECT status, recipient, body FROM notifications WHERE order_id = $1`, orderID).Scan(&r.Status, &r.Recipient, &r.Body)
	if err != nil {
		t.Fatalf("notification of %s: %v", orderID, err)
	}
	return r
}

func order(t *testing.T, id, customer string) (placed, confirmed events.Envelope) {
	return servicetest.Event(t, "order", id, events.OrderPlaced{OrderID: id, CustomerID: customer, Items: []events.Item{{SKU: "A", Quantity: 1}}}),
		servicetest.Event(t, "order", id, events.OrderConfirmed{OrderID: id})
}

// TestOutcomeWaitsForTheAddress: an outcome for a customer not heard of yet is recorded WAITING with no
// recipient and no address guessed; customer.registered sends it to the registered address, once.
func TestOutcomeWaitsForTheAddress(t *testing.T) {
	t.Parallel()
	s := servicetest.New(t, notification.Spec(notification.Config{}))
	placed, confirmed := order(t, "o-1", "c-1")
	s.Apply(placed)
	s.Apply(confirmed)
	if r := notificationOf(t, s, "o-1"); r.Status != "WAITING" || r.Recipient != "" {
		t.Fatalf("before registration: %+v, want WAITING without a recipient", r)
	}
	if got := s.Emitted(); len(got) != 0 {
		t.Fatalf("emitted %v before the customer registered", got)
	}
	registered := servicetest.Event(t, "customer", "c-1", events.CustomerRegistered{CustomerID: "c-1", Email: "ada@example.test", Name: "Ada"})
	s.Apply(registered)
	s.Apply(registered) // redelivered: nothing more
	r := notificationOf(t, s, "o-1")
	if r.Status != "SENT" || r.Recipient != "ada@example.test" || !strings.HasPrefix(r.Body, "Hello Ada,") {
		t.Fatalf("after registration: %+v", r)
	}
	if got := s.Emitted(); !slices.Equal(got, []string{"notification.sent"}) {
		t.Fatalf("emitted %v, want one notification.sent", got)
	}
}

// TestAddressFollowsUpdates: customer.updated changes where later messages go; a redelivered older event
// does not bring the old address back.
func TestAddressFollowsUpdates(t *testing.T) {
	t.Parallel()
	s := servicetest.New(t, notification.Spec(notification.Config{}))
	at := func(e events.Envelope, d time.Duration) events.Envelope { e.Time = time.Now().Add(d); return e }
	registered := at(servicetest.Event(t, "customer", "c-2", events.CustomerRegistered{CustomerID: "c-2", Email: "old@example.test", Name: "Bo"}), -time.Minute)
	updated := at(servicetest.Event(t, "customer", "c-2", events.CustomerUpdated{CustomerID: "c-2", Email: "new@example.test", Name: "Bo"}), 0)
	s.Apply(registered)
	s.Apply(updated)
	s.Apply(registered)
	placed, confirmed := order(t, "o-2", "c-2")
	s.Apply(placed)
	s.Apply(confirmed)
	if r := notificationOf(t, s, "o-2"); r.Status != "SENT" || r.Recipient != "new@example.test" {
		t.Fatalf("notification %+v, want SENT to the updated address", r)
	}
}
