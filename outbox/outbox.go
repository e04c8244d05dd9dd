// Package outbox implements the transactional outbox: Append writes messages in the caller's transaction, so
// they exist exactly when the business change commits, and Relay publishes committed rows to Kafka in order.
// The package knows nothing about the events it carries beyond their Kafka form.
package outbox

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the numbered SQL migrations that create the outbox table in a service's database.
func Migrations() fs.FS {
	return postgres.MigrationsDir(migrationFiles)
}

// notifyChannel is the LISTEN/NOTIFY channel the outbox trigger signals on each committing transaction.
const notifyChannel = "outbox"

// ErrMessageTooLarge is returned by Append for a message Kafka would refuse.
var ErrMessageTooLarge = errors.New("message too large for Kafka")

// Execer is the part of a pgx transaction Append needs; pgx.Tx satisfies it.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// header is a Kafka header as stored in the headers column; Value is base64 in JSON, so binary is safe.
type header struct {
	Key   string `json:"k"`
	Value []byte `json:"v"`
}

// Append writes evs as messages for topic in the caller's transaction tx. If tx rolls back, nothing is
// published.
func Append(ctx context.Context, tx Execer, topic string, evs ...events.Envelope) error {
	msgs := make([]kafka.Message, 0, len(evs))
	for _, e := range evs {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("append %s %s: %w", e.Type, e.ID, err)
		}
		msgs = append(msgs, events.ToMessage(topic, e))
	}
	return AppendMessages(ctx, tx, msgs...)
}

// AppendMessages writes raw Kafka messages (each with its Topic set) in tx, in one statement.
func AppendMessages(ctx context.Context, tx Execer, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	topics := make([]string, len(msgs))
	keys := make([][]byte, len(msgs))
	headers := make([]string, len(msgs))
	values := make([][]byte, len(msgs))
	for i, m := range msgs {
		if m.Topic == "" {
			return fmt.Errorf("append message %d: no topic", i)
		}
		if n := messageSize(m); n > MaxMessageBytes {
			return fmt.Errorf("append message %d to %s: %w (%d bytes, limit %d)", i, m.Topic, ErrMessageTooLarge, n, MaxMessageBytes)
		}
		hs := make([]header, len(m.Headers))
		for j, h := range m.Headers {
			hs[j] = header{Key: h.Key, Value: h.Value}
		}
		b, err := json.Marshal(hs)
		if err != nil {
			return fmt.Errorf("encode headers of message %d: %w", i, err)
		}
		topics[i], keys[i], headers[i], values[i] = m.Topic, m.Key, string(b), m.Value
	}
	if _, err := tx.Exec(ctx, appendSQL, topics, keys, headers, values); err != nil {
		return fmt.Errorf("insert %d outbox rows: %w", len(msgs), err)
	}
	return nil
}

const appendSQL = `
INSERT INTO outbox (topic, key, headers, value)
SELECT t, k, h::jsonb, v
FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[]) WITH ORDINALITY AS m(t, k, h, v, n)
ORDER BY n`

// Emitter appends a service's new events to its topic.
type Emitter struct {
	Source string // the emitting service
	Topic  string
}

// Emit appends one event per payload in reaction to cause, in tx: each continues cause's saga (same subject
// and correlation, and traceparent) and names cause as its causation.
func (em Emitter) Emit(ctx context.Context, tx Execer, cause events.Envelope, ps ...events.Payload) error {
	return em.append(ctx, tx, cause.Subject, ps, func(e events.Envelope) events.Envelope { return e.CausedBy(cause) })
}

// EmitInSaga appends one event per payload about subject in the saga correlationID when no event caused
// them (a deadline passed, a mail was finally delivered), in tx.
func (em Emitter) EmitInSaga(ctx context.Context, tx Execer, subject, correlationID string, ps ...events.Payload) error {
	if correlationID == "" {
		return fmt.Errorf("emit %d events about %s: no saga (correlation id) given", len(ps), subject)
	}
	return em.append(ctx, tx, subject, ps, func(e events.Envelope) events.Envelope {
		e.CorrelationID = correlationID
		return e
	})
}

func (em Emitter) append(ctx context.Context, tx Execer, subject string, ps []events.Payload, link func(events.Envelope) events.Envelope) error {
	evs := make([]events.Envelope, 0, len(ps))
	for _, p := range ps {
		e, err := events.New(em.Source, subject, p)
		if err != nil {
			return err
		}
		evs = append(evs, link(e))
	}
	return Append(ctx, tx, em.Topic, evs...)
}
