package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/telemetry"
)

// Config is every setting of every choreo command, read from the environment and overridable by flags.
type Config struct {
	KafkaBrokers      []string
	DatabaseURL       string
	HTTPAddr          string
	LogLevel          string
	LogFormat         string
	KafkaPartitions   int
	DataDir           string
	KafkaEmbeddedAddr string
	SeedCatalog       bool
	SagaDeadline      time.Duration
	PaymentLimitCents int64
	ShippingCountries []string
	SMTPAddr          string
	SMTPFrom          string
	SMTPUsername      string
	SMTPPassword      string
	OperatorToken     string
	OrderURL          string
	OrderViewURL      string
	InventoryURL      string
	CustomerURL       string
	AuthSigningKey    string
	AuthTokenTTL      time.Duration
	AuthHMACSecret    string
	AuthJWKSURL       string
	AuthIssuer        string
	AuthAudience      string
	AuthDisabled      bool
	RateLimit         float64
	ApplyInterval     time.Duration
	Linger            time.Duration
	KafkaTLS          bool
	KafkaTLSCAFile    string
	KafkaTLSCertFile  string
	KafkaTLSKeyFile   string
	KafkaSASLMech     string
	KafkaSASLUser     string
	KafkaSASLPassword string
	OTLPEndpoint      string
	OTLPTraces        string
	OTLPHeaders       string

	// KafkaConn is the TLS and SASL the KAFKA_TLS* and KAFKA_SASL* settings describe, built once by
	// loadConfig and used by every Kafka client of the process.
	KafkaConn kafkaconn.Config

	effective map[string]string // the final text of every setting, for the start-up log
}

// setting is one environment variable (and its flag) of Config.
type setting struct {
	env, def, usage string
	secret          bool
	// readBy names the commands that read it; anyService stands for every hosted unit of system.Specs.
	readBy []string
	set    func(c *Config, v string) error
}

// anyService in a setting's readBy stands for every command that hosts one unit (system.Specs).
const anyService = "SERVICE"

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

func list(dst func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*dst(c) = out
		return nil
	}
}

