// Package servicetest helps test one service's event handlers against its real database: it migrates a
// fresh database the way the host does, applies events through the service's own routes in a transaction
// each, and reads back what the service appended to its outbox.
package servicetest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// Service is a service built on a fresh, migrated database.
type Service struct {
	t      testing.TB
	Pool   *pgxpool.Pool
	Unit   *host.Unit // the hosted service, for its HTTP routes (not run: no relay, no consumer)
	router *consumer.Router
}

// New migrates a fresh database for spec and builds the service on it.
func New(t testing.TB, spec host.Spec) *Service {
	t.Helper()
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	u, err := host.Open(context.Background(), spec, testenv.DatabaseURL(t), testenv.Kafka(t), reg, testenv.Logger(t), host.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	router := consumer.NewRouter(reg)
	u.Service().Handlers(router)
	return &Service{t: t, Pool: u.Pool(), Unit: u, router: router}
}

// Apply runs the handlers for es in one committed transaction, as the consumer runtime would a batch of
// them (one event: a batch of one).
func (s *Service) Apply(es ...events.Envelope) {
	s.t.Helper()
	ctx := context.Background()
	tx, err := s.Pool.Begin(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	routed, err := s.router.Dispatch(ctx, tx, es...)
	if !routed {
		s.t.Fatalf("the service does not handle one of %d events", len(es))
	}
	if err != nil {
		s.t.Fatalf("apply %d events: %v", len(es), err)
	}
	if err := tx.Commit(ctx); err != nil {
		s.t.Fatal(err)
	}
}

// Emitted lists the types of the events the service appended to its outbox, in order.
func (s *Service) Emitted() []string {
	s.t.Helper()
	rows, err := s.Pool.Query(context.Background(), `
		SELECT convert_from(header_values[array_position(header_keys, 'ce_type')], 'UTF8') FROM outbox
		WHERE 'ce_type' = ANY(header_keys) ORDER BY id`)
	if err != nil {
		s.t.Fatal(err)
	}
	types, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.t.Fatal(err)
	}
	return types
}

// Event builds an envelope for p about subject from source.
func Event(t testing.TB, source, subject string, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New(source, subject, p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Permutations returns every ordering of evs.
func Permutations(evs []events.Envelope) [][]events.Envelope {
	if len(evs) <= 1 {
		return [][]events.Envelope{evs}
	}
	var out [][]events.Envelope
	for i := range evs {
		rest := append(append([]events.Envelope{}, evs[:i]...), evs[i+1:]...)
		for _, p := range Permutations(rest) {
			out = append(out, append([]events.Envelope{evs[i]}, p...))
		}
	}
	return out
}
