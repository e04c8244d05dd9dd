// Package orderview is the order read model: a projection (internal/projection) of every event of every
// order saga, kept from all five services' topics in schema orderview of its own database, with its
// positions beside its rows. It serves the orders as JSON (GET /v1/orders, GET /v1/orders/{id}) and each
// saga's timeline as an HTML page (GET /orders/{id}).
//
// It is rebuilt from the topics, which keep their events forever, while it serves: `choreo replay
// orderview` builds a new copy beside the live one and swaps it in (projection.Runner.Rebuild).
package orderview

import (
	"embed"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/projection"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/salesview"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Name is the read model's name: its database, its schema and its projection.
const Name = "orderview"

// Config configures the read model. It has no settings yet.
type Config struct{}

// Validate reports whether the config can be used.
func (c Config) Validate() error { return nil }

// Spec describes the read model to the host: a unit that keeps projections (the orders and the sales
// report, sagas/salesview, in schemas of one database) rather than reacting to events, so it can be
// replayed safely.
func Spec(cfg Config) host.Spec {
	return host.Spec{
		Name:        Name,
		Doc:         "the order read model, timeline pages and reports (projections)",
		Migrations:  migrationFiles,
		Projections: []projection.Projection{Projection{}, salesview.Projection{}},
		Build:       func(d host.Deps) (host.Service, error) { return New(cfg, d.Pool, d.Log) },
	}
}

// Service is the order read model's API.
type Service struct {
	cfg          Config
	pool         *pgxpool.Pool
	log          zerolog.Logger
	compensation map[string]bool // event types that undo an earlier step, marked on the timeline
	pages        *pages
	reports      *salesview.Reports
}

// New returns the read model's API over pool, the database its projection is kept in.
func New(cfg Config, pool *pgxpool.Pool, log zerolog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pg, err := newPages()
	if err != nil {
		return nil, err
	}
	comp := map[string]bool{}
	for _, r := range sagas.OrderSaga() {
		if r.Kind == sagas.Compensation {
			for _, e := range r.Emits {
				comp[e] = true
			}
		}
	}
	return &Service{cfg: cfg, pool: pool, log: log, compensation: comp, pages: pg, reports: salesview.NewReports(pool, log)}, nil
}

// Handlers registers nothing: the read model is kept by its projections, not by a consumer group.
func (s *Service) Handlers(*consumer.Router) {}

// Routes registers the JSON API, the timeline pages and the sales report.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/orders", s.handleList)
	mux.HandleFunc("GET /v1/orders/{id}", s.handleGet)
	mux.HandleFunc("GET /orders", s.handleListPage)
	mux.HandleFunc("GET /orders/{id}", s.handlePage)
	s.reports.Routes(mux)
}
