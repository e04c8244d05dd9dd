package payment_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

func approved(t *testing.T, id string) events.Envelope {
	return servicetest.Event(t, "customer", id, events.CustomerApproved{OrderID: id, CustomerID: "c-" + id})
}

// TestAuthorizesOnceEveryPartArrives: order.placed (token), stock.reserved (amount) and customer.approved
// come from three topics in any order, each possibly twice; the decision is taken once, when all are known.
func TestAuthorizesOnceEveryPartArrives(t *testing.T) {
	t.Parallel()
	for i, order := range servicetest.Permutations([]events.Envelope{placed(t, "o", "tok_visa"), reserved(t, "o", 500), approved(t, "o")}) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			s := servicetest.New(t, payment.Spec(payment.Config{DefaultLimitCents: 1000}))
			for j, e := range append(order, order...) {
				s.Apply(e)
				if j < len(order)-1 {
					if st := status(t, s, "o"); st != payment.Waiting {
						t.Fatalf("status %s after %d of the 3 parts, want WAITING", st, j+1)
					}
				}
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
		s.Apply(approved(t, c.id))
		if st := status(t, s, c.id); st != c.want {
			t.Errorf("%s: status %s, want %s", c.id, st, c.want)
		}
	}
}

// TestCancellationRacesAuthorization: order.cancelled can arrive before, between or after the parts.
// Whatever the order, the payment must never stay authorized, and a refund follows every authorization.
func TestCancellationRacesAuthorization(t *testing.T) {
	t.Parallel()
	cancelled := servicetest.Event(t, "order", "o", events.OrderCancelled{OrderID: "o", Reason: events.ReasonExpired})
	for i, order := range servicetest.Permutations([]events.Envelope{placed(t, "o", "tok_visa"), reserved(t, "o", 500), approved(t, "o"), cancelled}) {
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

// TestCreditLimitFromEvents: customer.credit_limit_set fills customer_limits; a redelivered older limit
// does not replace a newer one.
func TestCreditLimitFromEvents(t *testing.T) {
	t.Parallel()
	s := servicetest.New(t, payment.Spec(payment.Config{DefaultLimitCents: 1000}))
	limit := func(cents int64, at time.Time) events.Envelope {
		e := servicetest.Event(t, "customer", "c-rich", events.CustomerCreditLimitSet{CustomerID: "c-rich", LimitCents: cents})
		e.Time = at
		return e
	}
	now := time.Now()
	older, newer := limit(2000, now.Add(-time.Minute)), limit(5000, now)
	s.Apply(older)
	s.Apply(newer)
	s.Apply(older)
	var got int64
	if err := s.Pool.QueryRow(context.Background(), `SELECT limit_cents FROM customer_limits WHERE customer_id = 'c-rich'`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 5000 {
		t.Fatalf("limit %d, want the newer 5000", got)
	}
	rich := servicetest.Event(t, "order", "r", events.OrderPlaced{OrderID: "r", CustomerID: "c-rich", PaymentToken: "tok_visa", Items: []events.Item{{SKU: "A", Quantity: 1}}})
	s.Apply(rich)
	s.Apply(reserved(t, "r", 4000))
	s.Apply(approved(t, "r"))
	if st := status(t, s, "r"); st != payment.Authorized {
		t.Fatalf("4000 within the customer's 5000 limit: %s, want AUTHORIZED", st)
	}
}

// TestABatchDecidesEachCompleteOrderOnce applies the parts of three orders in one transaction, as a
// consumer batch: the two orders whose parts are all there are decided once each, caused by their last
// event in the batch, in the order the batch first named them; the third waits.
func TestABatchDecidesEachCompleteOrderOnce(t *testing.T) {
	t.Parallel()
	s := servicetest.New(t, payment.Spec(payment.Config{DefaultLimitCents: 1000}))
	lastOfO1 := approved(t, "o1") // a redelivery of the approval, under an id of its own
	lastOfO2 := approved(t, "o2")
	s.Apply(placed(t, "o2", "tok_visa"), placed(t, "o1", "tok_visa"), reserved(t, "o1", 500), approved(t, "o1"),
		reserved(t, "o2", 2000), placed(t, "o3", "tok_visa"), lastOfO2, lastOfO1)

	if st := status(t, s, "o3"); st != payment.Waiting {
		t.Errorf("o3 (no amount, no approval): %s, want WAITING", st)
	}
	if st := status(t, s, "o1"); st != payment.Authorized {
		t.Errorf("o1: %s, want AUTHORIZED", st)
	}
	if st := status(t, s, "o2"); st != payment.Declined { // 2000 over the limit of 1000
		t.Errorf("o2: %s, want DECLINED", st)
	}
	rows, err := s.Pool.Query(context.Background(), `
		SELECT convert_from(header_values[array_position(header_keys, 'ce_type')], 'UTF8'),
		       convert_from(header_values[array_position(header_keys, 'ce_subject')], 'UTF8'),
		       convert_from(header_values[array_position(header_keys, 'ce_causationid')], 'UTF8')
		FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type emitted struct{ typ, order, cause string }
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (emitted, error) {
		var e emitted
		return e, r.Scan(&e.typ, &e.order, &e.cause)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []emitted{ // o2 first: the batch named it first
		{"payment.declined", "o2", lastOfO2.ID.String()},
		{"payment.authorized", "o1", lastOfO1.ID.String()},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("emitted %v, want %v", got, want)
	}

	// A cancellation in the batch that completes an order: the payment is cancelled, never authorized.
	s.Apply(placed(t, "o4", "tok_visa"), reserved(t, "o4", 500), approved(t, "o4"),
		servicetest.Event(t, "order", "o4", events.OrderCancelled{OrderID: "o4", Reason: events.ReasonExpired}))
	if st := status(t, s, "o4"); st != payment.Cancelled {
		t.Errorf("o4, cancelled in the batch that completed it: %s, want CANCELLED", st)
	}
	if n := len(s.Emitted()); n != 2 {
		t.Errorf("%d events emitted in all, want the 2 of o1 and o2", n)
	}
}
