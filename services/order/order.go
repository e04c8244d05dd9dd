// Package order is the order service: it accepts orders over HTTP (publishing order.placed), settles each
// order's final state from the other services' outcome events (order.confirmed or order.cancelled with a
// reason), and cancels orders still pending at their saga deadline.
package order

import (
	"context"
	"embed"
	"errors"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/outbox"
	"github.com/choreo-dev/choreo/sagas"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Status of an order.
const (
	Pending   = "PENDING"
	Confirmed = "CONFIRMED"
	Cancelled = "CANCELLED"
)

// Config configures the order service.
type Config struct {
	Deadline time.Duration // how long an order may stay PENDING before it is cancelled as expired
	// IdempotencyTTL is how long an Idempotency-Key is remembered (default 24h): a retry after that
	// places a new order. The deadline sweeper forgets older keys hourly.
	IdempotencyTTL time.Duration
}

// Spec describes the order service to the host.
func Spec(cfg Config) host.Spec {
	return host.Spec{
		Name:       sagas.Order,
		Doc:        "the order service: takes orders, settles them",
		Topic:      sagas.Topic(sagas.Order),
		Consumes:   sagas.Subscriptions(sagas.Order),
		Migrations: migrationFiles,
		Build:      func(d host.Deps) (host.Service, error) { return New(cfg, d.Pool, d.Topic, d.Log) },
		Metrics:    func() prometheus.Collector { return newSagaMetrics() },
	}
}

// Service is the order service.
type Service struct {
	cfg       Config
	pool      *pgxpool.Pool
	emit      outbox.Emitter
	log       zerolog.Logger
	deadlines *deadlines // of the orders placed here, for the expiry sweeper
	clock     func() time.Time
	metrics   sagaMetrics
}

// New returns the order service over pool, publishing to topic.
func New(cfg Config, pool *pgxpool.Pool, topic string, log zerolog.Logger) (*Service, error) {
	if cfg.Deadline <= 0 {
		return nil, errors.New("order service: deadline must be positive")
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	return &Service{
		cfg: cfg, pool: pool, log: log,
		emit:      outbox.Emitter{Source: sagas.Order, Topic: topic},
		deadlines: newDeadlines(),
		clock:     time.Now,
		metrics:   newSagaMetrics(),
	}, nil
}

// Handlers registers the outcome events that settle an order.
func (s *Service) Handlers(r *consumer.Router) {
	r.OnEach(s.settleOn(Confirmed, ""), events.ShipmentScheduled{})
	r.OnEach(s.settleOn(Cancelled, events.ReasonOutOfStock), events.StockRejected{})
	r.OnEach(s.settleOn(Cancelled, events.ReasonCustomerRejected), events.CustomerRejected{})
	r.OnEach(s.settleOn(Cancelled, events.ReasonPaymentDeclined), events.PaymentDeclined{})
	r.OnEach(s.settleOn(Cancelled, events.ReasonShippingFailed), events.ShipmentFailed{})
}

// Routes registers POST /v1/orders.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/orders", s.handlePlace)
}

// Run cancels orders whose deadline passed while they were still pending.
func (s *Service) Run(ctx context.Context) error {
	s.expireLoop(ctx)
	return nil
}
