package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/console"
	"github.com/choreo-dev/choreo/internal/devstack/kafkaembed"
	"github.com/choreo-dev/choreo/internal/devstack/pgembed"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/internal/ingress"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
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

// systemConfig maps the binary's settings onto the services' configs.
func systemConfig(cfg Config) system.Config {
	return system.Config{
		Brokers:    cfg.KafkaBrokers,
		ServerURL:  cfg.DatabaseURL,
		Partitions: cfg.KafkaPartitions,
		Order:      order.Config{Deadline: cfg.SagaDeadline},
		Inventory:  inventory.Config{},
		Payment:    payment.Config{DefaultLimitCents: cfg.PaymentLimitCents},
		Shipping:   shipping.Config{Countries: cfg.ShippingCountries},
		Notification: notification.Config{
			SMTP: notification.SMTPConfig{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, Username: cfg.SMTPUsername, Password: cfg.SMTPPassword},
		},
		Customer: customer.Config{Tokens: customer.TokenConfig{
			HMACSecret: cfg.AuthHMACSecret, Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience, TTL: cfg.AuthTokenTTL,
		}},
		OrderView:     orderview.Config{},
		Auth:          cfg.authConfig(),
		RateLimit:     cfg.RateLimit,
		OperatorToken: cfg.OperatorToken,
		Host:          host.Options{Kafka: cfg.KafkaConn, Consumer: cfg.tuneConsumer},
	}
}

// tuneConsumer applies the consumer settings to a service's consumer config.
func (c Config) tuneConsumer(cc *consumer.Config) {
	cc.ApplyInterval, cc.Linger = c.ApplyInterval, c.Linger
}

// DemoEmail is the demo customer `choreo run` seeds.
const DemoEmail = "demo@choreo.local"

// signingKey loads AUTH_SIGNING_KEY_FILE, when set, into the customer service's token config and, when no
// other key source is set, makes its public half the one tokens are verified with.
func (c Config) signingKey(sc *system.Config) error {
	if c.AuthSigningKey == "" {
		return nil
	}
	key, err := customer.LoadSigningKey(c.AuthSigningKey)
	if err != nil {
		return fmt.Errorf("AUTH_SIGNING_KEY_FILE: %w", err)
	}
	sc.Customer.Tokens.SigningKey = key
	if !sc.Auth.Enforced() {
		sc.Auth.VerifyKey = key.Public()
	}
	return nil
}

// startEmbedded starts the in-process Kafka broker and the Postgres cluster, each only when none is
// configured, with their data under DataDir, and returns cfg pointing at them and a function that stops them.
func startEmbedded(ctx context.Context, cfg Config, log zerolog.Logger) (Config, func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if len(cfg.KafkaBrokers) == 0 {
		dir := filepath.Join(cfg.DataDir, "kafka")
		broker, err := kafkaembed.Start(kafkaembed.Config{Addr: cfg.KafkaEmbeddedAddr, DataDir: dir, Log: log})
		if err != nil {
			return cfg, stop, fmt.Errorf("start embedded Kafka (set KAFKA_BROKERS to use another): %w", err)
		}
		stops = append(stops, broker.Close)
		cfg.KafkaBrokers = broker.Brokers()
		// The embedded broker speaks plaintext; this process's clients reach it in memory.
		cfg.KafkaConn = kafkaconn.Config{Dial: broker.Dial}
		log.Info().Strs("brokers", cfg.KafkaBrokers).Str("data", dir).Msg("embedded Kafka started")
	}
	if cfg.DatabaseURL == "" {
		dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "pg"))
		if err != nil {
			return cfg, stop, err
		}
		cluster, err := pgembed.Start(ctx, pgembed.Config{DataDir: dir, Durable: true, Log: log})
		if err != nil {
			return cfg, stop, fmt.Errorf("start embedded Postgres (set DATABASE_URL to use another): %w", err)
		}
		stops = append(stops, func() {
			if err := cluster.Stop(context.WithoutCancel(ctx)); err != nil {
				log.Error().Err(err).Msg("stop embedded Postgres")
			}
		})
		cfg.DatabaseURL = cluster.URL("postgres")
		log.Info().Int("port", cluster.Port()).Str("data", dir).Msg("embedded Postgres started")
	}
	return cfg, stop, nil
}