// settings lists every variable the binary reads and which commands read it; `choreo help -json`
// publishes it, and the deployment checks (deploy/) judge manifests against it.
func settings() []setting {
	var (
		brokers  = []string{"run", anyService, "topics", "replay", "dlq", "load", "ingress"}
		database = []string{"run", anyService, "replay", "dlq"}
		listen   = []string{"run", anyService, "ingress", "healthcheck"}
		logs     = []string{"run", anyService, "ingress", "replay", "dlq"}
		topics   = []string{"run", anyService, "topics"}
		embedded = []string{"run", "replay", "dlq"}
		runOnly  = []string{"run"}
		// A service's own settings: its command, and `choreo run`, which hosts every service.
		order        = []string{"run", "order"}
		payment      = []string{"run", "payment"}
		shipping     = []string{"run", "shipping"}
		notification = []string{"run", "notification"}
		customer     = []string{"run", "customer"}
		ingress      = []string{"ingress"}
		// Authentication: every process that serves the public API, and `choreo token`, which signs.
		verify    = []string{"run", "ingress", "order", "orderview", "inventory", "customer"}
		operator  = []string{"run", "ingress", "order", "orderview", "inventory", "customer", "load"}
		authz     = []string{"run", "ingress", "order", "orderview", "inventory", "customer", "token"}
		frontDoor = []string{"run", "ingress"}
		// TLS and SASL to Kafka: every process whose Kafka clients are built from them.
		kafkaClients = []string{"run", anyService, "topics", "replay", "dlq", "ingress"}
		// OpenTelemetry: the processes that record spans (the HTTP API, handlers, relay publishes).
		tracing = []string{"run", anyService}
		// Consumer tuning: every process that applies events.
		consumers = []string{"run", anyService}
	)
	return []setting{
		{"KAFKA_BROKERS", "", "comma-separated Kafka bootstrap brokers; empty under 'choreo run': embedded broker on 127.0.0.1:9092", false, brokers, list(func(c *Config) *[]string { return &c.KafkaBrokers })},
		{"DATABASE_URL", "", "Postgres URL: the service's own database; under 'choreo run' a server on which one database per service is created (empty: embedded cluster)", true, database, str(func(c *Config) *string { return &c.DatabaseURL })},
		{"HTTP_ADDR", "127.0.0.1:8080", "address the HTTP API, /healthz and /readyz listen on", false, listen, str(func(c *Config) *string { return &c.HTTPAddr })},
		{"LOG_LEVEL", "info", "debug, info, warn or error", false, logs, str(func(c *Config) *string { return &c.LogLevel })},
		{"LOG_FORMAT", "auto", "json, console, or auto (console on a terminal)", false, logs, str(func(c *Config) *string { return &c.LogFormat })},
		{"KAFKA_PARTITIONS", "6", "partitions of each events topic when choreo creates it", false, topics, func(c *Config, v string) (err error) { c.KafkaPartitions, err = strconv.Atoi(v); return }},
		{"DATA_DIR", ".data", "where 'choreo run' keeps the embedded Kafka and Postgres data", false, embedded, str(func(c *Config) *string { return &c.DataDir })},
		{"SEED_CATALOG", "true", "'choreo run' adds the demo catalog if missing", false, runOnly, func(c *Config, v string) (err error) { c.SeedCatalog, err = strconv.ParseBool(v); return }},
		{"SAGA_DEADLINE", "5m", "how long an order may stay PENDING before it is cancelled as expired", false, order, func(c *Config, v string) (err error) { c.SagaDeadline, err = time.ParseDuration(v); return }},
		{"PAYMENT_LIMIT_CENTS", "1000000", "default authorization limit per order total, in cents", false, payment, func(c *Config, v string) (err error) { c.PaymentLimitCents, err = strconv.ParseInt(v, 10, 64); return }},
		{"SHIPPING_COUNTRIES", "US,CA,GB,DE,FR,NL,SE,JP,AU", "ISO country codes shipping delivers to (XX never)", false, shipping, list(func(c *Config) *[]string { return &c.ShippingCountries })},
		{"SMTP_ADDR", "", "SMTP server host:port; empty: notifications are recorded and logged", false, notification, str(func(c *Config) *string { return &c.SMTPAddr })},
		{"SMTP_FROM", "orders@choreo.local", "sender address of notifications", false, notification, str(func(c *Config) *string { return &c.SMTPFrom })},
		{"SMTP_USERNAME", "", "SMTP user", false, notification, str(func(c *Config) *string { return &c.SMTPUsername })},
		{"SMTP_PASSWORD", "", "SMTP password", true, notification, str(func(c *Config) *string { return &c.SMTPPassword })},
		{"OPERATOR_TOKEN", "", "a static bearer token that acts as an operator (catalog changes, every order); with no AUTH_* key source it still guards PUT /v1/products and the console's redrive; choreo load seeds its products with it", true, operator, str(func(c *Config) *string { return &c.OperatorToken })},
		{"ORDER_URL", "http://127.0.0.1:8081", "base URL of the order service", false, ingress, str(func(c *Config) *string { return &c.OrderURL })},
		{"ORDERVIEW_URL", "http://127.0.0.1:8086", "base URL of the order read model", false, ingress, str(func(c *Config) *string { return &c.OrderViewURL })},
		{"INVENTORY_URL", "http://127.0.0.1:8082", "base URL of the inventory service", false, ingress, str(func(c *Config) *string { return &c.InventoryURL })},
		{"CUSTOMER_URL", "http://127.0.0.1:8087", "base URL of the customer service", false, ingress, str(func(c *Config) *string { return &c.CustomerURL })},
		{"AUTH_SIGNING_KEY_FILE", "", "PEM private key (RSA 2048+ or EC P-256) the customer service signs tokens with (RS256/ES256) instead of AUTH_HMAC_SECRET; its public half is served at /.well-known/jwks.json", false, customer, str(func(c *Config) *string { return &c.AuthSigningKey })},
		{"AUTH_TOKEN_TTL", "1h", "how long the access tokens of POST /v1/tokens are valid", false, customer, func(c *Config, v string) (err error) { c.AuthTokenTTL, err = time.ParseDuration(v); return }},
		{"AUTH_HMAC_SECRET", "", "verify HS256 bearer JWTs with this secret (at least 32 characters)", true, authz, str(func(c *Config) *string { return &c.AuthHMACSecret })},
		{"AUTH_JWKS_URL", "", "verify RS256/ES256 bearer JWTs with the keys of this JWK Set (cached, refreshed hourly and on an unknown key id)", false, verify, str(func(c *Config) *string { return &c.AuthJWKSURL })},
		{"AUTH_ISSUER", "", "when set, a token's iss must equal it", false, authz, str(func(c *Config) *string { return &c.AuthIssuer })},
		{"AUTH_AUDIENCE", "", "when set, a token's aud must contain it", false, authz, str(func(c *Config) *string { return &c.AuthAudience })},
		{"AUTH_DISABLED", "false", "true: serve the API without authentication (ingress and API services refuse to start with neither this nor a key source)", false, verify, func(c *Config, v string) (err error) { c.AuthDisabled, err = strconv.ParseBool(v); return }},
		{"RATE_LIMIT_PER_CLIENT", "", "orders a second each client may place (per token subject, else per address); empty: no limit", false, frontDoor, func(c *Config, v string) (err error) {
			if v != "" {
				c.RateLimit, err = strconv.ParseFloat(v, 64)
			}
			return
		}},
		{"CONSUMER_APPLY_INTERVAL", "0s", "least time between two transactions of a service's consumer: under load the events of an interval share one (fewer commits, relay reads and Kafka requests), each hop may wait that long; 0: apply at once", false, consumers, func(c *Config, v string) (err error) { c.ApplyInterval, err = time.ParseDuration(v); return }},
		{"CONSUMER_LINGER", "100ms", "how long a service's events off the saga's critical path (records a later step reads, reactions to an order's outcome, the events a step needs all of but the last) may wait for others to share their transaction; the first event on the path ends the wait; 0: none", false, consumers, func(c *Config, v string) (err error) { c.Linger, err = time.ParseDuration(v); return }},
		{"KAFKA_EMBEDDED_ADDR", "127.0.0.1:9092", "where the embedded broker listens when KAFKA_BROKERS is empty ('choreo run')", false, embedded, str(func(c *Config) *string { return &c.KafkaEmbeddedAddr })},
		{"KAFKA_TLS", "false", "connect to Kafka over TLS", false, kafkaClients, func(c *Config, v string) (err error) { c.KafkaTLS, err = strconv.ParseBool(v); return }},
		{"KAFKA_TLS_CA_FILE", "", "PEM CA certificates the brokers are verified with (empty: the system's)", false, kafkaClients, str(func(c *Config) *string { return &c.KafkaTLSCAFile })},
		{"KAFKA_TLS_CERT_FILE", "", "PEM client certificate, for brokers that authenticate clients by TLS", false, kafkaClients, str(func(c *Config) *string { return &c.KafkaTLSCertFile })},
		{"KAFKA_TLS_KEY_FILE", "", "PEM private key of KAFKA_TLS_CERT_FILE", false, kafkaClients, str(func(c *Config) *string { return &c.KafkaTLSKeyFile })},
		{"KAFKA_SASL_MECHANISM", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL", false, kafkaClients, str(func(c *Config) *string { return &c.KafkaSASLMech })},
		{"KAFKA_SASL_USERNAME", "", "SASL user", false, kafkaClients, str(func(c *Config) *string { return &c.KafkaSASLUser })},
		{"KAFKA_SASL_PASSWORD", "", "SASL password", true, kafkaClients, str(func(c *Config) *string { return &c.KafkaSASLPassword })},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "", "OTLP/HTTP endpoint spans are exported to (e.g. http://jaeger:4318; traces go to its /v1/traces); empty: no tracing", false, tracing, str(func(c *Config) *string { return &c.OTLPEndpoint })},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "full OTLP/HTTP URL for traces; wins over OTEL_EXPORTER_OTLP_ENDPOINT", false, tracing, str(func(c *Config) *string { return &c.OTLPTraces })},
		{"OTEL_EXPORTER_OTLP_HEADERS", "", "headers sent with every export: key=value,key2=value2 (values URL-encoded), e.g. a hosted backend's API key", true, tracing, str(func(c *Config) *string { return &c.OTLPHeaders })},
	}
}

