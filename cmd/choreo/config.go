package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
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
	NotifyDomain      string
	OperatorToken     string
	OrderURL          string
	OrderViewURL      string
	InventoryURL      string
	KafkaTLS          bool
	KafkaTLSCAFile    string
	KafkaTLSCertFile  string
	KafkaTLSKeyFile   string
	KafkaSASLMech     string
	KafkaSASLUser     string
	KafkaSASLPassword string

	// KafkaConn is the TLS and SASL the KAFKA_TLS* and KAFKA_SASL* settings describe, built once by
	// loadConfig and used by every Kafka client of the process.
	KafkaConn kafkaconn.Config

	effective map[string]string // the final text of every setting, for the start-up log
}

// setting is one environment variable (and its flag) of Config.
type setting struct {
	env, def, usage string
	secret          bool
	set             func(c *Config, v string) error
}

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

// settings lists every variable the binary reads; the deployment tests check manifests against it.
func settings() []setting {
	return []setting{
		{"KAFKA_BROKERS", "", "comma-separated Kafka bootstrap brokers; empty with `choreo run`: embedded broker on 127.0.0.1:9092", false, list(func(c *Config) *[]string { return &c.KafkaBrokers })},
		{"DATABASE_URL", "", "Postgres URL: the service's own database; with `choreo run` a server on which one database per service is created (empty: embedded cluster)", true, str(func(c *Config) *string { return &c.DatabaseURL })},
		{"HTTP_ADDR", "127.0.0.1:8080", "address the HTTP API, /healthz and /readyz listen on", false, str(func(c *Config) *string { return &c.HTTPAddr })},
		{"LOG_LEVEL", "info", "debug, info, warn or error", false, str(func(c *Config) *string { return &c.LogLevel })},
		{"LOG_FORMAT", "auto", "json, console, or auto (console on a terminal)", false, str(func(c *Config) *string { return &c.LogFormat })},
		{"KAFKA_PARTITIONS", "6", "partitions of each events topic when choreo creates it", false, func(c *Config, v string) (err error) { c.KafkaPartitions, err = strconv.Atoi(v); return }},
		{"KAFKA_EMBEDDED_ADDR", "127.0.0.1:9092", "where the embedded broker listens when KAFKA_BROKERS is empty (`choreo run`)", false, str(func(c *Config) *string { return &c.KafkaEmbeddedAddr })},
		{"DATA_DIR", ".data", "where `choreo run` keeps the embedded Kafka and Postgres data", false, str(func(c *Config) *string { return &c.DataDir })},
		{"SEED_CATALOG", "true", "`choreo run` adds the demo catalog if missing", false, func(c *Config, v string) (err error) { c.SeedCatalog, err = strconv.ParseBool(v); return }},
		{"SAGA_DEADLINE", "5m", "how long an order may stay PENDING before it is cancelled as expired", false, func(c *Config, v string) (err error) { c.SagaDeadline, err = time.ParseDuration(v); return }},
		{"PAYMENT_LIMIT_CENTS", "1000000", "default authorization limit per order total, in cents", false, func(c *Config, v string) (err error) { c.PaymentLimitCents, err = strconv.ParseInt(v, 10, 64); return }},
		{"SHIPPING_COUNTRIES", "US,CA,GB,DE,FR,NL,SE,JP,AU", "ISO country codes shipping delivers to (XX never)", false, list(func(c *Config) *[]string { return &c.ShippingCountries })},
		{"SMTP_ADDR", "", "SMTP server host:port; empty: notifications are recorded and logged", false, str(func(c *Config) *string { return &c.SMTPAddr })},
		{"SMTP_FROM", "orders@choreo.local", "sender address of notifications", false, str(func(c *Config) *string { return &c.SMTPFrom })},
		{"SMTP_USERNAME", "", "SMTP user", false, str(func(c *Config) *string { return &c.SMTPUsername })},
		{"SMTP_PASSWORD", "", "SMTP password", true, str(func(c *Config) *string { return &c.SMTPPassword })},
		{"NOTIFY_DOMAIN", "customers.invalid", "mail domain for customer ids that are not addresses", false, str(func(c *Config) *string { return &c.NotifyDomain })},
		{"OPERATOR_TOKEN", "", "when set, PUT /v1/products needs Authorization: Bearer <token>", true, str(func(c *Config) *string { return &c.OperatorToken })},
		{"ORDER_URL", "http://127.0.0.1:8081", "ingress: base URL of the order service", false, str(func(c *Config) *string { return &c.OrderURL })},
		{"ORDERVIEW_URL", "http://127.0.0.1:8086", "ingress: base URL of the order read model", false, str(func(c *Config) *string { return &c.OrderViewURL })},
		{"INVENTORY_URL", "http://127.0.0.1:8082", "ingress: base URL of the inventory service", false, str(func(c *Config) *string { return &c.InventoryURL })},
		{"KAFKA_TLS", "false", "connect to Kafka over TLS", false, func(c *Config, v string) (err error) { c.KafkaTLS, err = strconv.ParseBool(v); return }},
		{"KAFKA_TLS_CA_FILE", "", "PEM CA certificates the brokers are verified with (empty: the system's)", false, str(func(c *Config) *string { return &c.KafkaTLSCAFile })},
		{"KAFKA_TLS_CERT_FILE", "", "PEM client certificate, for brokers that authenticate clients by TLS", false, str(func(c *Config) *string { return &c.KafkaTLSCertFile })},
		{"KAFKA_TLS_KEY_FILE", "", "PEM private key of KAFKA_TLS_CERT_FILE", false, str(func(c *Config) *string { return &c.KafkaTLSKeyFile })},
		{"KAFKA_SASL_MECHANISM", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL", false, str(func(c *Config) *string { return &c.KafkaSASLMech })},
		{"KAFKA_SASL_USERNAME", "", "SASL user", false, str(func(c *Config) *string { return &c.KafkaSASLUser })},
		{"KAFKA_SASL_PASSWORD", "", "SASL password", true, str(func(c *Config) *string { return &c.KafkaSASLPassword })},
	}
}

// flagName turns KAFKA_BROKERS into kafka-brokers.
func flagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// loadConfig reads defaults, then the environment, then flags from args.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	c := Config{effective: map[string]string{}}
	for _, s := range settings() {
		v := s.def
		if e := getenv(s.env); e != "" {
			v = e
		}
		if err := s.set(&c, v); err != nil {
			return Config{}, fmt.Errorf("%s=%q: %w", s.env, v, err)
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
	if err := c.Validate(); err != nil {
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
	return errors.Join(errs...)
}

// logFields returns the effective config for the start-up log line, secrets masked.
func (c Config) logFields() map[string]any {
	fields := map[string]any{}
	for _, s := range settings() {
		v := c.effective[s.env]
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