// runAll runs every service in this process, starting embedded Kafka and Postgres when none is configured.
func runAll(ctx context.Context, cfg Config, stdout io.Writer) error {
	log := newLogger(cfg)
	log.Info().Fields(cfg.logFields()).Msg("starting choreo (all services)")
	embedded := len(cfg.KafkaBrokers) == 0 && cfg.DatabaseURL == ""
	cfg, stopEmbedded, err := startEmbedded(ctx, cfg, log)
	defer stopEmbedded()
	if err != nil {
		return err
	}
	if embedded {
		defer announceRunning(cfg, log)()
	}

	tracing, stopTracing, err := startTracing(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	sc := systemConfig(cfg)
	sc.Host.Tracing = tracing.Providers()
	if err := cfg.signingKey(&sc); err != nil {
		return err
	}
	if !sc.Auth.Enforced() && sc.Customer.Tokens.SigningKey == nil {
		// Open dev mode: POST /v1/tokens still issues tokens, signed with a secret of this start only,
		// and a token that is presented says who the caller is; requests without one stay open.
		dev := make([]byte, 32)
		if _, err := rand.Read(dev); err != nil {
			return fmt.Errorf("dev token secret: %w", err)
		}
		sc.Auth.HMACSecret, sc.Auth.Optional = hex.EncodeToString(dev), true
		sc.Customer.Tokens.HMACSecret = sc.Auth.HMACSecret
	}
	demo := ""
	if cfg.SeedCatalog {
		sc.Seed = inventory.DemoCatalog()
		pw := make([]byte, 9)
		if _, err := rand.Read(pw); err != nil {
			return fmt.Errorf("demo password: %w", err)
		}
		sc.DemoCustomer = &customer.Registration{Email: DemoEmail, Name: "Demo Customer", Password: base64.RawURLEncoding.EncodeToString(pw)}
		demo = fmt.Sprintf("  customer: %s, password %s (new at every start; POST /v1/tokens)\n", DemoEmail, sc.DemoCustomer.Password)
	}
	sys, err := system.Open(ctx, sc, log)
	if err != nil {
		return err
	}
	defer sys.Close()

	authNote := "  auth:     bearer tokens required: POST /v1/tokens with a customer's email and password\n"
	if !sys.Authenticated() {
		log.Warn().Msg("AUTHENTICATION IS OFF: anyone who reaches this address reads every order and places orders for any customer; set AUTH_HMAC_SECRET or AUTH_JWKS_URL to enforce it")
		authNote = "  auth:     OFF, the API is open to anyone who reaches it (set AUTH_HMAC_SECRET to enforce it);\n            tokens of POST /v1/tokens still count when sent\n"
	}
	authNote += demo
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan net.Addr, 1)
	g.Go(func() error { return httpapi.Serve(gctx, cfg.HTTPAddr, sys.Handler(), log, ready) })
	g.Go(func() error { return sys.Run(gctx) })
	select {
	case addr := <-ready:
		fmt.Fprintf(stdout, "\nchoreo is up: http://%s\n  console:  http://%[1]s/ui (flow, topics, messages, dead letters, sagas)\n  catalog:  curl -s http://%[1]s/v1/products\n  timeline: http://%[1]s/orders\n%s  Ctrl-C stops it.\n\n", addr, authNote)
	case <-gctx.Done():
	}
	err = g.Wait()
	log.Info().Msg("choreo stopped")
	return err
}

