// Package system assembles every choreo service into one process: the all-in-one mode `choreo run` uses
// and the end-to-end tests drive. Each service still gets its own database, relay and consumer group; only
// the process and the HTTP listener are shared.
package system

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/console"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/internal/ingress"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/ratelimit"
	"github.com/choreo-dev/choreo/internal/telemetry"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/sagas/orderview"
	"github.com/choreo-dev/choreo/services/customer"
	"github.com/choreo-dev/choreo/services/inventory"
	"github.com/choreo-dev/choreo/services/notification"
	"github.com/choreo-dev/choreo/services/order"
	"github.com/choreo-dev/choreo/services/payment"
	"github.com/choreo-dev/choreo/services/shipping"
)

// Config is everything the assembled system needs.
type Config struct {
	Brokers      []string
	ServerURL    string // a Postgres server; one database per service is created on it
	Partitions   int    // partitions of each events topic
	Order        order.Config
	Inventory    inventory.Config
	Payment      payment.Config
	Shipping     shipping.Config
	Notification notification.Config
	Customer     customer.Config
	OrderView    orderview.Config
	Seed         []inventory.Product // added to the catalog if missing
	// DemoCustomer, when set, is registered if missing, or given this password if registered already.
	DemoCustomer *customer.Registration
	Host         host.Options // Host.Namespace also prefixes the database names
	Disabled     []string     // units not to run here (run elsewhere, or withheld by a test)
	Auth         auth.Config  // who may call the API; the zero value leaves it open
	RateLimit    float64      // orders a second per client on POST /v1/orders; 0: no limit
	// OperatorToken guards the console's operator actions (redrive); the same token as Inventory's.
	OperatorToken string
}

// Specs returns the hosted units of the system: the six saga services and the read model.
func Specs(cfg Config) []host.Spec {
	return []host.Spec{
		order.Spec(cfg.Order),
		inventory.Spec(cfg.Inventory),
		customer.Spec(cfg.Customer),
		payment.Spec(cfg.Payment),
		shipping.Spec(cfg.Shipping),
		notification.Spec(cfg.Notification),
		orderview.Spec(cfg.OrderView),
	}
}

// APIs are the units that serve part of the public HTTP API (the ingress routes to them), so run alone
// they verify their callers too.
func APIs() []string { return []string{sagas.Order, sagas.Inventory, sagas.Customer, orderview.Name} }

// Topics returns every topic the system uses: each service's events topic (kept forever, so read models
// can be rebuilt by replaying) and its dead-letter topic.
func Topics(namespace string, partitions int) []kafkaadmin.Topic {
	var ts []kafkaadmin.Topic
	for _, t := range sagas.Topics() {
		t = namespace + t
		keep := map[string]string{"retention.ms": "-1"}
		ts = append(ts,
			kafkaadmin.Topic{Name: t, Partitions: partitions, Configs: keep},
			kafkaadmin.Topic{Name: t + consumer.DLQSuffix, Partitions: 1, Configs: keep})
	}
	return ts
}

// System is the running assembly.
type System struct {
	units   []*host.Unit
	mux     *http.ServeMux
	handler http.Handler
	auth    *auth.Authenticator
	console *console.Console
	log     zerolog.Logger
}

