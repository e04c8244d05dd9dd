// Package salesview is the sales report: units and revenue per product per day of the confirmed orders, a
// projection (internal/projection) of the order and inventory topics kept in schema salesview of the read
// model's database and served at GET /v1/reports/sales?from=YYYY-MM-DD&to=YYYY-MM-DD (operators only).
//
// It was added to a running system after the fact: `choreo replay salesview` builds it from the whole
// history while everything keeps running, and the read model's process keeps it from then on.
package salesview

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/projection"
	"github.com/choreo-dev/choreo/sagas"
)

// Name is the projection's name and schema.
const Name = "salesview"

//go:embed schema.sql
var schemaSQL string

// Projection keeps the sales report.
type Projection struct{}

var _ projection.Projection = Projection{}

func (Projection) Name() string { return Name }

// Topics: order.placed and order.confirmed come from the order service, the priced lines from inventory.
func (Projection) Topics() []string {
	return []string{sagas.Topic(sagas.Order), sagas.Topic(sagas.Inventory)}
}
func (Projection) Schema() string { return schemaSQL }
func (Projection) Tables() []projection.Table {
	return []projection.Table{{Name: "sales_orders", Key: "order_id"}, {Name: "daily_sales", Key: "day, sku, currency"}}
}

type sale struct {
	currency, lines *string
	confirmed       *time.Time
}

// Apply records what the batch says about each order, then adds every order that is now both confirmed
// and priced, and not counted yet, to its day's sales. Counting marks the order, so an event delivered
// twice never counts it twice.
func (Projection) Apply(ctx context.Context, tx pgx.Tx, evs []consumer.Event) error {
	sales := map[uuid.UUID]*sale{}
	var ids []uuid.UUID
	for _, ev := range evs {
		id, err := uuid.Parse(ev.Subject)
		if err != nil {
			continue
		}
		s := sales[id]
		get := func() *sale {
			if s == nil {
				s = &sale{}
				sales[id], ids = s, append(ids, id)
			}
			return s
		}
		switch p := ev.Payload.(type) {
		case events.OrderPlaced:
			c := p.Currency
			if c == "" {
				c = events.DefaultCurrency
			}
			get().currency = &c
		case events.StockReserved:
			b, _ := json.Marshal(p.Lines) // plain structs: cannot fail
			l := string(b)
			get().lines = &l
		case events.OrderConfirmed:
			day := ev.Time.UTC()
			get().confirmed = &day
		}
	}
	if len(ids) == 0 {
		return nil
	}
	currencies, lines, confirmed := make([]*string, len(ids)), make([]*string, len(ids)), make([]*time.Time, len(ids))
	for i, id := range ids {
		currencies[i], lines[i], confirmed[i] = sales[id].currency, sales[id].lines, sales[id].confirmed
	}
	if _, err := tx.Exec(ctx, `INSERT INTO sales_orders AS o (order_id, currency, lines, confirmed_on)
SELECT id, currency, lines::jsonb, (confirmed AT TIME ZONE 'UTC')::date
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS b(id, currency, lines, confirmed)
ON CONFLICT (order_id) DO UPDATE SET
    currency     = coalesce(excluded.currency, o.currency),
    lines        = coalesce(o.lines, excluded.lines),
    confirmed_on = coalesce(o.confirmed_on, excluded.confirmed_on)`, ids, currencies, lines, confirmed); err != nil {
		return fmt.Errorf("record %d orders' sales: %w", len(ids), err)
	}
	if _, err := tx.Exec(ctx, `WITH ready AS (
    UPDATE sales_orders SET counted = true
    WHERE order_id = ANY($1) AND NOT counted AND lines IS NOT NULL AND confirmed_on IS NOT NULL
    RETURNING confirmed_on, coalesce(currency, 'USD') AS currency, lines
)
INSERT INTO daily_sales AS d (day, sku, currency, quantity, revenue_cents, orders)
SELECT r.confirmed_on, l.sku, r.currency, sum(l.quantity), sum(l.quantity * l.price_cents), count(*)
FROM ready r, jsonb_to_recordset(r.lines) AS l(sku text, quantity bigint, price_cents bigint)
GROUP BY 1, 2, 3
ON CONFLICT (day, sku, currency) DO UPDATE SET
    quantity = d.quantity + excluded.quantity, revenue_cents = d.revenue_cents + excluded.revenue_cents, orders = d.orders + excluded.orders`, ids); err != nil {
		return fmt.Errorf("count confirmed orders into the daily sales: %w", err)
	}
	return nil
}