// runService runs one service (or the read model) against the configured Kafka and Postgres.
func runService(ctx context.Context, name string, cfg Config) error {
	log := newLogger(cfg) // host.Open adds the service's name to its lines
	log.Info().Str("service", name).Fields(cfg.logFields()).Msg("starting")
	if len(cfg.KafkaBrokers) == 0 || cfg.DatabaseURL == "" {
		return errors.New("KAFKA_BROKERS and DATABASE_URL are required (only `choreo run` embeds them)")
	}
	api := servesPublicAPI(name)
	if api {
		if err := cfg.requireAuth(name); err != nil {
			return err
		}
	}
	if err := cfg.kafkaAdmin().WaitReady(ctx); err != nil {
		return fmt.Errorf("wait for Kafka: %w", err)
	}
	if err := cfg.kafkaAdmin().EnsureTopics(ctx, system.Topics("", cfg.KafkaPartitions)...); err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	sc := systemConfig(cfg)
	if err := cfg.signingKey(&sc); err != nil {
		return err
	}
	var spec host.Spec
	for _, s := range system.Specs(sc) {
		if s.Name == name {
			spec = s
		}
	}
	reg, err := events.Catalog()
	if err != nil {
		return err
	}
	tracing, stopTracing, err := startTracing(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	unit, err := host.Open(ctx, spec, cfg.DatabaseURL, cfg.KafkaBrokers, reg, log, host.Options{Kafka: cfg.KafkaConn, Tracing: tracing.Providers(), Consumer: cfg.tuneConsumer})
	if err != nil {
		return err
	}
	defer unit.Close()
	mux := http.NewServeMux()
	unit.Routes(mux)
	httpapi.HealthRoutes(mux, unit.Check, cfg.kafkaAdmin().Ping())
	host.Metrics(mux, unit)
	// The ingress forwards the caller's token; the service verifies it again, so going around the
	// ingress gains nothing.
	authn, err := auth.New(ctx, sc.Auth, log)
	if err != nil {
		return err
	}
	defer authn.Close()
	if api && !authn.Enforced() {
		log.Warn().Msg("AUTH_DISABLED=true: this API answers anyone who reaches it")
	}
	g, gctx := errgroup.WithContext(ctx)
	handler := authn.Middleware(mux)
	if tracing != nil {
		handler = telemetry.HTTPHandler(handler, tracing.Provider(name))
	}
	g.Go(func() error { return httpapi.Serve(gctx, cfg.HTTPAddr, handler, log, nil) })
	g.Go(func() error { return unit.Run(gctx) })
	return g.Wait()
}

// startTracing sets up span export when OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set; nil
// tracing (no spans at all) otherwise. The returned function flushes what is buffered.
func startTracing(ctx context.Context, cfg Config, log zerolog.Logger) (*telemetry.Tracing, func(), error) {
	tc, err := cfg.telemetryConfig() // validated
	if err != nil {
		return nil, func() {}, err
	}
	tracing, err := telemetry.New(ctx, tc)
	if err != nil || tracing == nil {
		return nil, func() {}, err
	}
	log.Info().Msg("tracing: spans exported over OTLP/HTTP")
	return tracing, func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(ctx); err != nil {
			log.Warn().Err(err).Msg("flush spans")
		}
	}, nil
}

// servesPublicAPI reports whether `choreo command` serves (part of) the public API, so that it refuses to
// start without authentication configured or explicitly disabled.
func servesPublicAPI(command string) bool {
	return command == "ingress" || slices.Contains(system.APIs(), command)
}