// Open creates the topics and the databases, migrates and builds every unit, and seeds the catalog.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*System, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	admin := kafkaadmin.Admin{Brokers: cfg.Brokers, Conn: cfg.Host.Kafka}
	if err := admin.EnsureTopics(ctx, Topics(cfg.Host.Namespace, cfg.Partitions)...); err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	reg, err := events.Catalog()
	if err != nil {
		return nil, err
	}
	authn, err := auth.New(ctx, cfg.Auth, log)
	if err != nil {
		return nil, fmt.Errorf("authentication: %w", err)
	}
	s := &System{mux: http.NewServeMux(), auth: authn, log: log}
	var limiter *ratelimit.Limiter
	if cfg.RateLimit > 0 {
		limiter = ratelimit.New(cfg.RateLimit)
	}
	s.handler = ingress.Guard(s.mux, authn, limiter)
	if cfg.Host.Tracing != nil { // the front door's span: the root of each order's trace
		s.handler = telemetry.HTTPHandler(s.handler, cfg.Host.Tracing("ingress"))
	}
	for _, spec := range Specs(cfg) {
		if slices.Contains(cfg.Disabled, spec.Name) {
			continue
		}
		dbURL, err := postgres.EnsureDatabase(ctx, cfg.ServerURL, cfg.Host.Namespace+spec.Name)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("database for %s: %w", spec.Name, err)
		}
		u, err := host.Open(ctx, spec, dbURL, cfg.Brokers, reg, log, cfg.Host)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.units = append(s.units, u)
		u.Routes(s.mux)
	}
	if inv := s.Unit(sagas.Inventory); inv != nil && len(cfg.Seed) > 0 {
		if err := inventory.Seed(ctx, inv.Pool(), cfg.Seed); err != nil {
			s.Close()
			return nil, err
		}
	}
	if u := s.Unit(sagas.Customer); u != nil && cfg.DemoCustomer != nil {
		if _, err := u.Service().(*customer.Service).EnsureCustomer(ctx, *cfg.DemoCustomer); err != nil {
			s.Close()
			return nil, fmt.Errorf("demo customer: %w", err)
		}
	}
	checks := []httpapi.Check{admin.Ping()}
	for _, u := range s.units {
		checks = append(checks, u.Check)
	}
	httpapi.HealthRoutes(s.mux, checks...)
	host.Metrics(s.mux, s.units...)
	if s.console, err = console.New(s.consoleConfig(cfg)); err != nil {
		s.Close()
		return nil, err
	}
	s.console.Routes(s.mux)
	return s, nil
}

// Handler serves every service's HTTP API plus /healthz, /readyz, /metrics and the console (/ui),
// behind ingress.Guard.
func (s *System) Handler() http.Handler { return s.handler }

// Authenticated reports whether callers must present a valid token (Config.Auth set a key source).
func (s *System) Authenticated() bool { return s.auth.Enforced() }

// consoleConfig points the console (/ui) at the system's topics, its read model and its databases.
func (s *System) consoleConfig(cfg Config) console.Config {
	cc := console.Config{Brokers: cfg.Brokers, Kafka: cfg.Host.Kafka, Namespace: cfg.Host.Namespace, OperatorToken: cfg.OperatorToken, Log: s.log}
	cc.Services = ConsoleServices(Specs(cfg))
	if u := s.Unit(orderview.Spec(cfg.OrderView).Name); u != nil {
		if view, ok := u.Service().(*orderview.Service); ok {
			cc.Orders = view.List
		}
	}
	cc.Redrive = func(ctx context.Context, service string) (int, error) {
		u := s.Unit(service)
		if u == nil {
			return 0, fmt.Errorf("redrive %s: it does not run in this process", service)
		}
		r := consumer.Redriver{Brokers: cfg.Brokers, Conn: cfg.Host.Kafka, Group: cfg.Host.Namespace + service, Pool: u.Pool()}
		total := 0
		for _, spec := range Specs(cfg) {
			if spec.Name != service {
				continue
			}
			for _, t := range spec.Consumes {
				n, err := r.Redrive(ctx, cfg.Host.Namespace+t+consumer.DLQSuffix, nil)
				total += n
				if err != nil {
					return total, err
				}
			}
		}
		return total, nil
	}
	return cc
}

// Unit returns the hosted unit called name, or nil.
func (s *System) Unit(name string) *host.Unit {
	for _, u := range s.units {
		if u.Name() == name {
			return u
		}
	}
	return nil
}

// Run runs every unit and the console until ctx ends or one fails.
func (s *System) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.console.Run(ctx) })
	for _, u := range s.units {
		g.Go(func() error { return u.Run(ctx) })
	}
	return g.Wait()
}

// Close releases every unit; call it after Run returned.
func (s *System) Close() {
	if s.console != nil {
		s.console.Close()
	}
	for _, u := range s.units {
		u.Close()
	}
	s.auth.Close()
}

// ConsoleServices describes the hosted units to the console: each with the topics it reads, a read model's
// (which reads without a consumer group, and dead-letters like the services) included.
func ConsoleServices(specs []host.Spec) []console.Service {
	var out []console.Service
	for _, spec := range specs {
		reads := slices.Clone(spec.Consumes)
		for _, p := range spec.Projections {
			for _, t := range p.Topics() {
				if !slices.Contains(reads, t) {
					reads = append(reads, t)
				}
			}
		}
		out = append(out, console.Service{Name: spec.Name, Consumes: reads})
	}
	return out
}
