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