func runIngress(ctx context.Context, cfg Config) error {
	log := newLogger(cfg).With().Str("service", "ingress").Logger()
	log.Info().Fields(cfg.logFields()).Msg("starting")
	if err := cfg.requireAuth("ingress"); err != nil {
		return err
	}
	authn, err := auth.New(ctx, cfg.authConfig(), log)
	if err != nil {
		return err
	}
	defer authn.Close()
	if !authn.Enforced() {
		log.Warn().Msg("AUTH_DISABLED=true: the API answers anyone who reaches it")
	}
	var limiter *ratelimit.Limiter
	if cfg.RateLimit > 0 {
		limiter = ratelimit.New(cfg.RateLimit)
	}
	guard := func(h http.Handler) http.Handler { return ingress.Guard(h, authn, limiter) }
	h, err := ingress.New(ingress.Upstreams{Order: cfg.OrderURL, OrderView: cfg.OrderViewURL, Inventory: cfg.InventoryURL, Customer: cfg.CustomerURL}, guard, log)
	if err != nil {
		return err
	}
	if len(cfg.KafkaBrokers) == 0 {
		log.Info().Msg("KAFKA_BROKERS is not set: no console under /ui")
		return httpapi.Serve(ctx, cfg.HTTPAddr, h, log, nil)
	}
	// The console reads Kafka itself and the read model through its API; redrive needs the services'
	// databases, so here it points at `choreo dlq SERVICE redrive`.
	orders, err := console.OrderViewAPI(cfg.OrderViewURL)
	if err != nil {
		return err
	}
	cc := console.Config{Brokers: cfg.KafkaBrokers, Kafka: cfg.KafkaConn, Orders: orders, OperatorToken: cfg.OperatorToken, Log: log}
	cc.Services = system.ConsoleServices(system.Specs(systemConfig(cfg)))
	con, err := console.New(cc)
	if err != nil {
		return err
	}
	defer con.Close()
	// The console answers behind the same guard as the API (h guards its own routes).
	consoleMux := http.NewServeMux()
	con.Routes(consoleMux)
	mux := http.NewServeMux()
	mux.Handle("/ui", guard(consoleMux))
	mux.Handle("/ui/", guard(consoleMux))
	mux.Handle("GET /{$}", consoleMux) // a redirect to /ui
	mux.Handle("/", h)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpapi.Serve(gctx, cfg.HTTPAddr, mux, log, nil) })
	g.Go(func() error { return con.Run(gctx) })
	return g.Wait()
}