// flagName turns KAFKA_BROKERS into kafka-brokers.
func flagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// loadConfig reads the settings cmd reads: defaults, then the environment, then flags from args. Every
// other setting keeps its default, and has no flag.
func loadConfig(fs *flag.FlagSet, cmd command, args []string, getenv func(string) string) (Config, error) {
	c := Config{effective: map[string]string{}}
	// Defaults first, so that the settings cmd does not read hold valid values.
	for _, s := range settings() {
		if err := s.set(&c, s.def); err != nil {
			return Config{}, fmt.Errorf("default of %s: %w", s.env, err)
		}
	}
	var errs []error
	for _, s := range settings() {
		if !cmd.reads(s) {
			continue
		}
		v := s.def
		if e := getenv(s.env); e != "" {
			v = e
		}
		if err := s.set(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", s.env, v, err))
			_ = s.set(&c, s.def) // so that Validate judges the other settings, not this one again
		}
		c.effective[s.env] = v
		fs.Func(flagName(s.env), s.usage+" (env "+s.env+")", func(v string) error {
			c.effective[s.env] = v
			return s.set(&c, v)
		})
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if err := errors.Join(append(errs, c.Validate())...); err != nil {
		return Config{}, err
	}
	kc, err := kafkaconn.New(kafkaconn.Settings{TLS: c.KafkaTLS, CAFile: c.KafkaTLSCAFile, CertFile: c.KafkaTLSCertFile,
		KeyFile: c.KafkaTLSKeyFile, SASLMech: c.KafkaSASLMech, SASLUser: c.KafkaSASLUser, SASLPassword: c.KafkaSASLPassword})
	if err != nil {
		return Config{}, fmt.Errorf("kafka connection: %w", err)
	}
	c.KafkaConn = kc
	return c, nil
}

// kafkaAdmin administers the configured Kafka cluster with the configured TLS and SASL.
func (c Config) kafkaAdmin() kafkaadmin.Admin {
	return kafkaadmin.Admin{Brokers: c.KafkaBrokers, Conn: c.KafkaConn}
}

// Validate checks the settings every command relies on.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("HTTP_ADDR %q: %w", c.HTTPAddr, err))
	}
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL %q: %w", c.LogLevel, err))
	}
	switch c.LogFormat {
	case "auto", "json", "console":
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT %q: want auto, json or console", c.LogFormat))
	}
	if c.KafkaPartitions < 1 {
		errs = append(errs, errors.New("KAFKA_PARTITIONS must be at least 1"))
	}
	if c.ApplyInterval < 0 {
		errs = append(errs, errors.New("CONSUMER_APPLY_INTERVAL must not be negative"))
	}
	if c.Linger < 0 {
		errs = append(errs, errors.New("CONSUMER_LINGER must not be negative"))
	}
	if c.SagaDeadline <= 0 {
		errs = append(errs, errors.New("SAGA_DEADLINE must be positive"))
	}
	if c.PaymentLimitCents < 0 {
		errs = append(errs, errors.New("PAYMENT_LIMIT_CENTS must not be negative"))
	}
	if len(c.ShippingCountries) == 0 {
		errs = append(errs, errors.New("SHIPPING_COUNTRIES must name at least one country"))
	}
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			errs = append(errs, errors.New("DATABASE_URL must be a postgres:// URL"))
		}
	}
	if err := c.authConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("AUTH_*: %w", err))
	}
	if c.AuthTokenTTL <= 0 {
		errs = append(errs, errors.New("AUTH_TOKEN_TTL must be positive"))
	}
	if c.AuthSigningKey != "" && c.AuthHMACSecret != "" {
		errs = append(errs, errors.New("AUTH_SIGNING_KEY_FILE and AUTH_HMAC_SECRET: tokens are signed with one or the other; set one"))
	}
	if c.AuthDisabled && c.authConfig().Enforced() {
		errs = append(errs, errors.New("AUTH_DISABLED=true contradicts AUTH_HMAC_SECRET/AUTH_JWKS_URL; set one or the other"))
	}
	if _, err := c.telemetryConfig(); err != nil {
		errs = append(errs, err)
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		errs = append(errs, errors.New("RATE_LIMIT_PER_CLIENT must be a positive number of orders a second"))
	}
	return errors.Join(errs...)
}

