package payment_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/servicetest"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/services/payment"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func status(t *testing.T, s *servicetest.Service, orderID string) string {
	t.Helper()
	var st string
	if err := s.Pool.QueryRow(context.Background(), `SELECT status FROM payments WHERE order_id = $1`, orderID).Scan(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func placed(t *testing.T, id, token string) events.Envelope {
	return servicetest.Event(t, "order", id, events.OrderPlaced{OrderID: id, CustomerID: "c-" + id, PaymentToken: token, Items: []events.Item{{SKU: "A", Quantity: 1}}})
}

func reserved(t *testing.T, id string, total int64) events.Envelope {
	return servicetest.Event(t, "inventory", id, events.StockReserved{OrderID: id, TotalCents: total})
}

// TestAuthorizesOnceBothHalvesArrive: order.placed (token) and stock.reserved (amount) come from different
// topics in either order, each possibly twice; the decision is taken once, when both are known.
func TestAuthorizesOnceBothHalvesArrive(t *testing.T) {
	t.Parallel()
	for i, order := range servicetest.Permutations([]events.Envelope{placed(t, "o", "tok_visa"), reserved(t, "o", 500)}) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			s := servicetest.New(t, payment.Spec(payment.Config{DefaultLimitCents: 1000}))
			for _, e := range append(order, order...) {
				s.Apply(e)
			}
			if st := status(t, s, "o"); st != payment.Authorized {
				t.Fatalf("status %s, want AUTHORIZED", st)
			}
			if got := s.Emitted(); !slices.Equal(got, []string{"payment.authorized"}) {
				t.Fatalf("emitted %v, want one payment.authorized", got)
			}
		})
	}
}

func TestDeclineRules(t *testing.T) {
	t.Parallel()
	s := servicetest.New(t, payment.Spec(payment.Config{DefaultLimitCents: 1000}))
	if _, err := s.Pool.Exec(context.Background(), `INSERT INTO customer_limits VALUES ('c-vip', 5000)`); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		id, token string
		total     int64
		want      string
	}{
		{"declined-token", payment.DeclineToken, 10, payment.Declined},
		{"over-limit", "tok_visa", 1001, payment.Declined},
		{"at-limit", "tok_visa", 1000, payment.Authorized},
		{"vip", "tok_visa", 4000, payment.Authorized}, // customer c-vip has its own limit
	}
	for _, c := range cases {
		p := placed(t, c.id, c.token)
		if c.id == "vip" {
			p = servicetest.Event(t, "order", "vip", events.OrderPlaced{OrderID: "vip", CustomerID: "c-vip", PaymentToken: "tok_visa", Items: []events.Item{{SKU: "A", Quantity: 1}}})
		}
		s.Apply(p)
		s.Apply(reserved(t, c.id, c.total))
		if st := status(t, s, c.id); st != c.want {
			t.Errorf("%s: status %s, want %s", c.id, st, c.want)
		}
	}
}

// TestCancellationRacesAuthorization: order.cancelled can arrive before, between or after the halves.
// Whatever the order, the payment must never stay authorized, and a refund follows every authorization.
func TestCancellationRacesAuthorization(t *testing.T) {
	t.Parallel()
	cancelled := servicetest.Event(t, "order", "o", events.OrderCancelled{OrderID: "o", Reason: events.ReasonExpired})
	for i, order := range servicetest.Permutations([]events.Envelope{placed(t, "o", "tok_visa"), reserved(t, "o", 500), cancelled}) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			s := servicetest.New(t, payment.Spec(payment.Config{DefaultLimitCents: 1000}))
			for _, e := range append(order, order...) {
				s.Apply(e)
			}
			got := s.Emitted()
			switch st := status(t, s, "o"); st {
			case payment.Refunded:
				if !slices.Equal(got, []string{"payment.authorized", "payment.refunded"}) {
					t.Fatalf("refunded, but emitted %v", got)
				}
			case payment.Cancelled:
				if len(got) != 0 {
					t.Fatalf("cancelled before authorizing, but emitted %v", got)
				}
			default:
				t.Fatalf("status %s after cancellation (events %v)", st, got)
			}
		})
	}
}
