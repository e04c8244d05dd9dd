package orderview

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

// Status of an order, as the order service settles it.
const (
	Pending   = "PENDING"
	Confirmed = "CONFIRMED"
	Cancelled = "CANCELLED"
)

var (
	//go:embed schema.sql
	schemaSQL string
	//go:embed indexes.sql
	indexesSQL string
)

// Projection keeps the orders and their timelines in schema orderview from every service's topic.
type Projection struct{}

var _ projection.Projection = Projection{}

func (Projection) Name() string     { return Name }
func (Projection) Topics() []string { return sagas.Topics() }
func (Projection) Schema() string   { return schemaSQL }
func (Projection) Indexes() string  { return indexesSQL }
func (Projection) Tables() []projection.Table {
	return []projection.Table{{Name: "orders", Key: "id"}, {Name: "timeline", Key: "event_id"}}
}

// order is what one batch says about one order; nil fields say nothing.
type order struct {
	customer, status, reason, items, currency, priced *string
	total                                             *int64
	created                                           *time.Time
	updated                                           time.Time
}

// Apply adds every event to its order's timeline and folds what the events say about each order into one
// row per order, upserted in one statement. Events of one order arrive in order within a topic but in any
// order across topics, and possibly more than once, so the upsert converges whatever the order: a settled
// order never changes its outcome (the first one wins, as in the order service), and columns an event
// does not carry keep their value.
func (Projection) Apply(ctx context.Context, tx pgx.Tx, evs []consumer.Event) error {
	var (
		tl     timelineRows
		orders = make(map[uuid.UUID]*order, len(evs)/4+1)
		ids    []uuid.UUID
	)
	aboutACustomer := customerLifecycle()
	for _, ev := range evs {
		id, err := uuid.Parse(ev.Subject)
		if err != nil || aboutACustomer[ev.Type] { // not about an order: nothing to show it on
			continue
		}
		tl.add(id, ev)
		o, ok := orders[id]
		if !ok {
			o = &order{updated: ev.Time}
			orders[id], ids = o, append(ids, id)
		}
		if ev.Time.After(o.updated) {
			o.updated = ev.Time
		}
		fold(o, ev)
	}
	if len(ids) == 0 {
		return nil
	}
	// Both statements go out in one round trip.
	b := &pgx.Batch{}
	tl.queue(b)
	queueOrders(b, ids, orders)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("add %d events to the timeline and upsert %d orders: %w", len(tl.eventIDs), len(ids), err)
	}
	return nil
}

// customerLifecycle is the set of event types about a customer (registered, blocked, …) rather than an
// order: they share the customer service's topic with its saga steps, and their subject is a customer id.
func customerLifecycle() map[string]bool {
	types := map[string]bool{}
	for _, p := range events.CustomerLifecycle() {
		types[p.EventType()] = true
	}
	return types
}

// fold applies what ev's payload says about its order to o.
func fold(o *order, ev consumer.Event) {
	switch p := ev.Payload.(type) {
	case events.OrderPlaced:
		items, _ := json.Marshal(p.Items) // plain structs: cannot fail
		currency := p.Currency
		if currency == "" {
			currency = events.DefaultCurrency
		}
		o.customer, o.items, o.currency, o.created = &p.CustomerID, ptr(string(items)), &currency, &ev.Time
		if o.status == nil {
			o.status = ptr(Pending)
		}
	case events.StockReserved:
		lines, _ := json.Marshal(p.Lines)
		o.priced, o.total = ptr(string(lines)), &p.TotalCents
	case events.OrderConfirmed:
		if o.status == nil || *o.status == Pending {
			o.status, o.reason = ptr(Confirmed), ptr("")
		}
	case events.OrderCancelled:
		if o.status == nil || *o.status == Pending {
			o.status, o.reason = ptr(Cancelled), &p.Reason
		}
	}
}

func ptr[T any](v T) *T { return &v }

// timelineRows are the timeline's columns of one batch.
type timelineRows struct {
	eventIDs, orderIDs []uuid.UUID
	types, sources     []string
	versions           []int32
	times              []time.Time
}

func (t *timelineRows) add(order uuid.UUID, ev consumer.Event) {
	t.eventIDs, t.orderIDs = append(t.eventIDs, ev.ID), append(t.orderIDs, order)
	t.types, t.sources = append(t.types, ev.Type), append(t.sources, ev.Source)
	t.versions, t.times = append(t.versions, int32(ev.Version)), append(t.times, ev.Time)
}

func (t *timelineRows) queue(b *pgx.Batch) {
	b.Queue(`INSERT INTO timeline (event_id, order_id, type, version, source, time)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
ON CONFLICT (event_id) DO NOTHING`, t.eventIDs, t.orderIDs, t.types, t.versions, t.sources, t.times)
}

func queueOrders(b *pgx.Batch, ids []uuid.UUID, orders map[uuid.UUID]*order) {
	n := len(ids)
	var (
		customers, statuses, reasons = make([]*string, n), make([]*string, n), make([]*string, n)
		items, currencies, priced    = make([]*string, n), make([]*string, n), make([]*string, n)
		totals                       = make([]*int64, n)
		created                      = make([]*time.Time, n)
		updated                      = make([]time.Time, n)
	)
	for i, id := range ids {
		o := orders[id]
		customers[i], statuses[i], reasons[i], items[i], currencies[i], priced[i] = o.customer, o.status, o.reason, o.items, o.currency, o.priced
		totals[i], created[i], updated[i] = o.total, o.created, o.updated
	}
	b.Queue(`INSERT INTO orders AS o (id, customer_id, status, reason, items, currency, priced_lines, total_cents, created_at, updated_at)
SELECT id, customer_id, status, coalesce(reason, ''), items::jsonb, currency, priced::jsonb, total, created, updated
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::timestamptz[], $10::timestamptz[])
    AS b(id, customer_id, status, reason, items, currency, priced, total, created, updated)
ON CONFLICT (id) DO UPDATE SET
    customer_id  = coalesce(excluded.customer_id, o.customer_id),
    items        = coalesce(excluded.items, o.items),
    currency     = coalesce(excluded.currency, o.currency),
    created_at   = coalesce(excluded.created_at, o.created_at),
    priced_lines = coalesce(excluded.priced_lines, o.priced_lines),
    total_cents  = coalesce(excluded.total_cents, o.total_cents),
    status       = CASE WHEN o.status IN ('CONFIRMED', 'CANCELLED') THEN o.status ELSE coalesce(excluded.status, o.status) END,
    reason       = CASE WHEN o.status IN ('CONFIRMED', 'CANCELLED') THEN o.reason
                        WHEN excluded.status IN ('CONFIRMED', 'CANCELLED') THEN excluded.reason ELSE o.reason END,
    updated_at   = greatest(o.updated_at, excluded.updated_at)`,
		ids, customers, statuses, reasons, items, currencies, priced, totals, created, updated)
}
