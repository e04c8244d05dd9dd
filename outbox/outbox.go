// Package outbox implements the transactional outbox: Append writes messages in the caller's transaction, so
// they exist exactly when the business change commits, and Relay publishes committed rows to Kafka in order.
// The package knows nothing about the events it carries beyond their Kafka form.
package outbox

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
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

// header is a Kafka header as rows of the previous version stored it in the headers column (JSON, the value
// base64), read for rows written during a rolling upgrade.
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

// AppendMessages writes raw Kafka messages (each with its Topic set) in tx, in one statement; in a context
// from Deferred for tx, the messages are checked now and written by FlushDeferred. Held back on a
// postgres.Tx (postgres.Later) whose pool LocalCommits watches, the statement returns the rows' ids, and
// the relay may be handed msgs themselves after the commit: do not modify them after the call.
func AppendMessages(ctx context.Context, tx Execer, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if d, ok := ctx.Value(deferredKey{}).(*deferred); ok && d.tx == tx {
		for i, m := range msgs {
			if err := check(m); err != nil {
				return fmt.Errorf("append message %d: %w", i, err)
			}
		}
		d.msgs = append(d.msgs, msgs...)
		return nil
	}
	if len(msgs) > maxAppendRows {
		if err := AppendMessages(ctx, tx, msgs[:maxAppendRows]...); err != nil {
			return err
		}
		return AppendMessages(ctx, tx, msgs[maxAppendRows:]...)
	}
	args := make([]any, 0, appendColumns*len(msgs))
	for i, m := range msgs {
		if err := check(m); err != nil {
			return fmt.Errorf("append message %d: %w", i, err)
		}
		keys := make([]string, len(m.Headers))
		values := make([][]byte, len(m.Headers))
		for j, h := range m.Headers {
			keys[j], values[j] = h.Key, h.Value
		}
		args = append(args, m.Topic, m.Key, keys, values, m.Value)
	}
	if q, ok := tx.(laterQueryer); ok {
		if l := localCommitsOf(q.Conn()); l != nil { // the relay may take the rows from l once they commit
			conn := q.Conn()
			q.QueryLater(appendSQL(len(msgs))+returningRows, args, func(rows pgx.Rows) { l.appended(conn, msgs, rows) })
			return nil
		}
	}
	if _, err := tx.Exec(ctx, appendSQL(len(msgs)), args...); err != nil {
		return fmt.Errorf("insert %d outbox rows: %w", len(msgs), err)
	}
	return nil
}

// check returns why Kafka would refuse m, or nil.
func check(m kafka.Message) error {
	if m.Topic == "" {
		return errors.New("no topic")
	}
	if n := messageSize(m); n > MaxMessageBytes {
		return fmt.Errorf("to %s: %w (%d bytes, limit %d)", m.Topic, ErrMessageTooLarge, n, MaxMessageBytes)
	}
	return nil
}

// deferred holds the messages appended to tx in a context from Deferred.
type deferred struct {
	tx   Execer
	msgs []kafka.Message
}

type deferredKey struct{}

// Deferred returns a context in which appends to tx (Append, AppendMessages with that very tx) are checked
// at once but written only by FlushDeferred, all in one statement: a consumer's batch writes the events of
// all its handlers in one round trip. Appends through another Execer (a savepoint, say) are written at
// once, so their rows may come before the deferred ones.
func Deferred(ctx context.Context, tx Execer) context.Context {
	return context.WithValue(ctx, deferredKey{}, &deferred{tx: tx})
}

// FlushDeferred writes the messages appended in ctx (see Deferred), in the order they were appended. On a
// postgres.Tx the statement is held back (postgres.Later) to go out with the COMMIT that follows.
func FlushDeferred(ctx context.Context) error {
	d, ok := ctx.Value(deferredKey{}).(*deferred)
	if !ok || len(d.msgs) == 0 {
		return nil
	}
	msgs := d.msgs
	d.msgs = nil
	tx := d.tx
	if t, ok := tx.(pgx.Tx); ok { // the last statement of the batch: on a postgres.Tx it goes out with COMMIT
		tx = postgres.Later(t)
	}
	return AppendMessages(context.WithValue(ctx, deferredKey{}, nil), tx, msgs...)
}

// appendColumns are the values of one outbox row an append binds; maxAppendRows keeps a statement within
// Postgres' 65535 parameters.
const (
	appendColumns = 5
	maxAppendRows = 10_000
)

// appendPrefix starts every append; LocalCommits recognises appends by it. An append whose rows the relay
// may be handed ends with returningRows.
const (
	appendPrefix  = "INSERT INTO outbox (topic, key, header_keys, header_values, value) "
	returningRows = " RETURNING id, created_at"
)

// appendSQL is the INSERT of n rows. Its text depends only on n, so it stays parameterised and prepared
// statements are reused (an outbox append is mostly 1 to a few rows).
func appendSQL(n int) string {
	var b strings.Builder
	b.WriteString(appendPrefix + "VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		p := i*appendColumns + 1
		fmt.Fprintf(&b, "($%d, $%d, $%d, $%d, $%d)", p, p+1, p+2, p+3, p+4)
	}
	return b.String()
}

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
