package inventory_test

import (
	"context"
	"slices"
	"testing"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/servicetest"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/services/inventory"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type row struct{ Stock, Reserved, Sold int }

func product(t *testing.T, s *servicetest.Service, sku string) row {
	t.Helper()
	var r row
	if err := s.Pool.QueryRow(context.Background(), `SELECT stock, reserved, sold FROM products WHERE sku = $1`, sku).Scan(&r.Stock, &r.Reserved, &r.Sold); err != nil {
		t.Fatal(err)
	}
	return r
}

func newInventory(t *testing.T) *servicetest.Service {
	s := servicetest.New(t, inventory.Spec(inventory.Config{}))
	if err := inventory.Seed(context.Background(), s.Pool, []inventory.Product{
		{SKU: "A", Name: "a", PriceCents: 100, Stock: 5}, {SKU: "B", Name: "b", PriceCents: 250, Stock: 1},
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func placed(t *testing.T, id string, items ...events.Item) events.Envelope {
	return servicetest.Event(t, "order", id, events.OrderPlaced{OrderID: id, CustomerID: "c", Items: items})
}

func TestReservesAllLinesOrNone(t *testing.T) {
	t.Parallel()
	s := newInventory(t)
	s.Apply(placed(t, "too-many", events.Item{SKU: "A", Quantity: 2}, events.Item{SKU: "B", Quantity: 2}))
	s.Apply(placed(t, "unknown", events.Item{SKU: "A", Quantity: 1}, events.Item{SKU: "Z", Quantity: 1}))
	if a, b := product(t, s, "A"), product(t, s, "B"); a != (row{Stock: 5}) || b != (row{Stock: 1}) {
		t.Fatalf("a rejected order held stock: A %+v B %+v", a, b)
	}
	ok := placed(t, "ok", events.Item{SKU: "B", Quantity: 1}, events.Item{SKU: "A", Quantity: 2})
	s.Apply(ok)
	s.Apply(ok) // redelivered
	if a, b := product(t, s, "A"), product(t, s, "B"); a != (row{Stock: 3, Reserved: 2}) || b != (row{Stock: 0, Reserved: 1}) {
		t.Fatalf("after reserving: A %+v B %+v", a, b)
	}
	if got := s.Emitted(); !slices.Equal(got, []string{"stock.rejected", "stock.rejected", "stock.reserved"}) {
		t.Fatalf("emitted %v", got)
	}
	var total int64
	if err := s.Pool.QueryRow(context.Background(), `SELECT total_cents FROM reservations WHERE order_id = 'ok'`).Scan(&total); err != nil || total != 450 {
		t.Fatalf("total %d (%v), want 2x100 + 1x250 = 450", total, err)
	}
}

func TestReleaseOnceWhicheverFailureArrivesFirst(t *testing.T) {
	t.Parallel()
	s := newInventory(t)
	s.Apply(placed(t, "o", events.Item{SKU: "A", Quantity: 3}))
	for _, e := range []events.Envelope{
		servicetest.Event(t, "payment", "o", events.PaymentDeclined{OrderID: "o", Reason: "card_declined"}),
		servicetest.Event(t, "order", "o", events.OrderCancelled{OrderID: "o", Reason: events.ReasonPaymentDeclined}),
		servicetest.Event(t, "shipping", "o", events.ShipmentFailed{OrderID: "o"}),
	} {
		s.Apply(e)
	}
	if a := product(t, s, "A"); a != (row{Stock: 5}) {
		t.Fatalf("after release: %+v", a)
	}
	if got := s.Emitted(); !slices.Equal(got, []string{"stock.reserved", "stock.released"}) {
		t.Fatalf("emitted %v, want one release", got)
	}
}

func TestConfirmationSellsReservation(t *testing.T) {
	t.Parallel()
	s := newInventory(t)
	s.Apply(placed(t, "o", events.Item{SKU: "A", Quantity: 2}))
	confirmed := servicetest.Event(t, "order", "o", events.OrderConfirmed{OrderID: "o"})
	s.Apply(confirmed)
	s.Apply(confirmed)
	if a := product(t, s, "A"); a != (row{Stock: 3, Sold: 2}) {
		t.Fatalf("after sale: %+v", a)
	}
	if got := s.Emitted(); !slices.Equal(got, []string{"stock.reserved", "stock.sold"}) {
		t.Fatalf("emitted %v", got)
	}
}

// TestCancellationBeforePlacementReservesNothing: if order.placed is applied only after the order was
// cancelled (it was dead-lettered, then redriven), no stock may be held for the cancelled order.
func TestCancellationBeforePlacementReservesNothing(t *testing.T) {
	t.Parallel()
	s := newInventory(t)
	s.Apply(servicetest.Event(t, "order", "late", events.OrderCancelled{OrderID: "late", Reason: events.ReasonExpired}))
	s.Apply(placed(t, "late", events.Item{SKU: "A", Quantity: 3}))
	if a := product(t, s, "A"); a != (row{Stock: 5}) {
		t.Fatalf("a cancelled order holds stock: %+v", a)
	}
	if got := s.Emitted(); len(got) != 0 {
		t.Fatalf("emitted %v for a cancelled order", got)
	}
}