func createTopics(ctx context.Context, cfg Config, stdout io.Writer) error {
	if len(cfg.KafkaBrokers) == 0 {
		return errors.New("KAFKA_BROKERS is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cfg.kafkaAdmin().WaitReady(ctx); err != nil {
		return err
	}
	topics := system.Topics("", cfg.KafkaPartitions)
	if err := cfg.kafkaAdmin().EnsureTopics(ctx, topics...); err != nil {
		return err
	}
	for _, t := range topics {
		fmt.Fprintf(stdout, "topic %-28s partitions %d\n", t.Name, t.Partitions)
	}
	return nil
}

// printTopics prints the topics createTopics would create, as JSON, without contacting Kafka.
func printTopics(cfg Config, stdout io.Writer) error {
	type topic struct {
		Name       string            `json:"name"`
		Partitions int               `json:"partitions"`
		Configs    map[string]string `json:"configs"`
	}
	var out []topic
	for _, t := range system.Topics("", cfg.KafkaPartitions) {
		out = append(out, topic{Name: t.Name, Partitions: t.Partitions, Configs: t.Configs})
	}
	return writeJSON(stdout, out)
}

// healthcheck GETs /healthz on this process's HTTP_ADDR (loopback when it listens on all interfaces).
func healthcheck(ctx context.Context, cfg Config) error {
	host, port, _ := net.SplitHostPort(cfg.HTTPAddr) // validated
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	return nil
}

// serviceDatabase resolves the database of one service for the maintenance commands: DATABASE_URL is that
// service's own database (as for `choreo <service>`); with neither DATABASE_URL nor KAFKA_BROKERS they
// work on the embedded data of `choreo run`: the running one's Kafka and Postgres when it runs (see
// runningFile), else the data started here.
func serviceDatabase(ctx context.Context, cfg Config, service string, log zerolog.Logger) (Config, string, func(), error) {
	embedded := cfg.DatabaseURL == "" && len(cfg.KafkaBrokers) == 0
	if !embedded && (cfg.DatabaseURL == "" || len(cfg.KafkaBrokers) == 0) {
		return cfg, "", func() {}, fmt.Errorf("set both KAFKA_BROKERS and DATABASE_URL (the %s database), or neither to use the embedded data of `choreo run`", service)
	}
	stop := func() {}
	if running, ok := attachRunning(ctx, cfg); embedded && ok {
		log.Info().Strs("brokers", running.KafkaBrokers).Msg("using the embedded Kafka and Postgres of the running `choreo run`")
		cfg = running
	} else {
		var err error
		if cfg, stop, err = startEmbedded(ctx, cfg, log); err != nil {
			return cfg, "", stop, err
		}
	}
	dbURL := cfg.DatabaseURL
	if embedded {
		var err error
		if dbURL, err = postgres.EnsureDatabase(ctx, cfg.DatabaseURL, service); err != nil {
			return cfg, "", stop, err
		}
	}
	return cfg, dbURL, stop, nil
}

// runningFile, in DATA_DIR, tells the maintenance commands where the embedded Kafka and Postgres of a
// running `choreo run` listen; it is removed when it stops.
const runningFile = "running.json"

type runningStack struct {
	KafkaBrokers []string `json:"kafka_brokers"`
	DatabaseURL  string   `json:"database_url"` // the embedded server's, which trusts local connections: no secret
}

// announceRunning writes runningFile for the embedded parts cfg uses, and returns its removal.
func announceRunning(cfg Config, log zerolog.Logger) func() {
	path := filepath.Join(cfg.DataDir, runningFile)
	b, _ := json.Marshal(runningStack{KafkaBrokers: cfg.KafkaBrokers, DatabaseURL: cfg.DatabaseURL}) // plain struct: cannot fail
	if err := os.WriteFile(path, b, 0o600); err != nil {
		log.Warn().Err(err).Msg("cannot tell maintenance commands where the embedded data runs")
		return func() {}
	}
	return func() { _ = os.Remove(path) }
}

// attachRunning returns cfg pointing at the embedded Kafka and Postgres of a running `choreo run`, if its
// runningFile is there and its Postgres answers.
func attachRunning(ctx context.Context, cfg Config) (Config, bool) {
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, runningFile))
	var rs runningStack
	if err != nil || json.Unmarshal(b, &rs) != nil || rs.DatabaseURL == "" || len(rs.KafkaBrokers) == 0 {
		return cfg, false
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, rs.DatabaseURL)
	if err != nil {
		return cfg, false // a stale file: the run it describes has ended
	}
	_ = conn.Close(ctx)
	cfg.KafkaBrokers, cfg.DatabaseURL, cfg.KafkaConn = rs.KafkaBrokers, rs.DatabaseURL, kafkaconn.Config{}
	return cfg, true
}

