// Package host runs a choreo service: it creates and migrates the service's database (its own tables plus
// the outbox and inbox), builds the service, and runs its outbox relay, its consumer group and its
// background work until the context ends. Services plug in through Spec and Service.
package host

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/projection"
	"github.com/choreo-dev/choreo/outbox"
)

// Deps is what a service is built with.
type Deps struct {
	Pool  *pgxpool.Pool  // the service's own database
	Log   zerolog.Logger // carries the service name
	Topic string         // the topic the service publishes its events to
}

// Service is a service's behaviour as the host sees it: the reactions it registers. A service may also
// implement HTTPService and Worker.
type Service interface {
	// Handlers registers the service's event handlers.
	Handlers(r *consumer.Router)
}

// HTTPService is a service with an HTTP API.
type HTTPService interface {
	Routes(mux *http.ServeMux)
}

// Worker is a service with background work of its own (timers, deliveries), done until ctx ends.
type Worker interface {
	Run(ctx context.Context) error
}

// Spec describes a service to host. The list of specs (cmd/choreo/system.Specs) is the one list of what
// choreo runs: the binary's commands, its usage text and the deployment checks derive from it.
type Spec struct {
	Name       string   // database name, consumer group, log name and the command that runs it alone
	Doc        string   // what it is, in a few words, for the usage text
	Topic      string   // topic it publishes to ("" for services that publish nothing but dead letters)
	Consumes   []string // topics its consumer group reads
	Migrations fs.FS    // an embedded migrations/ directory of numbered .sql files (nil: no tables of its own)
	// Projections, when set, make the unit a read model: each is kept by a projection.Runner in the
	// unit's database, from its own topics, with no consumer group. Read models have no side effects, so
	// only they may be replayed (`choreo replay`); a service that reacts to events (Consumes) may not.
	Projections []projection.Projection
	Build       func(Deps) (Service, error)
	// Metrics, for a service that measures something itself (its Service is then a prometheus.Collector),
	// returns a fresh collector of the same metrics, to describe them without building the service.
	Metrics func() prometheus.Collector
}

// Replayable reports whether the unit is a read model, whose projections can be rebuilt from the topics.
func (s Spec) Replayable() bool { return len(s.Projections) > 0 && len(s.Consumes) == 0 }

// Options tunes the runtime parts of a unit; the zero value is production's defaults.
type Options struct {
	// Namespace prefixes every topic and consumer group name, so that several systems can share one Kafka
	// cluster (tests do; so could staging environments).
	Namespace string
	Consumer  func(*consumer.Config) // adjusts the consumer config (tests shorten timeouts)
	Kafka     kafkaconn.Config       // TLS and SASL of the relay's writer and the consumer (zero: plaintext)
	Relay     []outbox.Option
	Projector func(*projection.Config) // adjusts the projection runners' config (tests, benchmarks)
	// Tracing gives each service its tracer provider (telemetry.Tracing.Providers); nil records no spans.
	Tracing func(service string) trace.TracerProvider
}

// Unit is one hosted service with its database, relay and consumer.
type Unit struct {
	spec     Spec
	pool     *pgxpool.Pool
	svc      Service
	writer   *outbox.Writer
	relay    *outbox.Relay
	consumer *consumer.Consumer
	runners  []*projection.Runner
	log      zerolog.Logger
	obs      observations
	local    *outbox.LocalCommits // wakes the relay when the unit commits outbox rows
}

// Open connects to and migrates the service's database at dbURL and builds the service.
func Open(ctx context.Context, spec Spec, dbURL string, brokers []string, reg *events.Registry, log zerolog.Logger, opts Options) (*Unit, error) {
	log = log.With().Str("service", spec.Name).Logger()
	// The unit's own writers wake its relay in process rather than by NOTIFY (see outbox.LocalCommits).
	local := outbox.NewLocalCommits()
	pool, err := postgres.Connect(ctx, dbURL, local.Configure)
	if err != nil {
		return nil, fmt.Errorf("%s database: %w", spec.Name, err)
	}
	u := &Unit{spec: spec, pool: pool, log: log, obs: newObservations(spec.Name), local: local}
	if err := u.open(ctx, brokers, reg, opts); err != nil {
		pool.Close()
		return nil, err
	}
	return u, nil
}

