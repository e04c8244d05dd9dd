// Package shipping is the shipping service. It schedules a shipment once it knows both the address
// (order.placed) and that payment was authorized (payment.authorized), whichever arrives first; a
// destination outside the supported countries fails the shipment. A cancelled order cancels its shipment.
package shipping

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

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

// Shipment statuses.
const (
	Waiting   = "WAITING"
	Scheduled = "SCHEDULED"
	Failed    = "FAILED"
	Cancelled = "CANCELLED"
)

// NeverSupported is a country code no configuration can make shippable (for demos and tests).
const NeverSupported = "XX"

// Config configures the shipping service.
type Config struct {
	Countries []string // ISO 3166-1 alpha-2 codes shipped to
}

// Spec describes the shipping service to the host.
func Spec(cfg Config) host.Spec {
	return host.Spec{
		Name:       sagas.Shipping,
		Doc:        "the shipping service",
		Topic:      sagas.Topic(sagas.Shipping),
		Consumes:   sagas.Subscriptions(sagas.Shipping),
		Migrations: migrationFiles,
		Build: func(d host.Deps) (host.Service, error) {
			if len(cfg.Countries) == 0 {
				return nil, errors.New("shipping: no supported countries configured")
			}
			return New(cfg, d.Pool, d.Topic, d.Log), nil
		},
	}
}

// Service is the shipping service.
type Service struct {
	cfg  Config
	pool *pgxpool.Pool
	emit outbox.Emitter
	log  zerolog.Logger
}

// New returns the shipping service over pool, publishing to topic.
func New(cfg Config, pool *pgxpool.Pool, topic string, log zerolog.Logger) *Service {
	return &Service{cfg: cfg, pool: pool, log: log, emit: outbox.Emitter{Source: sagas.Shipping, Topic: topic}}
}

// Handlers registers the shipping reactions.
func (s *Service) Handlers(r *consumer.Router) {
	consumer.On(r, s.onPlaced)
	r.OnEach(s.onAuthorized, events.PaymentAuthorized{})
	// Scheduling needs both: each records its part, and the batch then decides the orders whose parts are
	// both there (consumer.Pending), so the first commits with the second.
	r.Join(events.OrderPlaced{}, events.PaymentAuthorized{})
	r.Scope(consumer.Pending[complete]{Query: completeSQL, Key: complete.key, Decide: s.decide})
	r.OnEach(s.cancel, events.OrderCancelled{})
}

type state struct {
	Status     string
	ShipmentID *uuid.UUID
}

func (s *Service) onPlaced(ctx context.Context, tx pgx.Tx, ev consumer.Event, p events.OrderPlaced) error {
	addr, _ := json.Marshal(p.ShippingAddress) // plain struct: cannot fail
	return consumer.RecordPart(ctx, tx, ev, p.OrderID, `INSERT INTO shipments (order_id, address, status) VALUES ($1, $2, 'WAITING')
		ON CONFLICT (order_id) DO UPDATE SET address = EXCLUDED.address, updated_at = now()`, addr)
}

func (s *Service) onAuthorized(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	return consumer.RecordPart(ctx, tx, ev, ev.Subject, `INSERT INTO shipments (order_id, authorized, status) VALUES ($1, true, 'WAITING')
		ON CONFLICT (order_id) DO UPDATE SET authorized = true, updated_at = now()`)
}

// completeSQL reads the shipments among $1 that have their address and payment and are still WAITING.
const completeSQL = `SELECT order_id, address FROM shipments
	WHERE order_id = ANY($1) AND status = 'WAITING' AND address IS NOT NULL AND authorized`

// complete is a shipment ready to be decided, read by completeSQL for consumer.Pending, which calls decide with
// each such row of the batch's orders, caused by the batch's last event of the order.
type complete struct {
	OrderID string
	Address []byte
}

func (c complete) key() string { return c.OrderID }

// decide schedules one complete shipment, or fails it when its country is not served.
func (s *Service) decide(ctx context.Context, tx pgx.Tx, cause consumer.Event, c complete) error {
	orderID := c.OrderID
	// Addresses stored before order.placed v2 have line1 instead of street and house_number; only the
	// country is read here, which both versions carry. One that cannot be read fails the shipment, so the
	// saga compensates at once (a failing decision would dead-letter its cause and leave the order to its
	// expiry).
	var addr events.PostalAddress
	reason := ""
	if err := json.Unmarshal(c.Address, &addr); err != nil {
		reason = "unreadable_address"
		s.log.Error().Err(err).Str("event_id", cause.ID.String()).Str("correlation_id", cause.CorrelationID).
			Str("order_id", orderID).Msg("shipment address unreadable: failing the shipment")
	} else if addr.Country == NeverSupported || !slices.Contains(s.cfg.Countries, addr.Country) {
		reason = "unsupported_country: " + addr.Country
	}
	if reason != "" {
		if _, err := postgres.Later(tx).Exec(ctx, `UPDATE shipments SET status = 'FAILED', reason = $2, updated_at = now() WHERE order_id = $1`, orderID, reason); err != nil {
			return fmt.Errorf("fail shipment %s: %w", orderID, err)
		}
		return s.emit.Emit(ctx, tx, cause.Envelope, events.ShipmentFailed{OrderID: orderID, Reason: reason})
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("shipment id: %w", err)
	}
	if _, err := postgres.Later(tx).Exec(ctx, `UPDATE shipments SET status = 'SCHEDULED', shipment_id = $2, updated_at = now() WHERE order_id = $1`, orderID, id); err != nil {
		return fmt.Errorf("schedule shipment %s: %w", orderID, err)
	}
	return s.emit.Emit(ctx, tx, cause.Envelope, events.ShipmentScheduled{OrderID: orderID, ShipmentID: id.String()})
}

// cancel compensates: a scheduled shipment is cancelled; one not yet decided never will be.
func (s *Service) cancel(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
	orderID := ev.Subject
	st, err := postgres.QueryOne[state](ctx, tx, `INSERT INTO shipments (order_id, status) VALUES ($1, 'CANCELLED')
		ON CONFLICT (order_id) DO UPDATE SET updated_at = now() RETURNING status, shipment_id`, orderID)
	if err != nil {
		return fmt.Errorf("upsert shipment %s: %w", orderID, err)
	}
	if st.Status != Waiting && st.Status != Scheduled {
		return nil
	}
	if _, err := postgres.Later(tx).Exec(ctx, `UPDATE shipments SET status = 'CANCELLED', reason = 'order cancelled', updated_at = now() WHERE order_id = $1`, orderID); err != nil {
		return fmt.Errorf("cancel shipment %s: %w", orderID, err)
	}
	if st.Status == Waiting {
		return nil
	}
	return s.emit.Emit(ctx, tx, ev.Envelope, events.ShipmentCancelled{OrderID: orderID, ShipmentID: st.ShipmentID.String()})
}
