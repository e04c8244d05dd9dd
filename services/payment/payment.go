// Package payment is the payment service. It authorizes an order's total once it knows the payment token
// (order.placed), the reserved total (stock.reserved) and that the customer is approved
// (customer.approved), whichever arrives last, and refunds the authorization when shipping fails or the
// order is cancelled. It keeps each customer's credit limit from customer.credit_limit_set.
//
// Decline rules, deterministic so that demos and tests can drive every path:
//   - the payment token "tok_decline" is always declined (reason "card_declined");
//   - a total above the customer's limit is declined (reason "limit_exceeded"); the limit is the
//     customer's row in customer_limits (from customer.credit_limit_set), else Config.DefaultLimitCents
//     (1,000,000 cents by default).
package payment

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/outbox"
	"github.com/choreo-dev/choreo/sagas"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Payment statuses.
const (
	Waiting    = "WAITING"
	Authorized = "AUTHORIZED"
	Declined   = "DECLINED"
	Refunded   = "REFUNDED"
	Cancelled  = "CANCELLED" // the order was cancelled before anything was authorized
)

// DeclineToken is the payment token that is always declined.
const DeclineToken = "tok_decline"

// Config configures the payment service.
type Config struct {
	DefaultLimitCents int64 // the most a customer without a customer_limits row may be authorized for
}

// Spec describes the payment service to the host.
func Spec(cfg Config) host.Spec {
	return host.Spec{
		Name:       sagas.Payment,
		Doc:        "the payment service",
		Topic:      sagas.Topic(sagas.Payment),
		Consumes:   sagas.Subscriptions(sagas.Payment),
		Migrations: migrationFiles,
		Build: func(d host.Deps) (host.Service, error) {
			if cfg.DefaultLimitCents < 0 {
				return nil, errors.New("payment: default limit must not be negative")
			}
			return New(cfg, d.Pool, d.Topic, d.Log), nil
		},
	}
}

// Service is the payment service.
type Service struct {
	cfg  Config
	pool *pgxpool.Pool
	emit outbox.Emitter
	log  zerolog.Logger
}

// New returns the payment service over pool, publishing to topic.
func New(cfg Config, pool *pgxpool.Pool, topic string, log zerolog.Logger) *Service {
	return &Service{cfg: cfg, pool: pool, log: log, emit: outbox.Emitter{Source: sagas.Payment, Topic: topic}}
}

// Handlers registers the payment reactions.
func (s *Service) Handlers(r *consumer.Router) {
	consumer.On(r, s.onPlaced)
	consumer.On(r, s.onReserved)
	consumer.On(r, s.onApproved)
	// Authorizing needs all three: each records its part, and the batch then decides the orders whose
	// parts are all there (consumer.Pending), so those before the last commit with the last.
	r.Join(events.OrderPlaced{}, events.StockReserved{}, events.CustomerApproved{})
	r.Scope(consumer.Pending[complete]{Query: completeSQL, Key: complete.key, Decide: s.decide})
	consumer.On(r, s.onCreditLimit)
	r.OnEach(s.refund, events.ShipmentFailed{}, events.OrderCancelled{})
}

func (s *Service) onPlaced(ctx context.Context, tx pgx.Tx, ev consumer.Event, p events.OrderPlaced) error {
	return consumer.RecordPart(ctx, tx, ev, p.OrderID, `INSERT INTO payments (order_id, customer_id, token, status) VALUES ($1, $2, $3, 'WAITING')
		ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, token = EXCLUDED.token, updated_at = now()`,
		p.CustomerID, p.PaymentToken)
}

func (s *Service) onReserved(ctx context.Context, tx pgx.Tx, ev consumer.Event, p events.StockReserved) error {
	return consumer.RecordPart(ctx, tx, ev, p.OrderID, `INSERT INTO payments (order_id, amount_cents, status) VALUES ($1, $2, 'WAITING')
		ON CONFLICT (order_id) DO UPDATE SET amount_cents = EXCLUDED.amount_cents, updated_at = now()`, p.TotalCents)
}

func (s *Service) onApproved(ctx context.Context, tx pgx.Tx, ev consumer.Event, p events.CustomerApproved) error {
	return consumer.RecordPart(ctx, tx, ev, p.OrderID, `INSERT INTO payments (order_id, customer_approved, status) VALUES ($1, true, 'WAITING')
		ON CONFLICT (order_id) DO UPDATE SET customer_approved = true, updated_at = now()`)
}