func (u *Unit) open(ctx context.Context, brokers []string, reg *events.Registry, opts Options) error {
	var projections fs.FS
	if len(u.spec.Projections) > 0 {
		projections = projection.Migrations()
	}
	for _, m := range []struct {
		component string
		files     fs.FS
	}{{"outbox", outbox.Migrations()}, {"inbox", consumer.Migrations()}, {"projection", projections}, {u.spec.Name, postgres.MigrationsDir(u.spec.Migrations)}} {
		if m.files == nil {
			continue
		}
		if err := postgres.Migrate(ctx, u.pool, m.component, m.files); err != nil {
			return fmt.Errorf("migrate %s database (%s): %w", u.spec.Name, m.component, err)
		}
	}
	topic := u.spec.Topic
	if topic != "" {
		topic = opts.Namespace + topic
	}
	svc, err := u.spec.Build(Deps{Pool: u.pool, Log: u.log, Topic: topic})
	if err != nil {
		return fmt.Errorf("build %s: %w", u.spec.Name, err)
	}
	u.svc = svc
	u.writer = outbox.NewWriter(brokers, 1000, opts.Kafka)
	var tracing trace.TracerProvider
	if opts.Tracing != nil {
		tracing = opts.Tracing(u.spec.Name)
	}
	relayOpts := append([]outbox.Option{outbox.WithOnPublished(u.obs.published), outbox.WithTracing(tracing),
		outbox.WithLocalCommits(u.local)}, opts.Relay...)
	u.relay = outbox.NewRelay(u.pool, u.writer, u.log, relayOpts...)
	u.obs.admin = kafkaadmin.Admin{Brokers: brokers, Conn: opts.Kafka}
	if len(u.spec.Consumes) > 0 {
		router := consumer.NewRouter(reg)
		svc.Handlers(router)
		topics := make([]string, len(u.spec.Consumes))
		for i, t := range u.spec.Consumes {
			topics[i] = opts.Namespace + t
		}
		cfg := consumer.Config{Brokers: brokers, Conn: opts.Kafka, Group: opts.Namespace + u.spec.Name, Topics: topics,
			Tracing: tracing, OnHandled: u.obs.handled}
		u.obs.group, u.obs.topics = cfg.Group, topics
		if opts.Consumer != nil {
			opts.Consumer(&cfg)
		}
		if u.consumer, err = consumer.New(cfg, u.pool, router, u.log); err != nil {
			return fmt.Errorf("%s consumer: %w", u.spec.Name, err)
		}
	}
	for _, p := range u.spec.Projections {
		cfg := projection.Config{Brokers: brokers, Conn: opts.Kafka, Namespace: opts.Namespace, Log: u.log}
		if opts.Projector != nil {
			opts.Projector(&cfg)
		}
		u.runners = append(u.runners, projection.New(cfg, u.pool, reg, p))
	}
	return nil
}

// Projections are the runners of the unit's projections, none unless it is a read model.
func (u *Unit) Projections() []*projection.Runner { return u.runners }

// Name is the service's name.
func (u *Unit) Name() string { return u.spec.Name }

// Service is the hosted service.
func (u *Unit) Service() Service { return u.svc }

// Pool is the service's database.
func (u *Unit) Pool() *pgxpool.Pool { return u.pool }

// Relay is the service's outbox relay.
func (u *Unit) Relay() *outbox.Relay { return u.relay }

// Consumer is the service's consumer, nil if it consumes nothing.
func (u *Unit) Consumer() *consumer.Consumer { return u.consumer }

// Routes registers the service's HTTP API on mux, if it has one.
func (u *Unit) Routes(mux *http.ServeMux) {
	if h, ok := u.svc.(HTTPService); ok {
		h.Routes(mux)
	}
}

// Check reports whether the service's database answers.
func (u *Unit) Check(ctx context.Context) error {
	if err := u.pool.Ping(ctx); err != nil {
		return fmt.Errorf("%s database: %w", u.spec.Name, err)
	}
	return nil
}

// Run runs the relay, the consumer and the service's background work until ctx ends or one of them fails;
// each drains its in-flight work before Run returns.
func (u *Unit) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return wrap("relay", u.relay.Run(ctx)) })
	if u.consumer != nil {
		g.Go(func() error { return wrap("consumer", u.consumer.Run(ctx)) })
	}
	for _, r := range u.runners {
		g.Go(func() error { return wrap("projection "+r.Projection().Name(), r.Run(ctx)) })
	}
	if w, ok := u.svc.(Worker); ok {
		g.Go(func() error { return wrap("background work", w.Run(ctx)) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("%s: %w", u.spec.Name, err)
	}
	return nil
}

// Close releases the Kafka writer and the database pool; call it after Run returned.
func (u *Unit) Close() {
	if u.writer != nil {
		_ = u.writer.Close()
	}
	u.pool.Close()
}

func wrap(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
