package notification

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
)

// customerLocks is the notification service's consumer.BatchScope. An outcome (from the order topic) and
// a customer's registration (from the customer topic) are serialised per customer (lockCustomer), and a
// customer is shared by many orders, so a batch would otherwise take customers' locks in the order of its
// events and two batches could wait on each other in a cycle. Begin takes every customer lock the batch
// will need, sorted, before any handler runs; the handlers' own lockCustomer then finds them held.
type customerLocks struct{}

func (customerLocks) Begin(ctx context.Context, tx pgx.Tx, evs []consumer.Event) (context.Context, error) {
	customers := map[string]bool{}
	var outcomes []string
	for _, ev := range evs {
		switch p := ev.Payload.(type) {
		case events.OrderPlaced:
			customers[p.CustomerID] = true // its outcome may follow in this batch, before its row is visible
		case events.CustomerRegistered:
			customers[p.CustomerID] = true
		case events.CustomerUpdated:
			customers[p.CustomerID] = true
		case events.OrderConfirmed, events.OrderCancelled:
			outcomes = append(outcomes, ev.Subject)
		}
	}
	if len(outcomes) > 0 {
		rows, err := tx.Query(ctx, `SELECT DISTINCT customer_id FROM customers WHERE order_id = ANY($1)`, outcomes)
		if err != nil {
			return ctx, fmt.Errorf("find the customers of %d outcomes: %w", len(outcomes), err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return ctx, fmt.Errorf("find the customers of %d outcomes: %w", len(outcomes), err)
		}
		for _, id := range ids {
			customers[id] = true
		}
	}
	if len(customers) == 0 {
		return ctx, nil
	}
	// Sorted by the lock key itself (two customers could share one), and OFFSET 0 keeps the sorted subquery
	// from being flattened: the locks are taken in its order, in the round trip of the first handler's
	// statement, before it (postgres.Later).
	_, err := postgres.Later(tx).Exec(ctx, `SELECT count(pg_advisory_xact_lock(k)) FROM (
		SELECT DISTINCT hashtextextended('notification.customer:' || c, 0) AS k FROM unnest($1::text[]) AS c ORDER BY k OFFSET 0) AS sorted`,
		slices.Collect(maps.Keys(customers)))
	if err != nil {
		return ctx, fmt.Errorf("lock %d customers: %w", len(customers), err)
	}
	return ctx, nil
}

func (customerLocks) Finish(context.Context, pgx.Tx) error { return nil }
