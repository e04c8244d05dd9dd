package inventory

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/servicetest"
)

// batch applies the placed orders in one transaction within the inventory's batch scope, as the consumer
// runtime does, and returns Finish's error (nil: committed).
func batch(t *testing.T, ts *servicetest.Service, between func(), orders ...events.OrderPlaced) error {
	t.Helper()
	ctx := context.Background()
	svc := New(Config{}, ts.Pool, "inventory.events", zerolog.Nop())
	tx, err := ts.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	bctx, err := stockBatch{}.Begin(ctx, tx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range orders {
		ev := consumer.Event{Envelope: servicetest.Event(t, "order", p.OrderID, p)}
		if err := svc.reserve(bctx, tx, ev, p); err != nil {
			t.Fatalf("reserve %s: %v", p.OrderID, err)
		}
	}
	between()
	if err := (stockBatch{}).Finish(bctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func counters(t *testing.T, ts *servicetest.Service, sku string) [3]int {
	t.Helper()
	var c [3]int
	if err := ts.Pool.QueryRow(context.Background(), `SELECT stock, reserved, sold FROM products WHERE sku = $1`, sku).Scan(&c[0], &c[1], &c[2]); err != nil {
		t.Fatal(err)
	}
	return c
}

func status(t *testing.T, ts *servicetest.Service, order string) string {
	t.Helper()
	var s string
	if err := ts.Pool.QueryRow(context.Background(), `SELECT status FROM reservations WHERE order_id = $1`, order).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestABatchDecidesAgainstWhatItAlreadyHolds: stock read without a lock is reduced by the batch's own
// reservations, so two orders for the last unit in one batch do not both get it.
func TestABatchDecidesAgainstWhatItAlreadyHolds(t *testing.T) {
	ts := servicetest.New(t, Spec(Config{}))
	if err := Seed(context.Background(), ts.Pool, []Product{{SKU: "LAST", Name: "last one", PriceCents: 100, Stock: 1}}); err != nil {
		t.Fatal(err)
	}
	err := batch(t, ts, func() {},
		events.OrderPlaced{OrderID: "o-1", CustomerID: "c", Items: []events.Item{{SKU: "LAST", Quantity: 1}}},
		events.OrderPlaced{OrderID: "o-2", CustomerID: "c", Items: []events.Item{{SKU: "LAST", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := status(t, ts, "o-1"), status(t, ts, "o-2"); a != Reserved || b != Rejected {
		t.Errorf("o-1 %s, o-2 %s; want the first reserved and the second rejected", a, b)
	}
	if c := counters(t, ts, "LAST"); c != [3]int{0, 1, 0} {
		t.Errorf("stock, reserved, sold = %v; want [0 1 0]", c)
	}
}

// TestStockChangedUnderABatchFailsItAsASerializationFailure: when the stock drops below what the batch
// decided on (an operator lowered it meanwhile), finishing fails with SQLSTATE 40001, which the consumer
// retries at once on fresh stock, and nothing is moved.
func TestStockChangedUnderABatchFailsItAsASerializationFailure(t *testing.T) {
	ts := servicetest.New(t, Spec(Config{}))
	if err := Seed(context.Background(), ts.Pool, []Product{{SKU: "LOW", Name: "low", PriceCents: 100, Stock: 5}}); err != nil {
		t.Fatal(err)
	}
	lower := func() {
		if _, err := ts.Pool.Exec(context.Background(), `UPDATE products SET stock = 2 WHERE sku = 'LOW'`); err != nil {
			t.Fatal(err)
		}
	}
	err := batch(t, ts, lower, events.OrderPlaced{OrderID: "o-3", CustomerID: "c", Items: []events.Item{{SKU: "LOW", Quantity: 4}}})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
		t.Fatalf("finish: %v; want a serialization failure (40001)", err)
	}
	if c := counters(t, ts, "LOW"); c != [3]int{2, 0, 0} {
		t.Errorf("stock, reserved, sold = %v; want [2 0 0]: nothing moved", c)
	}
}