// onCreditLimit keeps the customer's limit; a redelivered older limit does not replace a newer one.
func (s *Service) onCreditLimit(ctx context.Context, tx pgx.Tx, ev consumer.Event, p events.CustomerCreditLimitSet) error {
	_, err := postgres.Later(tx).Exec(ctx, `INSERT INTO customer_limits (customer_id, limit_cents, set_at) VALUES ($1, $2, $3)
		ON CONFLICT (customer_id) DO UPDATE SET limit_cents = EXCLUDED.limit_cents, set_at = EXCLUDED.set_at
		WHERE customer_limits.set_at IS NULL OR customer_limits.set_at <= EXCLUDED.set_at`, p.CustomerID, p.LimitCents, ev.Time)
	if err != nil {
		return fmt.Errorf("keep credit limit of %s: %w", p.CustomerID, err)
	}
	return nil
}

// completeSQL reads the payments among $1 that have every part and are still WAITING, with the customer's
// limit if one was set.
const completeSQL = `SELECT order_id, token, amount_cents,
	(SELECT limit_cents FROM customer_limits l WHERE l.customer_id = p.customer_id)
	FROM payments p WHERE order_id = ANY($1) AND status = 'WAITING'
	AND token IS NOT NULL AND amount_cents IS NOT NULL AND customer_id IS NOT NULL AND customer_approved`

// complete is a payment ready to be decided, read by completeSQL for consumer.Pending, which calls decide with
// each such row of the batch's orders, caused by the batch's last event of the order.
type complete struct {
	OrderID     string
	Token       string
	AmountCents int64
	LimitCents  *int64 // the customer's credit limit, if one was set
}

func (c complete) key() string { return c.OrderID }

// decide authorizes or declines one complete payment.
func (s *Service) decide(ctx context.Context, tx pgx.Tx, cause consumer.Event, c complete) error {
	limit := s.cfg.DefaultLimitCents
	if c.LimitCents != nil {
		limit = *c.LimitCents
	}
	reason := ""
	switch {
	case c.Token == DeclineToken:
		reason = "card_declined"
	case c.AmountCents > limit:
		reason = "limit_exceeded"
	}
	if reason != "" {
		if _, err := postgres.Later(tx).Exec(ctx, `UPDATE payments SET status = 'DECLINED', reason = $2, updated_at = now() WHERE order_id = $1`, c.OrderID, reason); err != nil {
			return fmt.Errorf("decline %s: %w", c.OrderID, err)
		}
		return s.emit.Emit(ctx, tx, cause.Envelope, events.PaymentDeclined{OrderID: c.OrderID, Reason: reason})
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("payment id: %w", err)
	}
	if _, err := postgres.Later(tx).Exec(ctx, `UPDATE payments SET status = 'AUTHORIZED', payment_id = $2, updated_at = now() WHERE order_id = $1`, c.OrderID, id); err != nil {
		return fmt.Errorf("authorize %s: %w", c.OrderID, err)
	}
	return s.emit.Emit(ctx, tx, cause.Envelope, events.PaymentAuthorized{OrderID: c.OrderID, PaymentID: id.String(), AmountCents: c.AmountCents})
}

// refund compensates: an authorized payment is refunded; a payment not yet decided is cancelled so that a
// stock.reserved or customer.approved arriving later authorizes nothing.
func (s *Service) refund(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	orderID := ev.Subject
	st, err := postgres.QueryOne[refundState](ctx, tx, `INSERT INTO payments (order_id, status) VALUES ($1, 'CANCELLED')
		ON CONFLICT (order_id) DO UPDATE SET updated_at = now() RETURNING status, amount_cents, payment_id`, orderID)
	if err != nil {
		return fmt.Errorf("upsert payment %s: %w", orderID, err)
	}
	switch st.Status {
	case Waiting:
		_, err := postgres.Later(tx).Exec(ctx, `UPDATE payments SET status = 'CANCELLED', reason = $2, updated_at = now() WHERE order_id = $1`, orderID, ev.Type)
		if err != nil {
			return fmt.Errorf("cancel payment %s: %w", orderID, err)
		}
		return nil
	case Authorized:
		if _, err := postgres.Later(tx).Exec(ctx, `UPDATE payments SET status = 'REFUNDED', reason = $2, updated_at = now() WHERE order_id = $1`, orderID, ev.Type); err != nil {
			return fmt.Errorf("refund %s: %w", orderID, err)
		}
		return s.emit.Emit(ctx, tx, ev.Envelope,
			events.PaymentRefunded{OrderID: orderID, PaymentID: st.PaymentID.String(), AmountCents: *st.AmountCents, Reason: ev.Type})
	}
	return nil // declined, refunded or cancelled already
}

// refundState is what refund needs of a payment row.
type refundState struct {
	Status      string
	AmountCents *int64
	PaymentID   *uuid.UUID
}
