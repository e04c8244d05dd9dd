package orderview

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/choreo-dev/choreo/events"
)

// Order is an order as the read model knows it. Its JSON field names are the API's contract.
type Order struct {
	ID         uuid.UUID `json:"id"`
	CustomerID string    `json:"customer_id"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason"` // why it was cancelled; "" otherwise
	Items      []Item    `json:"items"`
	Currency   string    `json:"currency"`    // of the prices; USD for orders placed before order.placed v2
	TotalCents *int64    `json:"total_cents"` // null until stock.reserved priced the order
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	Timeline   []Entry   `json:"timeline,omitempty"` // filled by Get only
}

// Item is one line of an order.
type Item struct {
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	PriceCents *int64 `json:"price_cents"` // unit price; null until stock.reserved priced the order
}

// Entry is one event on an order's timeline.
type Entry struct {
	EventID      uuid.UUID `json:"event_id"`
	Type         string    `json:"type"`
	Version      int       `json:"version"`
	Source       string    `json:"source"`
	Time         time.Time `json:"time"`
	Compensation bool      `json:"compensation"` // the event undoes an earlier step of the saga
}

// ErrNotFound means no order.placed has been projected for the order (it may still be on its way).
var ErrNotFound = errors.New("order not found")

// ErrNotBuilt means the read model has no live copy yet: its first build from the topics is running.
var ErrNotBuilt = errors.New("the order read model is being built")

// notBuilt turns the error of a query on a missing table into ErrNotBuilt.
func notBuilt(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return ErrNotBuilt
	}
	return err
}

// ErrInvalidCursor means a Filter.Cursor was not one List returned.
var ErrInvalidCursor = errors.New("invalid cursor")

// Page sizes of List.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Filter selects orders for List.
type Filter struct {
	Status     string // one of Pending, Confirmed, Cancelled; "" for any
	CustomerID string // "" for any
	Limit      int    // 1..MaxLimit; 0 means DefaultLimit
	Cursor     string // Page.Next of the previous page; "" for the first
}

// Page is one page of List, newest first.
type Page struct {
	Orders []Order `json:"orders"`
	Next   string  `json:"next"` // the cursor of the next page; "" on the last
}

// orderRow is an orders row of a placed order.
type orderRow struct {
	ID          uuid.UUID           `db:"id"`
	CustomerID  string              `db:"customer_id"`
	Status      string              `db:"status"`
	Reason      string              `db:"reason"`
	Items       []events.Item       `db:"items"`
	Currency    *string             `db:"currency"`
	PricedLines []events.PricedLine `db:"priced_lines"`
	TotalCents  *int64              `db:"total_cents"`
	CreatedAt   time.Time           `db:"created_at"`
	UpdatedAt   time.Time           `db:"updated_at"`
}

const orderColumns = `id, customer_id, status, reason, items, currency, priced_lines, total_cents, created_at, updated_at`

// order merges the placed lines with the prices inventory reserved them at.
func (r orderRow) order() Order {
	prices := make(map[string]int64, len(r.PricedLines))
	for _, l := range r.PricedLines {
		prices[l.SKU] = l.PriceCents
	}
	items := make([]Item, len(r.Items))
	for i, it := range r.Items {
		items[i] = Item{SKU: it.SKU, Quantity: it.Quantity}
		if p, ok := prices[it.SKU]; ok {
			items[i].PriceCents = &p
		}
	}
	currency := events.DefaultCurrency
	if r.Currency != nil {
		currency = *r.Currency
	}
	return Order{
		ID: r.ID, CustomerID: r.CustomerID, Status: r.Status, Reason: r.Reason, Items: items, Currency: currency,
		TotalCents: r.TotalCents, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
}

// Get returns order id with its timeline, oldest event first, or ErrNotFound.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (Order, error) {
	// One snapshot for the order and its timeline, so they agree.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Order{}, fmt.Errorf("get order %s: begin: %w", id, err)
	}
	defer tx.Rollback(ctx)
	rows, _ := tx.Query(ctx, `SELECT `+orderColumns+` FROM orderview.orders WHERE id = $1 AND created_at IS NOT NULL`, id)
	row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[orderRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return Order{}, ErrNotFound
	}
	if err != nil {
		return Order{}, fmt.Errorf("get order %s: %w", id, notBuilt(err))
	}
	o := row.order()
	rows, _ = tx.Query(ctx, `SELECT event_id, type, version, source, time FROM orderview.timeline WHERE order_id = $1 ORDER BY time, event_id`, id)
	o.Timeline, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.EventID, &e.Type, &e.Version, &e.Source, &e.Time)
		e.Time = e.Time.UTC()
		e.Compensation = s.compensation[e.Type]
		return e, err
	})
	if err != nil {
		return Order{}, fmt.Errorf("get timeline of order %s: %w", id, err)
	}
	return o, nil
}

// List returns a page of placed orders matching f, newest first (created_at, then id, descending). Pages
// are keyset-paginated: an order placed while a client pages through appears on no later page, and none
// is skipped or repeated. A malformed f.Cursor yields ErrInvalidCursor.
func (s *Service) List(ctx context.Context, f Filter) (Page, error) {
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 1 || limit > MaxLimit {
		return Page{}, fmt.Errorf("list orders: limit %d is not between 1 and %d", f.Limit, MaxLimit)
	}
	where, args := []string{"created_at IS NOT NULL"}, []any{}
	cond := func(sql string, vs ...any) {
		ph := make([]any, len(vs))
		for i, v := range vs {
			args = append(args, v)
			ph[i] = len(args)
		}
		where = append(where, fmt.Sprintf(sql, ph...))
	}
	if f.Status != "" {
		cond("status = $%d", f.Status)
	}
	if f.CustomerID != "" {
		cond("customer_id = $%d", f.CustomerID)
	}
	if f.Cursor != "" {
		after, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		cond("(created_at, id) < ($%d, $%d)", after.createdAt, after.id)
	}
	args = append(args, limit+1) // one more tells whether there is a next page
	q := fmt.Sprintf(`SELECT %s FROM orderview.orders WHERE %s ORDER BY created_at DESC, id DESC LIMIT $%d`,
		orderColumns, strings.Join(where, " AND "), len(args))
	rows, _ := s.pool.Query(ctx, q, args...)
	found, err := pgx.CollectRows(rows, pgx.RowToStructByName[orderRow])
	if err != nil {
		return Page{}, fmt.Errorf("list orders: %w", notBuilt(err))
	}
	p := Page{Orders: make([]Order, 0, min(len(found), limit))}
	for _, r := range found[:min(len(found), limit)] {
		p.Orders = append(p.Orders, r.order())
	}
	if len(found) > limit {
		last := p.Orders[limit-1]
		p.Next = encodeCursor(position{createdAt: last.CreatedAt, id: last.ID})
	}
	return p, nil
}

// position is where a page ends in the (created_at, id) order.
type position struct {
	createdAt time.Time
	id        uuid.UUID
}

// encodeCursor makes p opaque: base64url of "<created_at in Unix microseconds>.<id>". Postgres keeps
// microseconds, so the cursor holds exactly the stored value.
func encodeCursor(p position) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.createdAt.UnixMicro(), 10) + "." + p.id.String()))
}

func decodeCursor(s string) (position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return position{}, ErrInvalidCursor
	}
	micros, id, ok := strings.Cut(string(b), ".")
	if !ok {
		return position{}, ErrInvalidCursor
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return position{}, ErrInvalidCursor
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return position{}, ErrInvalidCursor
	}
	return position{createdAt: time.UnixMicro(us).UTC(), id: u}, nil
}
