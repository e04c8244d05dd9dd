// Package orderview is the order read model: a projection of every event of every order saga, kept by its
// own consumer group from every service's topic in its own database. It serves the orders as JSON
// (GET /v1/orders, GET /v1/orders/{id}) and each saga's timeline as an HTML page (GET /orders/{id}).
//
// The projection can be rebuilt from the topics, which keep their events forever: see Service.Reset.
package orderview

import (
	"context"
	"embed"
	"fmt"
	"net/http"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/sagas"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Name is the service's name: its default consumer group, and the database name callers give it.
const Name = "orderview"

// Config configures the read model.
type Config struct {
	// Group is the consumer group the projection is kept by (default Name). A replay uses a fresh one: see
	// Service.Reset. host.Spec has no separate group field, so Spec uses Group as the hosted name; it must
	// therefore also be a valid migration component name: lowercase letters, digits and '_', starting with
	// a letter.
	Group string
}

var groupName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func (c Config) withDefaults() Config {
	if c.Group == "" {
		c.Group = Name
	}
	return c
}

// Validate reports whether the config can be used.
func (c Config) Validate() error {
	if c = c.withDefaults(); !groupName.MatchString(c.Group) {
		return fmt.Errorf("orderview config: group %q must match %s", c.Group, groupName)
	}
	return nil
}

// Spec describes the read model to the host. Its Name is cfg.Group (default "orderview"): the host uses the
// name as the consumer group, the log name and the migration component. Which database it runs in is the
// caller's choice: the "orderview" database to replay in place (after Reset), or a new one to rebuild
// beside the old one.
func Spec(cfg Config) host.Spec {
	cfg = cfg.withDefaults()
	return host.Spec{
		Name:       cfg.Group,
		Doc:        "the order read model and timeline pages",
		Topic:      "", // publishes nothing but dead letters
		Consumes:   sagas.Topics(),
		Migrations: migrationFiles,
		Build:      func(d host.Deps) (host.Service, error) { return New(cfg, d.Pool, d.Log) },
	}
}

// Service is the order read model.
type Service struct {
	cfg          Config
	pool         *pgxpool.Pool
	log          zerolog.Logger
	compensation map[string]bool // event types that undo an earlier step, marked on the timeline
	pages        *pages
}

// New returns the read model over pool, a database migrated with Spec's migrations (and the inbox's).
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
	return &Service{cfg: cfg.withDefaults(), pool: pool, log: log, compensation: comp, pages: pg}, nil
}

// Handlers records every event on its order's timeline. The four types that change an order's state get
// routes of their own so that one the registry cannot decode (an unknown version, say) is dead-lettered
// rather than only put on the timeline, which would leave the order silently stale.
//
// The customer service's lifecycle events share its topic with its saga steps but are about a customer,
// not an order, so they are left out.
func (s *Service) Handlers(r *consumer.Router) {
	r.Default(s.Project)
	r.OnEach(s.Project, projected...)
	r.OnEach(func(context.Context, pgx.Tx, consumer.Event) error { return nil }, events.CustomerLifecycle()...)
}

// Routes registers the JSON API and the timeline pages.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/orders", s.handleList)
	mux.HandleFunc("GET /v1/orders/{id}", s.handleGet)
	mux.HandleFunc("GET /orders", s.handleListPage)
	mux.HandleFunc("GET /orders/{id}", s.handlePage)
}

// Reset empties the projection and forgets which events the consumer group Config.Group has handled, in
// one transaction, so the projection can be rebuilt from the topics. Run it with the service stopped, then
// start it with a new consumer group id (Config.Group) or after resetting the group's offsets to the
// earliest; otherwise the group resumes from its committed offsets and the projection stays empty.
func (s *Service) Reset(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("reset orderview: begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `TRUNCATE orders, timeline`); err != nil {
		return fmt.Errorf("reset orderview: truncate projection: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM inbox WHERE consumer = $1`, s.cfg.Group); err != nil {
		return fmt.Errorf("reset orderview: forget handled events of %s: %w", s.cfg.Group, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("reset orderview: commit: %w", err)
	}
	return nil
}
