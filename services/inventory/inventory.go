// Package inventory is the inventory service: it owns the catalog (sku, name, unit price, stock), reserves
// every line of a placed order or none, releases reservations when the saga fails, and turns them into
// sales when the order is confirmed. Operators manage the catalog over HTTP.
package inventory

import (
	"embed"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/outbox"
	"github.com/choreo-dev/choreo/sagas"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config configures the inventory service. Who may change the catalog is internal/auth's to decide (the
// operator role, or OPERATOR_TOKEN).
type Config struct{}

// Spec describes the inventory service to the host.
func Spec(cfg Config) host.Spec {
	return host.Spec{
		Name:       sagas.Inventory,
		Doc:        "the inventory service: catalog and stock",
		Topic:      sagas.Topic(sagas.Inventory),
		Consumes:   sagas.Subscriptions(sagas.Inventory),
		Migrations: migrationFiles,
		Build:      func(d host.Deps) (host.Service, error) { return New(cfg, d.Pool, d.Topic, d.Log), nil },
	}
}

// Service is the inventory service.
type Service struct {
	cfg  Config
	pool *pgxpool.Pool
	emit outbox.Emitter
	log  zerolog.Logger
}

// New returns the inventory service over pool, publishing to topic.
func New(cfg Config, pool *pgxpool.Pool, topic string, log zerolog.Logger) *Service {
	return &Service{cfg: cfg, pool: pool, log: log, emit: outbox.Emitter{Source: sagas.Inventory, Topic: topic}}
}

// Handlers registers reservation, compensation and sale.
func (s *Service) Handlers(r *consumer.Router) {
	r.Scope(stockBatch{})
	consumer.On(r, s.reserve)
	r.OnEach(s.release, events.PaymentDeclined{}, events.ShipmentFailed{}, events.OrderCancelled{})
	r.OnEach(s.sell, events.OrderConfirmed{})
	r.Unhurried(events.OrderConfirmed{}) // the sale follows the outcome; a release (compensation) frees stock at once
}

// Routes registers the catalog API.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/products", s.handleList)
	mux.HandleFunc("PUT /v1/products/{sku}", s.handlePut)
}
