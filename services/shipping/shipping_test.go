package shipping_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/servicetest"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/services/shipping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func spec() shipping.Config { return shipping.Config{Countries: []string{"US", "XX"}} }

func placed(t *testing.T, country string) events.Envelope {
	return servicetest.Event(t, "order", "o", events.OrderPlaced{OrderID: "o", CustomerID: "c", Items: []events.Item{{SKU: "A", Quantity: 1}},
		Currency: "USD", ShippingAddress: events.PostalAddress{Name: "n", Street: "l", City: "c", PostalCode: "p", Country: country}})
}

func authorized(t *testing.T) events.Envelope {
	return servicetest.Event(t, "payment", "o", events.PaymentAuthorized{OrderID: "o", PaymentID: "p", AmountCents: 5})
}

func status(t *testing.T, s *servicetest.Service) string {
	t.Helper()
	var st string
	if err := s.Pool.QueryRow(context.Background(), `SELECT status FROM shipments WHERE order_id = 'o'`).Scan(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestSchedulesOnceBothHalvesArrive(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ status, event string }{
		"US": {shipping.Scheduled, "shipment.scheduled"},
		"FR": {shipping.Failed, "shipment.failed"},
		"XX": {shipping.Failed, "shipment.failed"}, // never shipped to, even when configured
	}
	for country, want := range cases {
		for i, order := range servicetest.Permutations([]events.Envelope{placed(t, country), authorized(t)}) {
			t.Run(fmt.Sprint(country, i), func(t *testing.T) {
				s := servicetest.New(t, shipping.Spec(spec()))
				for _, e := range append(order, order...) {
					s.Apply(e)
				}
				if st := status(t, s); st != want.status {
					t.Fatalf("status %s, want %s", st, want.status)
				}
				if got := s.Emitted(); !slices.Equal(got, []string{want.event}) {
					t.Fatalf("emitted %v, want one %s", got, want.event)
				}
			})
		}
	}
}

func TestCancellationRacesScheduling(t *testing.T) {
	t.Parallel()
	cancelled := servicetest.Event(t, "order", "o", events.OrderCancelled{OrderID: "o", Reason: events.ReasonExpired})
	for i, order := range servicetest.Permutations([]events.Envelope{placed(t, "US"), authorized(t), cancelled}) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			s := servicetest.New(t, shipping.Spec(spec()))
			for _, e := range append(order, order...) {
				s.Apply(e)
			}
			got := s.Emitted()
			if st := status(t, s); st != shipping.Cancelled {
				t.Fatalf("status %s after cancellation, want CANCELLED (events %v)", st, got)
			}
			if len(got) > 0 && !slices.Equal(got, []string{"shipment.scheduled", "shipment.cancelled"}) {
				t.Fatalf("emitted %v: a scheduled shipment must be cancelled, nothing else", got)
			}
		})
	}
}

// TestABatchDecidesEachCompleteShipmentOnce applies both halves of three orders in one transaction, as a
// consumer batch, one of them with an address stored in a form the service cannot read: each complete
// shipment is decided once, and the unreadable one fails (the saga compensates) instead of failing the
// batch.
func TestABatchDecidesEachCompleteShipmentOnce(t *testing.T) {
	t.Parallel()
	s := servicetest.New(t, shipping.Spec(spec()))
	order := func(id, country string) (events.Envelope, events.Envelope) {
		return servicetest.Event(t, "order", id, events.OrderPlaced{OrderID: id, CustomerID: "c", Items: []events.Item{{SKU: "A", Quantity: 1}},
				Currency: "USD", ShippingAddress: events.PostalAddress{Name: "n", Street: "l", City: "c", PostalCode: "p", Country: country}}),
			servicetest.Event(t, "payment", id, events.PaymentAuthorized{OrderID: id, PaymentID: "p", AmountCents: 5})
	}
	p1, a1 := order("us", "US")
	p2, a2 := order("fr", "FR")
	_, a3 := order("bad", "US")
	if _, err := s.Pool.Exec(context.Background(), `INSERT INTO shipments (order_id, address, status) VALUES ('bad', '{"country": 7}', 'WAITING')`); err != nil {
		t.Fatal(err)
	}
	s.Apply(p1, p2, a2, a3, a1, a1)

	want := map[string]string{"us": shipping.Scheduled, "fr": shipping.Failed, "bad": shipping.Failed}
	for id, st := range want {
		var got, reason string
		if err := s.Pool.QueryRow(context.Background(), `SELECT status, reason FROM shipments WHERE order_id = $1`, id).Scan(&got, &reason); err != nil {
			t.Fatal(err)
		}
		if got != st || (id == "bad" && reason != "unreadable_address") {
			t.Errorf("%s: %s (%q), want %s", id, got, reason, st)
		}
	}
	// In the order the batch first named them: us (its order.placed came first), fr, bad.
	if got, want := s.Emitted(), []string{"shipment.scheduled", "shipment.failed", "shipment.failed"}; !slices.Equal(got, want) {
		t.Fatalf("emitted %v, want %v", got, want)
	}
}