// deadLetters lists the dead letters of one service (`choreo dlq SERVICE`), or hands them back to it once
// their cause is fixed (`choreo dlq SERVICE redrive`); it lists the service's parked keys
// (`choreo dlq SERVICE parked`) and releases them (`choreo dlq SERVICE release KEY|--all`).
func deadLetters(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	usage := errors.New("usage: choreo dlq SERVICE [redrive | parked | release KEY | release --all]")
	if len(args) == 0 || len(args) > 3 {
		return usage
	}
	action := ""
	if len(args) > 1 {
		action = args[1]
	}
	switch {
	case action == "" || action == "redrive" || action == "parked":
		if len(args) > 2 {
			return usage
		}
	case action == "release":
		if len(args) != 3 {
			return usage
		}
	default:
		return usage
	}
	service := args[0]
	var spec *host.Spec
	for _, s := range system.Specs(systemConfig(cfg)) {
		if s.Name == service {
			spec = &s
		}
	}
	if spec == nil {
		return fmt.Errorf("no service %q", service)
	}
	log := newLogger(cfg)
	cfg, dbURL, stop, err := serviceDatabase(ctx, cfg, service, log)
	defer stop()
	if err != nil {
		return err
	}
	if action == "parked" || action == "release" {
		pool, err := postgres.Connect(ctx, dbURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		if action == "parked" {
			return listParked(ctx, pool, service, stdout)
		}
		return releaseParked(ctx, *spec, pool, args[2], log, stdout)
	}
	var redriver *consumer.Redriver
	if action == "redrive" {
		pool, err := postgres.Connect(ctx, dbURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		redriver = &consumer.Redriver{Brokers: cfg.KafkaBrokers, Conn: cfg.KafkaConn, Group: service, Pool: pool}
	}
	total := 0
	for _, topic := range spec.Consumes {
		dlq := topic + consumer.DLQSuffix
		show := func(d consumer.DeadLetter, redriven bool) {
			total++
			action := ""
			if redriver != nil {
				action = map[bool]string{true: "redriven  ", false: "not events"}[redriven] + " "
			}
			fmt.Fprintf(stdout, "%s%s  %-20s %-36s from %s: %s\n", action, d.At.Format(time.DateTime), d.EventType, d.EventID, d.Origin, d.Error)
		}
		if redriver != nil {
			if _, err := redriver.Redrive(ctx, dlq, show); err != nil {
				return err
			}
			continue
		}
		letters, err := consumer.ListDeadLetters(ctx, cfg.KafkaBrokers, cfg.KafkaConn, dlq)
		if err != nil {
			return err
		}
		for _, d := range letters {
			if d.Consumer == service {
				show(d, false)
			}
		}
	}
	fmt.Fprintf(stdout, "%d dead letters of %s\n", total, service)
	return nil
}

// listParked prints the events service's consumer parked, key by key in the order they will be applied.
func listParked(ctx context.Context, pool *pgxpool.Pool, service string, stdout io.Writer) error {
	parked, err := consumer.ListParked(ctx, pool, service)
	if err != nil {
		return err
	}
	keys := map[string]bool{}
	for _, p := range parked {
		keys[p.Key] = true
		fmt.Fprintf(stdout, "%-36s %s  %-20s %-36s from %s: %s\n", p.Key, p.At.Format(time.DateTime), p.EventType, p.EventID, p.Origin, p.Reason)
	}
	fmt.Fprintf(stdout, "%d parked events of %d keys in %s\n", len(parked), len(keys), service)
	return nil
}

// releaseParked applies the parked events of key (every key for "--all") through the service's handlers.
func releaseParked(ctx context.Context, spec host.Spec, pool *pgxpool.Pool, key string, log zerolog.Logger, stdout io.Writer) error {
	reg, err := events.Catalog()
	if err != nil {
		return err
	}
	svc, err := spec.Build(host.Deps{Pool: pool, Log: log, Topic: spec.Topic})
	if err != nil {
		return fmt.Errorf("build %s: %w", spec.Name, err)
	}
	router := consumer.NewRouter(reg)
	svc.Handlers(router)
	releaser := consumer.Releaser{Group: spec.Name, Pool: pool, Router: router, Log: log}
	var results []consumer.Released
	if key == "--all" {
		results, err = releaser.ReleaseAll(ctx)
	} else {
		var res consumer.Released
		res, err = releaser.Release(ctx, key)
		results = append(results, res)
	}
	failed := 0
	for _, r := range results {
		fmt.Fprintf(stdout, "%-36s applied %d (dead-lettered %d), still parked %d", r.Key, r.Applied, r.DeadLettered, r.Remaining)
		if r.Err != nil {
			failed++
			fmt.Fprintf(stdout, ": %v", r.Err)
		}
		fmt.Fprintln(stdout)
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d keys failed again and stay parked", failed, len(results))
	}
	return nil
}

func printSaga(stdout io.Writer) error {
	_, err := io.WriteString(stdout, sagas.Markdown())
	return err
}