// checkConfig is `choreo config COMMAND [flags]`: it reads the environment and flags as COMMAND would and
// prints COMMAND's effective settings as JSON, secrets masked; or it fails with everything that is wrong: a
// value COMMAND rejects, a setting it needs but is unset, a setting it does not read but is set (a setting
// meant for another command, or a typo of scope).
func checkConfig(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: choreo config COMMAND [flags]")
	}
	cmd, ok := lookupCommand(args[0])
	if !ok || cmd.own != nil {
		return fmt.Errorf("config: %q is no command that reads settings; run 'choreo help'", args[0])
	}
	cfg, err := loadConfig(flagSet(cmd, stderr, getenv), cmd, args[1:], getenv)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range settings() {
		if !cmd.reads(s) && getenv(s.env) != "" {
			errs = append(errs, fmt.Errorf("%s is set, but 'choreo %s' does not read it", s.env, cmd.name))
		}
	}
	if err == nil && servesPublicAPI(cmd.name) {
		if aerr := cfg.requireAuth(cmd.name); aerr != nil {
			errs = append(errs, aerr)
		}
	}
	for _, need := range cmd.needs {
		v := getenv(need)
		if err == nil {
			v = cfg.effective[need] // a flag may have set it
		}
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is unset, and 'choreo %s' refuses to start without it", need, cmd.name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config %s: %w", cmd.name, errors.Join(errs...))
	}
	return writeJSON(stdout, cfg.logFields())
}

