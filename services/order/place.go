package order

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/outbox"
)

// PlaceRequest is the body of POST /v1/orders.
type PlaceRequest struct {
	CustomerID      string         `json:"customer_id"`
	Items           []events.Item  `json:"items"`
	PaymentToken    string         `json:"payment_token"`
	ShippingAddress events.Address `json:"shipping_address"`
	// Currency of the order's prices, ISO 4217; empty means events.DefaultCurrency.
	Currency string `json:"currency,omitempty"`
}

// MaxLines is the most lines one order may have.
const MaxLines = 100

var (
	countryCode  = regexp.MustCompile(`^[A-Z]{2}$`)
	currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)
)

// Validate lists every invalid field of the request.
func (r PlaceRequest) Validate() []httpapi.FieldError {
	var errs []httpapi.FieldError
	bad := func(field, detail string) { errs = append(errs, httpapi.FieldError{Field: field, Detail: detail}) }
	if !events.IsIdentifier(r.CustomerID) {
		bad("customer_id", "required: 1-128 letters, digits or . _ : -")
	}
	switch {
	case len(r.Items) == 0:
		bad("items", "at least one line is required")
	case len(r.Items) > MaxLines:
		bad("items", fmt.Sprintf("at most %d lines", MaxLines))
	}
	seen := map[string]bool{}
	for i, it := range r.Items {
		if !events.IsIdentifier(it.SKU) {
			bad(fmt.Sprintf("items[%d].sku", i), "required: 1-128 letters, digits or . _ : -")
		} else if seen[it.SKU] {
			bad(fmt.Sprintf("items[%d].sku", i), "listed twice; put the total quantity on one line")
		}
		seen[it.SKU] = true
		if it.Quantity < 1 || it.Quantity > 10000 {
			bad(fmt.Sprintf("items[%d].quantity", i), "must be between 1 and 10000")
		}
	}
	if r.PaymentToken == "" || len(r.PaymentToken) > 256 {
		bad("payment_token", "required, at most 256 characters")
	}
	a := r.ShippingAddress
	for field, v := range map[string]string{"name": a.Name, "line1": a.Line1, "city": a.City, "postal_code": a.PostalCode} {
		if v == "" || len(v) > 200 {
			bad("shipping_address."+field, "required, at most 200 characters")
		}
	}
	if r.Currency != "" && !currencyCode.MatchString(r.Currency) {
		bad("currency", "an ISO 4217 code such as USD")
	}
	if !countryCode.MatchString(a.Country) {
		bad("shipping_address.country", "required: an ISO 3166-1 alpha-2 code such as US")
	}
	return errs
}

// Placed is what placing an order returns.
type Placed struct {
	ID     uuid.UUID `json:"id"`
	Status string    `json:"status"`
}

// ErrKeyReused means an Idempotency-Key came back with a different request.
var ErrKeyReused = errors.New("idempotency key reused with a different request")

// PlaceOptions are the request's metadata.
type PlaceOptions struct {
	IdempotencyKey string
	TraceParent    string // W3C traceparent of the caller's trace; a new trace is started when not valid
}

// Place stores a new PENDING order and its order.placed event in one transaction. With an idempotency key
// already used for the same request it returns that order instead; for a different request, ErrKeyReused.
func (s *Service) Place(ctx context.Context, req PlaceRequest, opts PlaceOptions) (Placed, error) {
	idempotencyKey := opts.IdempotencyKey
	body, err := json.Marshal(req)
	if err != nil {
		return Placed{}, fmt.Errorf("encode request: %w", err)
	}
	hash := sha256.Sum256(body)
	id, err := uuid.NewV7()
	if err != nil {
		return Placed{}, fmt.Errorf("order id: %w", err)
	}
	deadline := s.clock().Add(s.cfg.Deadline).UTC()
	currency := req.Currency
	if currency == "" {
		currency = events.DefaultCurrency
	}
	placed := events.OrderPlaced{ // version 2: the currency named, the address split
		OrderID: id.String(), CustomerID: req.CustomerID, Items: req.Items, Currency: currency,
		PaymentToken: req.PaymentToken, ShippingAddress: req.ShippingAddress.Split(), Deadline: deadline,
	}
	ev, err := events.New(s.emit.Source, id.String(), placed)
	if err != nil {
		return Placed{}, err
	}
	ev.TraceParent = opts.TraceParent
	if events.TraceID(ev.TraceParent) == "" {
		ev.TraceParent = events.NewTraceParent()
	}

	// One round trip: BEGIN, the inserts, the event and COMMIT go together. A key already taken is found by
	// its insert failing, not looked up first: a new key, the common case, costs no extra query.
	items, _ := json.Marshal(req.Items) // plain structs: cannot fail
	tx, err := postgres.BeginLater(ctx, s.pool)
	if err != nil {
		return Placed{}, fmt.Errorf("insert order %s: %w", id, err)
	}
	defer tx.Rollback(ctx)
	tx.Later(`INSERT INTO orders (id, customer_id, status, items, correlation_id, deadline) VALUES ($1, $2, $3, $4, $5, $6)`,
		id, req.CustomerID, Pending, items, ev.CorrelationID, deadline)
	if idempotencyKey != "" {
		tx.Later(`INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ($1, $2, $3)`, idempotencyKey, hash[:], id)
	}
	if err := outbox.Append(ctx, postgres.Later(tx), s.emit.Topic, ev); err != nil {
		return Placed{}, fmt.Errorf("publish order.placed for %s: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		if idempotencyKey != "" && keyTaken(err) { // placed before (or concurrently, and committed first)
			p, _, err := s.byIdempotencyKey(ctx, idempotencyKey, hash[:])
			return p, err
		}
		return Placed{}, fmt.Errorf("commit order %s: %w", id, err)
	}
	s.deadlines.announce(deadline)
	return Placed{ID: id, Status: Pending}, nil
}

// keyTaken reports whether err is the idempotency key's insert finding the key taken (unique_violation).
func keyTaken(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "idempotency_keys_pkey"
}

func (s *Service) byIdempotencyKey(ctx context.Context, key string, hash []byte) (Placed, bool, error) {
	var p Placed
	var storedHash []byte
	err := s.pool.QueryRow(ctx, `SELECT o.id, o.status, k.request_hash FROM idempotency_keys k JOIN orders o ON o.id = k.order_id WHERE k.key = $1`, key).
		Scan(&p.ID, &p.Status, &storedHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Placed{}, false, nil
	}
	if err != nil {
		return Placed{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	if string(storedHash) != string(hash) {
		return Placed{}, true, ErrKeyReused
	}
	return p, true, nil
}
