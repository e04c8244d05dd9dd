// Package customer is the customer service: it registers customers (email, name, argon2id-hashed
// password), exchanges their credentials for access tokens (JWTs signed with the API's HMAC secret, or
// with a private key whose public half it publishes as a JWK Set), lets them read and change their own
// record and lets operators set credit limits and block them. Every change goes out as an event through
// its outbox, so the services that need a customer's address or limit keep their own copy.
//
// In the order saga it checks, on order.placed, that the order's customer exists and is not blocked, and
// answers customer.approved or customer.rejected, in parallel with inventory's reservation.
package customer

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/outbox"
	"github.com/choreo-dev/choreo/sagas"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Config configures the customer service.
type Config struct {
	Tokens   TokenConfig
	Password PasswordParams // zero: DefaultPasswordParams
}

// Spec describes the customer service to the host.
func Spec(cfg Config) host.Spec {
	return host.Spec{
		Name:       sagas.Customer,
		Doc:        "the customer service: registration, tokens, credit limits, blocks",
		Topic:      sagas.Topic(sagas.Customer),
		Consumes:   sagas.Subscriptions(sagas.Customer),
		Migrations: migrationFiles,
		Build:      func(d host.Deps) (host.Service, error) { return New(cfg, d.Pool, d.Topic, d.Log) },
	}
}

// Service is the customer service.
type Service struct {
	pool     *pgxpool.Pool
	emit     outbox.Emitter
	log      zerolog.Logger
	signer   *signer // nil: no tokens are issued
	params   PasswordParams
	dummy    string        // a hash to check unknown emails against, so they take as long as known ones
	hashing  chan struct{} // bounds concurrent password hashes (each takes params.MemoryKiB)
	failures *throttle
	clock    func() time.Time
}

// New returns the customer service over pool, publishing to topic.
func New(cfg Config, pool *pgxpool.Pool, topic string, log zerolog.Logger) (*Service, error) {
	sig, err := newSigner(cfg.Tokens)
	if err != nil {
		return nil, err
	}
	params := cfg.Password.orDefault()
	dummy, err := hashPassword("no customer has this password", params)
	if err != nil {
		return nil, err
	}
	return &Service{
		pool: pool, log: log, signer: sig, params: params, dummy: dummy,
		emit:     outbox.Emitter{Source: sagas.Customer, Topic: topic},
		hashing:  make(chan struct{}, 2*runtime.GOMAXPROCS(0)),
		failures: newThrottle(),
		clock:    time.Now,
	}, nil
}

// Handlers registers the check of each order's customer.
func (s *Service) Handlers(r *consumer.Router) {
	consumer.On(r, s.approve)
}

// Routes registers the customer API, the token endpoint and the JWK Set.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/customers", s.handleRegister)
	mux.HandleFunc("POST /v1/tokens", s.handleToken)
	mux.HandleFunc("GET /.well-known/jwks.json", s.handleJWKS)
	mux.HandleFunc("GET /v1/customers/me", s.handleGetMe)
	mux.HandleFunc("PATCH /v1/customers/me", s.handlePatchMe)
	mux.HandleFunc("GET /v1/customers/{id}", s.handleGet)
	mux.HandleFunc("PUT /v1/customers/{id}/credit-limit", s.handleCreditLimit)
	mux.HandleFunc("POST /v1/customers/{id}/block", s.handleBlock(true))
	mux.HandleFunc("POST /v1/customers/{id}/unblock", s.handleBlock(false))
}

// IssuesTokens reports whether POST /v1/tokens has a key to sign with.
func (s *Service) IssuesTokens() bool { return s.signer != nil }

// hash hashes password, waiting for a hashing slot.
func (s *Service) hash(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer func() { <-s.hashing }()
	return hashPassword(password, s.params)
}

// check compares password with encoded, waiting for a hashing slot.
func (s *Service) check(ctx context.Context, password, encoded string) (bool, error) {
	if err := s.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-s.hashing }()
	return checkPassword(password, encoded)
}

func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait to hash a password: %w", ctx.Err())
	}
}

// Errors of the store, translated by the HTTP handlers.
var (
	ErrEmailTaken = errors.New("email already registered")
	ErrNotFound   = errors.New("no such customer")
)