// logFields returns the effective settings of the command for the start-up log line, secrets masked.

// authConfig maps the AUTH_* settings and OPERATOR_TOKEN onto internal/auth.
func (c Config) authConfig() auth.Config {
	return auth.Config{HMACSecret: c.AuthHMACSecret, JWKSURL: c.AuthJWKSURL, Issuer: c.AuthIssuer, Audience: c.AuthAudience, OperatorToken: c.OperatorToken}
}

// telemetryConfig maps the OTEL_EXPORTER_OTLP_* settings onto internal/telemetry.
func (c Config) telemetryConfig() (telemetry.Config, error) {
	headers, err := telemetry.ParseHeaders(c.OTLPHeaders)
	if err != nil {
		return telemetry.Config{}, fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %w", err)
	}
	tc := telemetry.Config{Endpoint: c.OTLPEndpoint, TracesEndpoint: c.OTLPTraces, Headers: headers}
	return tc, tc.Validate()
}

// requireAuth is the check of the production commands that serve the public API: authentication is
// configured, or explicitly switched off.
func (c Config) requireAuth(command string) error {
	if c.authConfig().Enforced() || c.AuthDisabled || (command == "customer" && c.AuthSigningKey != "") {
		return nil
	}
	return fmt.Errorf("`choreo %s` serves the public API: set AUTH_HMAC_SECRET or AUTH_JWKS_URL, or AUTH_DISABLED=true to run it open on purpose", command)
}

func (c Config) logFields() map[string]any {
	fields := map[string]any{}
	for _, s := range settings() {
		v, ok := c.effective[s.env]
		if !ok {
			continue // not read by this command
		}
		if s.secret && v != "" {
			v = mask(s.env, v)
		}
		fields[s.env] = v
	}
	return fields
}

// mask hides a secret: a database URL keeps everything but its passwords, anything else becomes "***".
func mask(env, v string) string {
	if env == "DATABASE_URL" {
		return postgres.Redact(v)
	}
	return "***"
}

// newLogger builds the process's one logger.
func newLogger(c Config) zerolog.Logger {
	level, _ := zerolog.ParseLevel(c.LogLevel) // validated
	log := zerolog.New(os.Stderr)
	if c.LogFormat == "console" || (c.LogFormat == "auto" && isTerminal(os.Stderr)) {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly})
	}
	return log.Level(level).With().Timestamp().Logger()
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
