package inventory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
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
	return withMoves(ctx, tx, func(m moves) error { return s.reserveWith(ctx, tx, ev, placed, m) })
}

// reserveWith decides against the stock as read, less what the batch's moves m already hold, and adds the
// reservation to m last, once nothing else can fail.
func (s *Service) reserveWith(ctx context.Context, tx pgx.Tx, ev consumer.Event, placed events.OrderPlaced, m moves) error {
	items := slices.Clone(placed.Items)
	slices.SortFunc(items, func(a, b events.Item) int { return cmp.Compare(a.SKU, b.SKU) })
	skus := make([]string, len(items))
	for i, it := range items {
		skus[i] = it.SKU
	}
	type product struct {
		SKU        string
		PriceCents int64
		Stock      int
	}
	// One round trip for both reads. No lock on the products: the batch checks its moves against locked
	// rows when it finishes (see stock.go).
	var exists bool
	var products []product
	b := &pgx.Batch{}
	b.Queue(`SELECT EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)`, placed.OrderID).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&exists); err != nil {
			return fmt.Errorf("look up reservation %s: %w", placed.OrderID, err)
		}
		return nil
	})
	b.Queue(`SELECT sku, price_cents, stock FROM products WHERE sku = ANY($1)`, skus).Query(func(rows pgx.Rows) (err error) {
		if products, err = pgx.CollectRows(rows, pgx.RowToStructByPos[product]); err != nil {
			return fmt.Errorf("read products for %s: %w", placed.OrderID, err)
		}
		return nil
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if exists { // decided before (a replay after the inbox was cleaned)
		return nil
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
		case p.Stock-m.held(it.SKU) < it.Quantity:
			return s.reject(ctx, tx, ev, placed.OrderID, ReasonInsufficientStock, it.SKU)
		}
		lines = append(lines, events.PricedLine{SKU: it.SKU, Quantity: it.Quantity, PriceCents: p.PriceCents})
		total += p.PriceCents * int64(it.Quantity)
	}
	linesJSON, _ := json.Marshal(lines) // plain structs: cannot fail
	if _, err := postgres.Later(tx).Exec(ctx, `INSERT INTO reservations (order_id, status, lines, total_cents) VALUES ($1, $2, $3, $4)`,
		placed.OrderID, Reserved, linesJSON, total); err != nil {
		return fmt.Errorf("record reservation %s: %w", placed.OrderID, err)
	}
	if err := s.emit.Emit(ctx, tx, ev.Envelope, events.StockReserved{OrderID: placed.OrderID, Lines: lines, TotalCents: total}); err != nil {
		return err
	}
	m.add(lines, -1, +1, 0)
	return nil
}

func (s *Service) reject(ctx context.Context, tx pgx.Tx, ev consumer.Event, orderID, reason, sku string) error {
	if _, err := postgres.Later(tx).Exec(ctx, `INSERT INTO reservations (order_id, status, reason) VALUES ($1, $2, $3)`, orderID, Rejected, reason+": "+sku); err != nil {
		return fmt.Errorf("record rejection %s: %w", orderID, err)
	}
	return s.emit.Emit(ctx, tx, ev.Envelope, events.StockRejected{OrderID: orderID, Reason: reason, SKU: sku})
}

// release puts a held reservation back (payment declined, shipment failed, order cancelled). Whichever of
// those arrives first releases; the others find nothing held.
func (s *Service) release(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	return s.settle(ctx, tx, ev, Released, move{stock: +1, reserved: -1}, func(orderID string) events.Payload {
		return events.StockReleased{OrderID: orderID, Reason: ev.Type}
	})
}

// sell turns the confirmed order's reservation into a sale.
func (s *Service) sell(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	return s.settle(ctx, tx, ev, Sold, move{reserved: -1, sold: +1}, func(orderID string) events.Payload {
		return events.StockSold{OrderID: orderID}
	})
}

// settle moves a RESERVED reservation to status, moving its products' counters by per (per unit of each
// line), and emits the event.
func (s *Service) settle(ctx context.Context, tx pgx.Tx, ev consumer.Event, status string, per move, outcome func(string) events.Payload) error {
	orderID := ev.Subject
	var current string
	var linesJSON []byte
	err := tx.QueryRow(ctx, `SELECT status, lines FROM reservations WHERE order_id = $1 FOR UPDATE`, orderID).Scan(&current, &linesJSON)
	if errors.Is(err, pgx.ErrNoRows) && status == Released {
		// The failure arrived before order.placed was applied (say it was dead-lettered and is redriven
		// later): leave a tombstone so that it reserves nothing when it comes.
		if _, err := postgres.Later(tx).Exec(ctx, `INSERT INTO reservations (order_id, status, reason) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
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
	if _, err := postgres.Later(tx).Exec(ctx, `UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = $1`, orderID, status); err != nil {
		return fmt.Errorf("mark reservation %s %s: %w", orderID, status, err)
	}
	return withMoves(ctx, tx, func(m moves) error {
		if err := s.emit.Emit(ctx, tx, ev.Envelope, outcome(orderID)); err != nil {
			return err
		}
		m.add(lines, per.stock, per.reserved, per.sold)
		return nil
	})
}
