package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/retry"
)

// outcome is what became of one message.
type outcome int

const (
	handled outcome = iota
	duplicate
	ignored
	deadLettered
)

// committer is the part of kafka.Reader a worker needs.
type committer interface {
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// worker applies one partition's messages in order.
type worker struct {
	c        *Consumer
	reader   committer
	in       <-chan kafka.Message
	log      zerolog.Logger
	attempts map[int64]int // failed handler attempts by offset, for the message at the head of the batch
}

func (w *worker) run(ctx context.Context) {
	w.attempts = map[int64]int{}
	batch := make([]kafka.Message, 0, w.c.cfg.BatchSize)
	for {
		m, ok := <-w.in
		if !ok {
			return
		}
		batch = append(batch[:0], m)
	fill:
		for len(batch) < w.c.cfg.BatchSize {
			select {
			case m, ok := <-w.in:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		if !w.process(ctx, batch) {
			return
		}
	}
}

// process applies msgs, retrying until all are applied and their offsets committed; false once ctx ends.
func (w *worker) process(ctx context.Context, msgs []kafka.Message) bool {
	for attempt := 0; len(msgs) > 0; {
		n, err := w.apply(ctx, msgs)
		if n > 0 {
			w.commitOffset(ctx, msgs[n-1])
			msgs = msgs[n:]
			attempt = 0
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		w.c.stats.retries.Add(1)
		d := retry.Backoff(attempt, w.c.cfg.BackoffMin, w.c.cfg.BackoffMax)
		w.log.Warn().Err(err).Int64("offset", msgs[0].Offset).Dur("retry_in", d).Msg("apply event failed; retrying")
		if !retry.Sleep(ctx, d) {
			return false
		}
		attempt++
	}
	return true
}

// apply runs msgs in one transaction and returns how many were durably applied (committed) before a
// failure that needs a retry. Messages are applied, skipped as duplicates or ignored, or dead-lettered.
func (w *worker) apply(ctx context.Context, msgs []kafka.Message) (int, error) {
	tx, err := w.c.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var outcomes [deadLettered + 1]uint64
	applied := 0
	var stop error
	for _, m := range msgs {
		var o outcome
		if o, stop = w.applyOne(ctx, tx, m); stop != nil {
			break
		}
		outcomes[o]++
		applied++
	}
	if applied == 0 {
		return 0, stop
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit %d events: %w", applied, err)
	}
	for _, m := range msgs[:applied] {
		delete(w.attempts, m.Offset)
	}
	// Counted only now that they are durable, so the counters never run ahead of the database.
	w.c.stats.applied.Add(uint64(applied))
	w.c.stats.handled.Add(outcomes[handled])
	w.c.stats.duplicates.Add(outcomes[duplicate])
	w.c.stats.ignored.Add(outcomes[ignored])
	w.c.stats.deadLettered.Add(outcomes[deadLettered])
	return applied, stop
}

// applyOne applies m inside a savepoint of tx. It returns an error only when m must be retried; tx is then
// left as it was before m.
func (w *worker) applyOne(ctx context.Context, tx pgx.Tx, m kafka.Message) (outcome, error) {
	h, ev, err := w.c.router.route(m)
	if err != nil {
		return w.deadLetter(w.log.WithContext(ctx), tx, m, ev, err)
	}
	if h == nil {
		return ignored, nil
	}
	logc := w.log.With().Str("event_id", ev.ID.String()).Str("event_type", ev.Type).Str("correlation_id", ev.CorrelationID)
	if trace := events.TraceID(ev.TraceParent); trace != "" {
		logc = logc.Str("trace_id", trace)
	}
	log := logc.Logger()
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("savepoint: %w", err)
	}
	fresh, err := w.recordInbox(ctx, sp, ev.ID, m)
	if err != nil {
		_ = sp.Rollback(ctx)
		return 0, err
	}
	if !fresh {
		log.Debug().Msg("duplicate event skipped")
		return duplicate, sp.Commit(ctx)
	}
	herr := call(log.WithContext(ctx), h, sp, ev)
	if herr == nil {
		if err := sp.Commit(ctx); err != nil {
			return 0, fmt.Errorf("release savepoint: %w", err)
		}
		return handled, nil
	}
	if err := sp.Rollback(ctx); err != nil {
		return 0, fmt.Errorf("roll back failed handler of %s: %w (handler: %v)", ev.ID, err, herr)
	}
	herr = fmt.Errorf("handle %s %s: %w", ev.Type, ev.ID, herr)
	if infrastructural(herr) {
		return 0, herr
	}
	if !IsPermanent(herr) {
		w.attempts[m.Offset]++
		if n := w.attempts[m.Offset]; n < w.c.cfg.MaxAttempts {
			log.Warn().Err(herr).Int("attempt", n).Msg("handler failed")
			return 0, herr
		}
		herr = fmt.Errorf("gave up after %d attempts: %w", w.c.cfg.MaxAttempts, herr)
	}
	return w.deadLetter(log.WithContext(ctx), tx, m, ev, herr)
}

// call runs h, turning a panic into a permanent failure: the event is dead-lettered with the panic value
// instead of crashing the process and being redelivered into the same panic for ever.
func call(ctx context.Context, h Handler, tx pgx.Tx, ev Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = Permanent(fmt.Errorf("handler panicked: %v", p))
		}
	}()
	return h(ctx, tx, ev)
}

// recordInbox inserts the event id into the inbox; false means it was already there (a redelivery).
func (w *worker) recordInbox(ctx context.Context, tx pgx.Tx, id uuid.UUID, m kafka.Message) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO inbox (consumer, event_id, topic, partition, "offset") VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
		w.c.cfg.Group, id, m.Topic, m.Partition, m.Offset)
	if err != nil {
		return false, fmt.Errorf("record %s in inbox: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// deadLetter records m in the inbox (so a redelivery is not dead-lettered twice) and appends it, with the
// reason, to the outbox for "<topic>.dlq", all in tx.
func (w *worker) deadLetter(ctx context.Context, tx pgx.Tx, m kafka.Message, ev Event, reason error) (outcome, error) {
	id := ev.ID
	if id == uuid.Nil { // not even an envelope: identify the message by where it was
		id = uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "kafka://%s/%d/%d", m.Topic, m.Partition, m.Offset))
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("savepoint: %w", err)
	}
	fresh, err := w.recordInbox(ctx, sp, id, m)
	if err == nil && fresh {
		err = appendDeadLetter(ctx, sp, m, w.c.cfg.Group, reason)
	}
	if err != nil {
		_ = sp.Rollback(ctx)
		return 0, fmt.Errorf("dead-letter %s/%d/%d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	if err := sp.Commit(ctx); err != nil {
		return 0, fmt.Errorf("release savepoint: %w", err)
	}
	if !fresh {
		return duplicate, nil
	}
	zerolog.Ctx(ctx).Error().Err(reason).Int64("offset", m.Offset).Str("dlq", m.Topic+DLQSuffix).Msg("event dead-lettered")
	return deadLettered, nil
}

// commitOffset commits m's offset, retrying while Kafka is unavailable. The database already holds the
// work, so if the commit never lands (the partition moved to another member) the redelivery is deduped.
func (w *worker) commitOffset(ctx context.Context, m kafka.Message) {
	for attempt := 0; attempt < 8; attempt++ {
		err := w.reader.CommitMessages(ctx, m)
		if err == nil {
			return
		}
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return
		}
		w.log.Warn().Err(err).Int64("offset", m.Offset).Msg("commit offset failed; retrying")
		if !retry.Sleep(ctx, retry.Backoff(attempt, w.c.cfg.BackoffMin, w.c.cfg.BackoffMax)) {
			return
		}
	}
	w.log.Warn().Int64("offset", m.Offset).Msg("gave up committing offset; the events will be redelivered and deduped")
}

// Stats is a snapshot of a consumer's counters. Applied counts every message whose offset moved on:
// handled, duplicate, ignored or dead-lettered.
type Stats struct {
	Applied, Handled, Duplicates, Ignored, DeadLettered, Retries, FetchErrors uint64
}

type counters struct {
	applied, handled, duplicates, ignored, deadLettered, retries, fetchErrors atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{c.applied.Load(), c.handled.Load(), c.duplicates.Load(), c.ignored.Load(), c.deadLettered.Load(), c.retries.Load(), c.fetchErrors.Load()}
}
