package inventory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
)

// Reservation statuses.
const (
	Reserved = "RESERVED"
	Rejected = "REJECTED"
	Released = "RELEASED"
	Sold     = "SOLD"
)

// Reasons a reservation is rejected.
const (
	ReasonUnknownSKU        = "unknown_sku"
	ReasonInsufficientStock = "insufficient_stock"
)

// reserve holds every line of a placed order, or none: stock.reserved with the priced lines, or
// stock.rejected naming the first sku that failed.
func (s *Service) reserve(ctx context.Context, tx pgx.Tx, ev consumer.Event, placed events.OrderPlaced) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)`, placed.OrderID).Scan(&exists); err != nil {
		return fmt.Errorf("look up reservation %s: %w", placed.OrderID, err)
	}
	if exists { // decided before (a replay after the inbox was cleaned)
		return nil
	}
	items := slices.Clone(placed.Items)
	slices.SortFunc(items, func(a, b events.Item) int { return cmp.Compare(a.SKU, b.SKU) })
	skus := make([]string, len(items))
	for i, it := range items {
		skus[i] = it.SKU
	}
	// Lock the products in sku order so concurrent reservations never deadlock on each other.
	rows, err := tx.Query(ctx, `SELECT sku, price_cents, stock FROM products WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, skus)
	if err != nil {
		return fmt.Errorf("lock products for %s: %w", placed.OrderID, err)
	}
	type product struct {
		SKU        string
		PriceCents int64
		Stock      int
	}
	products, err := pgx.CollectRows(rows, pgx.RowToStructByPos[product])
	if err != nil {
		return fmt.Errorf("lock products for %s: %w", placed.OrderID, err)
	}
	bySKU := map[string]product{}
	for _, p := range products {
		bySKU[p.SKU] = p
	}
	lines := make([]events.PricedLine, 0, len(items))
	var total int64
	for _, it := range items {
		p, ok := bySKU[it.SKU]
		switch {
		case !ok:
			return s.reject(ctx, tx, ev, placed.OrderID, ReasonUnknownSKU, it.SKU)
		case p.Stock < it.Quantity:
			return s.reject(ctx, tx, ev, placed.OrderID, ReasonInsufficientStock, it.SKU)
		}
		lines = append(lines, events.PricedLine{SKU: it.SKU, Quantity: it.Quantity, PriceCents: p.PriceCents})
		total += p.PriceCents * int64(it.Quantity)
	}
	if err := moveStock(ctx, tx, lines, "stock = stock - m.q, reserved = reserved + m.q"); err != nil {
		return fmt.Errorf("reserve stock for %s: %w", placed.OrderID, err)
	}
	linesJSON, _ := json.Marshal(lines) // plain structs: cannot fail
	if _, err := tx.Exec(ctx, `INSERT INTO reservations (order_id, status, lines, total_cents) VALUES ($1, $2, $3, $4)`,
		placed.OrderID, Reserved, linesJSON, total); err != nil {
		return fmt.Errorf("record reservation %s: %w", placed.OrderID, err)
	}
	return s.emit.Emit(ctx, tx, ev.Envelope, events.StockReserved{OrderID: placed.OrderID, Lines: lines, TotalCents: total})
}

