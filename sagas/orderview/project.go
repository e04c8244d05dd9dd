package orderview

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
)

// Status of an order, as the order service settles it.
const (
	Pending   = "PENDING"
	Confirmed = "CONFIRMED"
	Cancelled = "CANCELLED"
)

// projected are the event types that change an order's state, not only its timeline.
var projected = []events.Payload{events.OrderPlaced{}, events.StockReserved{}, events.OrderConfirmed{}, events.OrderCancelled{}}

// Project applies ev to the projection in tx: it adds ev to its order's timeline, moves the order's
// updated_at to ev's time if later, and applies what ev's payload says about the order. Events of one order
// arrive in order within a topic but in any order across topics, and possibly more than once, so every
// statement converges whatever the order and however often it runs.
func (s *Service) Project(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	id, err := uuid.Parse(ev.Subject)
	if err != nil {
		return consumer.Permanent(fmt.Errorf("subject %q of %s %s is not an order id", ev.Subject, ev.Type, ev.ID))
	}
	if _, err := tx.Exec(ctx, `
INSERT INTO timeline (event_id, order_id, type, version, source, time) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (event_id) DO NOTHING`, ev.ID, id, ev.Type, ev.Version, ev.Source, ev.Time); err != nil {
		return fmt.Errorf("add %s %s to the timeline of %s: %w", ev.Type, ev.ID, id, err)
	}
	if _, err := tx.Exec(ctx, `
INSERT INTO orders (id, updated_at) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET updated_at = greatest(orders.updated_at, excluded.updated_at)`, id, ev.Time); err != nil {
		return fmt.Errorf("record order %s: %w", id, err)
	}
	return s.apply(ctx, tx, id, ev)
}

// apply changes the order's state for the event types that carry it; others only make the timeline.
func (s *Service) apply(ctx context.Context, tx pgx.Tx, id uuid.UUID, ev consumer.Event) error {
	var (
		sql  string
		args []any
	)
	switch p := ev.Payload.(type) {
	case events.OrderPlaced:
		// A settled order never goes back to PENDING: an outcome cannot precede order.placed on their one
		// topic, but a replay with a bug or a hand-fed event must not undo a settled state.
		sql = `UPDATE orders SET customer_id = $2, items = $3, created_at = $4,
       status = CASE WHEN status IN ('CONFIRMED', 'CANCELLED') THEN status ELSE 'PENDING' END
WHERE id = $1`
		args = []any{id, p.CustomerID, p.Items, ev.Time}
	case events.StockReserved:
		sql = `UPDATE orders SET priced_lines = $2, total_cents = $3 WHERE id = $1`
		args = []any{id, p.Lines, p.TotalCents}
	case events.OrderConfirmed:
		// The first outcome wins, as in the order service, which emits only one.
		sql = `UPDATE orders SET status = 'CONFIRMED', reason = '' WHERE id = $1 AND (status IS NULL OR status = 'PENDING')`
		args = []any{id}
	case events.OrderCancelled:
		sql = `UPDATE orders SET status = 'CANCELLED', reason = $2 WHERE id = $1 AND (status IS NULL OR status = 'PENDING')`
		args = []any{id, p.Reason}
	default: // every other type, and those the registry does not know (nil payload): timeline only
		return nil
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("apply %s %s to order %s: %w", ev.Type, ev.ID, id, err)
	}
	return nil
}