func (s *Service) reject(ctx context.Context, tx pgx.Tx, ev consumer.Event, orderID, reason, sku string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO reservations (order_id, status, reason) VALUES ($1, $2, $3)`, orderID, Rejected, reason+": "+sku); err != nil {
		return fmt.Errorf("record rejection %s: %w", orderID, err)
	}
	return s.emit.Emit(ctx, tx, ev.Envelope, events.StockRejected{OrderID: orderID, Reason: reason, SKU: sku})
}

// release puts a held reservation back (payment declined, shipment failed, order cancelled). Whichever of
// those arrives first releases; the others find nothing held.
func (s *Service) release(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	return s.settle(ctx, tx, ev, Released, "stock = stock + m.q, reserved = reserved - m.q", func(orderID string) events.Payload {
		return events.StockReleased{OrderID: orderID, Reason: ev.Type}
	})
}

// sell turns the confirmed order's reservation into a sale.
func (s *Service) sell(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	return s.settle(ctx, tx, ev, Sold, "reserved = reserved - m.q, sold = sold + m.q", func(orderID string) events.Payload {
		return events.StockSold{OrderID: orderID}
	})
}

// settle moves a RESERVED reservation to status, applying move to its products, and emits the event.
func (s *Service) settle(ctx context.Context, tx pgx.Tx, ev consumer.Event, status, move string, outcome func(string) events.Payload) error {
	orderID := ev.Subject
	var current string
	var linesJSON []byte
	err := tx.QueryRow(ctx, `SELECT status, lines FROM reservations WHERE order_id = $1 FOR UPDATE`, orderID).Scan(&current, &linesJSON)
	if errors.Is(err, pgx.ErrNoRows) && status == Released {
		// The failure arrived before order.placed was applied (say it was dead-lettered and is redriven
		// later): leave a tombstone so that it reserves nothing when it comes.
		if _, err := tx.Exec(ctx, `INSERT INTO reservations (order_id, status, reason) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			orderID, Released, "released before it was reserved: "+ev.Type); err != nil {
			return fmt.Errorf("record release of %s: %w", orderID, err)
		}
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && current != Reserved) {
		return nil // nothing held: rejected, already settled, or released before it was reserved
	}
	if err != nil {
		return fmt.Errorf("lock reservation %s: %w", orderID, err)
	}
	var lines []events.PricedLine
	if err := json.Unmarshal(linesJSON, &lines); err != nil {
		return consumer.Permanent(fmt.Errorf("reservation %s has unreadable lines: %w", orderID, err))
	}
	if err := moveStock(ctx, tx, lines, move); err != nil {
		return fmt.Errorf("%s stock for %s: %w", status, orderID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = $1`, orderID, status); err != nil {
		return fmt.Errorf("mark reservation %s %s: %w", orderID, status, err)
	}
	return s.emit.Emit(ctx, tx, ev.Envelope, outcome(orderID))
}

// moveStock applies set (an assignment list over products using m.q, the line's quantity) to every line's
// product, in sku order, in one statement. set is one of this file's constants, never input.
func moveStock(ctx context.Context, tx pgx.Tx, lines []events.PricedLine, set string) error {
	skus := make([]string, len(lines))
	qty := make([]int32, len(lines))
	for i, l := range lines {
		skus[i], qty[i] = l.SKU, int32(l.Quantity)
	}
	_, err := tx.Exec(ctx, `UPDATE products p SET `+set+`, updated_at = now()
		FROM unnest($1::text[], $2::int[]) AS m(sku, q) WHERE p.sku = m.sku`, skus, qty)
	return err
}

// lockProducts locks, in sku order, every product a batch of events may change: the lines of the orders it
// places and of the reservations it settles. Every batch takes its product locks up front in the same
// order, so batches of different partitions never deadlock, however their orders' lines overlap.
func (s *Service) lockProducts(ctx context.Context, tx pgx.Tx, evs []consumer.Event) error {
	skus := map[string]bool{}
	var settling []string
	for _, ev := range evs {
		if placed, ok := ev.Payload.(events.OrderPlaced); ok {
			for _, it := range placed.Items {
				skus[it.SKU] = true
			}
			continue
		}
		settling = append(settling, ev.Subject)
	}
	if len(settling) > 0 {
		rows, err := tx.Query(ctx, `SELECT DISTINCT l->>'sku' FROM reservations r, jsonb_array_elements(r.lines) l
			WHERE r.order_id = ANY($1) AND r.status = 'RESERVED'`, settling)
		if err != nil {
			return fmt.Errorf("find products of %d reservations: %w", len(settling), err)
		}
		held, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find products of %d reservations: %w", len(settling), err)
		}
		for _, sku := range held {
			skus[sku] = true
		}
	}
	if len(skus) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT FROM products WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, slices.Sorted(maps.Keys(skus))); err != nil {
		return fmt.Errorf("lock %d products: %w", len(skus), err)
	}
	return nil
}
