package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/retry"
	"github.com/choreo-dev/choreo/outbox"
)

// outcome is what became of one message.
type outcome int

const (
	handled outcome = iota
	duplicate
	ignored
	deadLettered
	parked
)

// worker applies, in order, the messages of one partition number of every topic the consumer reads. Topics
// are keyed by order id with equal partition counts and the group's assignment is co-partitioned, so all
// events about one order reach one worker: the rows of an order are only ever changed by one transaction at
// a time, and only rows shared across orders (a product's stock) need a lock order (Router.BeforeBatch).
type worker struct {
	c        *Consumer
	commits  *committer
	in       <-chan kafka.Message
	log      zerolog.Logger
	attempts map[msgKey]int     // failed handler attempts, for messages at the head of the batch
	scopeErr map[msgKey]error   // the last failure of what the BatchScope did for a message it isolated
	joined   map[joinKey]uint32 // per key and Router.Join, the bits of the members taken while others are to come
}

// joinKey is a key's place in one of the router's joins.
type joinKey struct {
	key  string
	join int
}

// maxJoined bounds a worker's memory of incomplete joins (one whose last member never comes: the saga took
// another way); past it the worker forgets them all, and the last members of those joins wait once.
const maxJoined = 10_000

// msgKey identifies a message among the topics one worker reads.
type msgKey struct {
	topic  string
	offset int64
}

func keyOf(m kafka.Message) msgKey { return msgKey{m.Topic, m.Offset} }

// run applies the messages from w.in until stop ends; the batch in hand when it does is finished (but not
// retried) with ctx, which bounds the database work.
func (w *worker) run(stop, ctx context.Context) {
	w.attempts, w.joined, w.scopeErr = map[msgKey]int{}, map[joinKey]uint32{}, map[msgKey]error{}
	batch := make([]kafka.Message, 0, w.c.cfg.BatchSize)
	var linger *time.Timer // made on the first wait
	for {
		var pace pace
		select {
		case m := <-w.in:
			batch = append(batch[:0], m)
			pace.add(w.urgencyOf(m))
		case <-stop.Done():
			return
		}
	fill:
		for len(batch) < w.c.cfg.BatchSize {
			select {
			case m := <-w.in:
				batch = append(batch, m)
				pace.add(w.urgencyOf(m))
			default:
				break fill
			}
		}
		if d := w.c.cfg.Linger; d > 0 && pace.mayWait() {
			if linger == nil { // linger stops it whenever it returns
				linger = time.NewTimer(d)
			} else {
				linger.Reset(d)
			}
			batch = w.linger(stop, batch, linger)
		}
		if !w.process(stop, ctx, batch) {
			return
		}
	}
}

// pace is what the messages of a batch say about waiting: it may wait if it holds an unhurried event and
// nothing urgent.
type pace struct{ urgent, unhurried bool }

func (p *pace) add(u urgency) {
	p.urgent = p.urgent || u == urgent
	p.unhurried = p.unhurried || u == unhurried
}

func (p pace) mayWait() bool { return p.unhurried && !p.urgent }

// urgencyOf tells how soon m must be applied (see urgency), and remembers the members of a Join taken so
// that its last is urgent. Every message the worker takes goes through it once.
func (w *worker) urgencyOf(m kafka.Message) urgency {
	u, t := w.c.router.urgencyOf(m)
	if u != joining {
		return u
	}
	jm := w.c.router.member[t]
	k := joinKey{string(m.Key), jm.join}
	if taken := w.joined[k] | jm.bit; taken != jm.all {
		if _, known := w.joined[k]; !known && len(w.joined) >= maxJoined {
			clear(w.joined)
		}
		w.joined[k] = taken
		return unhurried
	}
	delete(w.joined, k)
	return urgent
}

// linger adds to batch, made of unhurried events (and ignored ones), what arrives until timer fires, the
// batch is full, stop ends or an urgent event arrives (the last of a Join among them), which goes
// in too: the batch is then applied as one transaction. An event nobody handles joins without ending the
// wait. Stopping ends the wait, not the batch: it is finished like any batch in hand.
func (w *worker) linger(stop context.Context, batch []kafka.Message, timer *time.Timer) []kafka.Message {
	defer timer.Stop()
	joined := true // unless the linger runs out
	defer func() {
		if joined {
			w.c.stats.lingerJoined.Add(1)
		}
	}()
	for len(batch) < w.c.cfg.BatchSize {
		select {
		case m := <-w.in:
			batch = append(batch, m)
			if w.urgencyOf(m) == urgent {
				return batch
			}
		case <-timer.C:
			joined = false
			w.c.stats.lingerExpired.Add(1)
			return batch
		case <-stop.Done():
			return batch
		}
	}
	return batch
}

// process applies msgs, retrying until all are applied and their offsets committed; false once stop or ctx
// ends. A lock conflict (deadlock, serialization failure) is retried at once and does not count as an
// attempt of the event: it says nothing about the event, only about timing.
func (w *worker) process(stop, ctx context.Context, msgs []kafka.Message) bool {
	conflicts := 0
	for attempt := 0; len(msgs) > 0; {
		n, err := w.apply(ctx, msgs)
		if n > 0 {
			for _, m := range msgs[:n] {
				w.commits.add(m.Topic, m.Partition, m.Offset+1)
			}
			msgs = msgs[n:]
			attempt, conflicts = 0, 0
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil || stop.Err() != nil {
			return false
		}
		if lockConflict(err) {
			w.c.stats.conflicts.Add(1)
			if conflicts == 0 { // once per batch, not per attempt
				w.log.Warn().Err(err).Int64("offset", msgs[0].Offset).Msg("lock conflict; retrying the batch at once")
			}
			conflicts++
			// Immediate retries; should two batches keep colliding, spread them apart a little.
			if conflicts > 3 && !retry.Sleep(stop, retry.Backoff(conflicts-3, w.c.cfg.BackoffMin/10, w.c.cfg.BackoffMin)) {
				return false
			}
			continue
		}
		w.c.stats.retries.Add(1)
		d := retry.Backoff(attempt, w.c.cfg.BackoffMin, w.c.cfg.BackoffMax)
		w.log.Warn().Err(err).Int64("offset", msgs[0].Offset).Dur("retry_in", d).Msg("apply event failed; retrying")
		if !retry.Sleep(stop, d) {
			return false
		}
		attempt++
	}
	return true
}

// routed is a message with its handler and decoded event, or the reason it cannot be applied.
type routed struct {
	m       kafka.Message
	h       Handler
	ev      Event
	id      uuid.UUID // the event id, or one derived from the message's place when it has no envelope
	poison  error     // cannot be decoded: dead-lettered
	skipped outcome   // duplicate, ignored or parked, decided before the handlers run (or by them); else handled
	reason  error     // why it is parked
}

// apply runs msgs in one transaction and returns how many were durably applied (committed) before a
// failure that needs a retry. Messages are applied, skipped as duplicates or ignored, or dead-lettered.
// The inbox is read once and written once per batch, after the router's BeforeBatch hook took the locks
// the batch needs on rows shared across orders. Handlers run without savepoints, since they rarely fail:
// when one does, the transaction is rolled back and run again with that message alone in a savepoint, so
// that the messages before it still commit and its failure leaves nothing behind.
func (w *worker) apply(ctx context.Context, msgs []kafka.Message) (int, error) {
	batch := w.route(msgs)
	if allIgnored(batch) { // events of a type this service does not handle: no transaction to open
		w.c.stats.applied.Add(uint64(len(batch)))
		w.c.stats.ignored.Add(uint64(len(batch)))
		return len(batch), nil
	}
	if w.attempts[keyOf(msgs[0])] > 0 { // the head is being retried: on its own until it passes
		return w.applyBatch(ctx, batch[:1], 0)
	}
	n, err := w.applyFirst(ctx, batch)
	var failed *handlerFailed
	if errors.As(err, &failed) {
		r := batch[failed.index]
		if !IsPermanent(failed.err) {
			w.attempts[keyOf(r.m)]++
			log := w.eventLog(&r)
			log.Warn().Err(failed.err).Int("attempt", w.attempts[keyOf(r.m)]).Msg("handler failed")
		}
		return w.applyBatch(ctx, batch[:failed.index+1], failed.index)
	}
	return n, err
}

// allIgnored reports whether no message of batch has a handler or needs dead-lettering: it leaves nothing
// in the database (ignored messages are not recorded in the inbox), so only its offsets move.
func allIgnored(batch []routed) bool {
	for _, r := range batch {
		if r.skipped != ignored || r.poison != nil {
			return false
		}
	}
	return true
}

// applyFirst is the first try of a batch: combined with other workers' (see combiner), and on its own if
// the combined transaction failed.
func (w *worker) applyFirst(ctx context.Context, batch []routed) (int, error) {
	if cb := w.c.combiner; cb != nil {
		err := cb.apply(ctx, batch)
		if err == nil {
			return len(batch), nil
		}
		if !errors.Is(err, errApplyAlone) {
			return 0, err
		}
	}
	return w.applyBatch(ctx, batch, -1)
}

// blame returns err, which failed a batch run without savepoints, as the failure of the handler at index
// (-1: none), or of the one whose held-back statement failed, if one did (a held-back statement of the
// batch's own is nobody's): the batch is then run again with that message in a savepoint. A lock
// conflict or a lost connection is nobody's: the batch is retried.
func blame(err error, index int) error {
	if infrastructural(err) || lockConflict(err) {
		return err
	}
	if hb := (*postgres.HeldBackError)(nil); errors.As(err, &hb) {
		index = hb.Owner // -1: one of the batch's own statements, nobody's
	}
	if cf := (*causeFailed)(nil); errors.As(err, &cf) {
		index = cf.index // work a BatchScope did for that event (Pending's decisions)
	}
	if index < 0 {
		return err
	}
	return &handlerFailed{index: index, err: err}
}

// handlerFailed says the handler of the batch's message at index failed in a run without savepoints.
type handlerFailed struct {
	index int
	err   error
}

func (e *handlerFailed) Error() string { return e.err.Error() }
func (e *handlerFailed) Unwrap() error { return e.err }

// causeFailed is the failure of work a BatchScope did, after the handlers, for the batch's event at index.
type causeFailed struct {
	index int
	err   error
}

func (e *causeFailed) Error() string { return e.err.Error() }
func (e *causeFailed) Unwrap() error { return e.err }

// finishFailed records that the BatchScope's work for r, run in isolation, failed again: an attempt of
// r, which applyIsolated gives up (parks or dead-letters) once they are used up, or at once if permanent.
func (w *worker) finishFailed(r *routed, err error) {
	k := keyOf(r.m)
	w.scopeErr[k] = err
	if !IsPermanent(err) {
		w.attempts[k]++
	}
	log := w.eventLog(r)
	log.Warn().Err(err).Int("attempt", w.attempts[k]).Msg("the batch's work for the event failed")
}

// applyBatch applies batch in one transaction; the message at index isolate (-1: none) runs in a savepoint,
// where its failure counts as an attempt and may dead-letter it. A handler failing outside a savepoint
// returns *handlerFailed with nothing committed.
func (w *worker) applyBatch(ctx context.Context, batch []routed, isolate int) (int, error) {
	if isolate >= 0 {
		return w.applyTx(ctx, batch, isolate, w.beginMarked)
	}
	// All of the batch commits or none of it, so its event ids can go into the inbox in its first round
	// trip. Redeliveries and parked keys are rare, so that round trip is not waited for: the inbox write,
	// which fails should the batch hold one, travels with the handlers' first statement (or the COMMIT).
	// If it failed, the batch is tried again with an inbox write that tells the duplicates and the parked
	// apart before the handlers run.
	n, err := w.applyTx(ctx, batch, isolate, w.beginExpectingNew)
	if err == nil || !unexpectedKnown(err) || ctx.Err() != nil {
		return n, err
	}
	return w.applyTx(ctx, batch, isolate, w.beginRecorded)
}

// unexpectedKnown reports whether err, the failure of a batch begun with beginExpectingNew, may be its
// inbox write finding a known event or a parked key: a handler that dropped the error its statement got
// leaves only the failed COMMIT.
func unexpectedKnown(err error) bool {
	var hb *postgres.HeldBackError
	return (errors.As(err, &hb) && hb.SQL == recordNewSQL) || errors.Is(err, pgx.ErrTxCommitRollback)
}

// applyTx applies batch in one transaction begun by begin; see applyBatch.
func (w *worker) applyTx(ctx context.Context, batch []routed, isolate int, begin func(context.Context, []routed) (pgx.Tx, error)) (int, error) {
	tx, err := begin(ctx, batch)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	ctx, hooks := withCommitHooks(ctx)
	if isolate < 0 { // no savepoint to roll back: the batch's new events go out in one statement at its end
		ctx = outbox.Deferred(ctx, tx)
	}
	// Without savepoints, handlers' writes may be held back for the next round trip (postgres.Later), where
	// a failure is still the handler's: each event owns what its handler held back (the batch's own
	// statements, before and after the handlers, are nobody's).
	held, _ := tx.(*postgres.Tx)
	if held != nil {
		held.Own(-1)
	}
	ctx, err = w.beginScope(ctx, tx, batch)
	if err != nil {
		return 0, blame(err, -1)
	}
	for i := range batch {
		batch[i].ev.index = i
	}
	var outcomes [parked + 1]uint64
	applied := 0
	var stop error
	for i := range batch {
		var o outcome
		if held != nil {
			held.Own(i)
		}
		if i == isolate {
			o, stop = w.applyIsolated(ctx, tx, &batch[i])
		} else if o, stop = w.applyDirect(ctx, tx, &batch[i]); stop != nil && isolate < 0 {
			return 0, blame(stop, i)
		}
		if stop != nil {
			break
		}
		outcomes[o]++
		applied++
	}
	if applied == 0 {
		return 0, stop
	}
	if held != nil {
		held.Own(-1)
	}
	if sc := w.c.router.scope; sc != nil {
		if err := sc.Finish(ctx, tx); err != nil {
			err = blame(fmt.Errorf("finish batch of %d events: %w", applied, err), -1)
			var failed *handlerFailed
			if isolate >= 0 && errors.As(err, &failed) && failed.index == isolate {
				w.finishFailed(&batch[isolate], failed.err)
			}
			return 0, err
		}
	}
	if err := outbox.FlushDeferred(ctx); err != nil {
		return 0, blame(fmt.Errorf("append the events of a batch of %d: %w", applied, err), -1)
	}
	if isolate >= 0 {
		if err := recordInbox(ctx, tx, w.c.cfg.Group, batch[:applied]); err != nil {
			return 0, err
		}
	}
	if err := w.recordParked(ctx, tx, batch[:applied]); err != nil {
		return 0, blame(err, -1)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, blame(fmt.Errorf("commit %d events: %w", applied, err), -1)
	}
	hooks.run()
	for _, r := range batch[:applied] {
		delete(w.attempts, keyOf(r.m))
		delete(w.scopeErr, keyOf(r.m))
	}
	// Counted only now that they are durable, so the counters never run ahead of the database.
	w.c.stats.applied.Add(uint64(applied))
	w.c.stats.handled.Add(outcomes[handled])
	w.c.stats.duplicates.Add(outcomes[duplicate])
	w.c.stats.ignored.Add(outcomes[ignored])
	w.c.stats.deadLettered.Add(outcomes[deadLettered])
	w.c.stats.parked.Add(outcomes[parked])
	return applied, stop
}

// route decodes msgs and finds their handlers.
func (w *worker) route(msgs []kafka.Message) []routed {
	batch := make([]routed, len(msgs))
	for i, m := range msgs {
		r := routed{m: m}
		r.h, r.ev, r.poison = w.c.router.route(m)
		r.id = r.ev.ID
		if r.id == uuid.Nil { // not even an envelope: identify the message by where it was
			r.id = uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "kafka://%s/%d/%d", m.Topic, m.Partition, m.Offset))
		}
		if r.poison == nil && r.h == nil {
			r.skipped = ignored
		}
		batch[i] = r
	}
	return batch
}

// beginMarked begins a transaction and marks the batch's known messages (markKnown); the inbox is written
// when the batch ends (recordInbox), with the messages that were applied.
func (w *worker) beginMarked(ctx context.Context, batch []routed) (pgx.Tx, error) {
	tx, err := w.c.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if err := w.markKnown(ctx, tx, batch); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return tx, nil
}

// recordSQL records the batch's event ids in the inbox, but those whose key is parked, and returns the ids
// it recorded (the others were there: duplicates) and the parked keys among the batch's.
const recordSQL = `WITH parked_keys AS (SELECT DISTINCT key FROM parked WHERE consumer = $1 AND key = ANY($6)),
recorded AS (
	INSERT INTO inbox (consumer, event_id, topic, partition, "offset")
	SELECT $1, u.id, u.topic, u.part, u.off
	FROM unnest($2::uuid[], $3::text[], $4::int[], $5::bigint[], $6::text[]) AS u(id, topic, part, off, key)
	WHERE u.key NOT IN (SELECT key FROM parked_keys)
	ON CONFLICT DO NOTHING
	RETURNING event_id)
SELECT event_id, NULL::text FROM recorded UNION ALL SELECT NULL::uuid, key FROM parked_keys`

// inboxRows returns the inbox columns of batch's messages that are not ignored, and their keys; a poison
// message's key is "", so that it is dead-lettered even when its key is parked.
func inboxRows(batch []routed) (ids []uuid.UUID, topics []string, partitions []int32, offsets []int64, keys []string) {
	for _, r := range batch {
		if r.skipped == ignored {
			continue
		}
		key := string(r.m.Key)
		if r.poison != nil {
			key = ""
		}
		ids, topics, keys = append(ids, r.id), append(topics, r.m.Topic), append(keys, key)
		partitions, offsets = append(partitions, int32(r.m.Partition)), append(offsets, r.m.Offset)
	}
	return ids, topics, partitions, offsets, keys
}

// recordNewSQL records the batch's event ids in the inbox, and fails if one was there or a key is parked
// (consumer/migrations/003).
const recordNewSQL = `SELECT inbox_record_new($1, $2, $3, $4, $5, $6)`

// beginExpectingNew begins a transaction that records the batch's event ids in the inbox, expecting them
// all new: BEGIN and the inbox write are held back for the transaction's first round trip, and fail it
// should one be known or its key parked (then nothing of the batch is marked; see applyBatch).
func (w *worker) beginExpectingNew(ctx context.Context, batch []routed) (pgx.Tx, error) {
	ids, topics, partitions, offsets, keys := inboxRows(batch)
	tx, err := postgres.BeginLater(ctx, w.c.pool)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	tx.Later(recordNewSQL, w.c.cfg.Group, ids, topics, partitions, offsets, keys)
	return tx, nil
}

// beginRecorded begins a transaction and, in the same round trip, records the batch's event ids in the
// inbox; the messages whose id was there already, or that repeat an earlier message of the batch, are
// marked duplicates, and those whose key is parked are marked parked (they queue behind it).
func (w *worker) beginRecorded(ctx context.Context, batch []routed) (pgx.Tx, error) {
	ids, topics, partitions, offsets, keys := inboxRows(batch)
	recorded := make(map[uuid.UUID]bool, len(ids))
	parkedKeys := map[string]bool{}
	first := &pgx.Batch{}
	first.Queue(recordSQL, w.c.cfg.Group, ids, topics, partitions, offsets, keys).Query(func(rows pgx.Rows) error {
		var id *uuid.UUID
		var key *string
		_, err := pgx.ForEachRow(rows, []any{&id, &key}, func() error {
			if id != nil {
				recorded[*id] = true
			} else if key != nil {
				parkedKeys[*key] = true
			}
			return nil
		})
		return err
	})
	tx, err := postgres.BeginWith(ctx, w.c.pool, first)
	if err != nil {
		return nil, fmt.Errorf("begin and record %d events in inbox: %w", len(ids), err)
	}
	seen := make(map[uuid.UUID]bool, len(ids))
	for i := range batch {
		r := &batch[i]
		if r.skipped == ignored {
			continue
		}
		switch {
		case r.poison == nil && parkedKeys[string(r.m.Key)]:
			r.skipped, r.reason = parked, errQueuedBehind
		case !recorded[r.id] || seen[r.id]:
			r.skipped = duplicate
		}
		seen[r.id] = true
	}
	return tx, nil
}

// markKnown marks, in one query, the messages whose event id the inbox already holds or that repeat an
// earlier message of the batch (a relay that crashed between publishing and deleting republishes) as
// duplicates, and those whose key is parked as parked: they queue behind the key's parked events.
func (w *worker) markKnown(ctx context.Context, tx pgx.Tx, batch []routed) error {
	ids := make([]uuid.UUID, 0, len(batch))
	var keys []string
	for _, r := range batch {
		if r.skipped != ignored {
			ids = append(ids, r.id)
			if len(r.m.Key) > 0 {
				keys = append(keys, string(r.m.Key))
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT event_id, NULL::text FROM inbox WHERE consumer = $1 AND event_id = ANY($2)
		UNION ALL SELECT DISTINCT NULL::uuid, key FROM parked WHERE consumer = $1 AND key = ANY($3)`, w.c.cfg.Group, ids, keys)
	if err != nil {
		return fmt.Errorf("read inbox: %w", err)
	}
	seen := make(map[uuid.UUID]bool, len(batch))
	parkedKeys := map[string]bool{}
	var id *uuid.UUID
	var key *string
	_, err = pgx.ForEachRow(rows, []any{&id, &key}, func() error {
		if id != nil {
			seen[*id] = true
		} else if key != nil {
			parkedKeys[*key] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read inbox: %w", err)
	}
	for i := range batch {
		r := &batch[i]
		if r.skipped == ignored {
			continue
		}
		switch {
		case seen[r.id]:
			r.skipped = duplicate
		case r.poison == nil && parkedKeys[string(r.m.Key)]:
			r.skipped, r.reason = parked, errQueuedBehind
		}
		seen[r.id] = true
	}
	return nil
}

// beginScope begins the router's BatchScope with the events the batch will hand to handlers, and returns
// the context they get.
func (w *worker) beginScope(ctx context.Context, tx pgx.Tx, batch []routed) (context.Context, error) {
	if w.c.router.scope == nil {
		return ctx, nil
	}
	evs := make([]Event, 0, len(batch))
	for _, r := range batch {
		if r.poison == nil && r.skipped == handled {
			evs = append(evs, r.ev)
		}
	}
	sctx, err := w.c.router.scope.Begin(ctx, tx, evs)
	if err != nil {
		return ctx, fmt.Errorf("begin batch of %d events: %w", len(evs), err)
	}
	return sctx, nil
}

// recordInbox records the event ids of the batch's handled and dead-lettered messages in one statement.
// Without ON CONFLICT: should another member of the group have applied one of them meanwhile (the overlap
// of a rebalance), the unique key fails the transaction, and the retry finds the id and skips it.
func recordInbox(ctx context.Context, tx pgx.Tx, group string, batch []routed) error {
	var ids []uuid.UUID
	var topics []string
	var partitions []int32
	var offsets []int64
	for _, r := range batch {
		if r.skipped != handled {
			continue
		}
		ids = append(ids, r.id)
		topics = append(topics, r.m.Topic)
		partitions = append(partitions, int32(r.m.Partition))
		offsets = append(offsets, r.m.Offset)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO inbox (consumer, event_id, topic, partition, "offset")
		SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::int[], $5::bigint[])`, group, ids, topics, partitions, offsets)
	if err != nil {
		return fmt.Errorf("record %d events in inbox: %w", len(ids), err)
	}
	return nil
}

// applyDirect applies r in tx without a savepoint: a failure leaves tx unusable, and the caller rolls
// it back.
func (w *worker) applyDirect(ctx context.Context, tx pgx.Tx, r *routed) (outcome, error) {
	if r.poison != nil {
		return w.deadLetter(w.log.WithContext(ctx), tx, r, r.poison)
	}
	if r.skipped != handled {
		return r.skipped, nil
	}
	if err := w.instrumented(w.eventLog(r).WithContext(ctx), r.h, tx, r.ev); err != nil {
		return 0, fmt.Errorf("handle %s %s: %w", r.ev.Type, r.ev.ID, err)
	}
	return handled, nil
}

// applyIsolated applies r inside a savepoint of tx. It returns an error only when r must be retried; tx is
// then left as it was before r. Failures count as attempts; after the last one r is parked (an event
// without a key, which has no order to keep, is dead-lettered); a permanent failure dead-letters r.
func (w *worker) applyIsolated(ctx context.Context, tx pgx.Tx, r *routed) (outcome, error) {
	if r.poison != nil || r.skipped != handled {
		return w.applyDirect(ctx, tx, r)
	}
	log := w.eventLog(r)
	k := keyOf(r.m)
	var herr error
	if serr := w.scopeErr[k]; serr != nil && (IsPermanent(serr) || w.attempts[k] >= w.c.cfg.MaxAttempts) {
		// What the BatchScope does for it after the handlers (a decision it marked) keeps failing: it is
		// given up like a failing handler, without running it, so the rest of the batch goes on.
		herr = serr
	} else {
		var err error
		if herr, err = applyInSavepoint(log.WithContext(ctx), tx, r, w.instrumented); err != nil {
			return 0, err
		}
		if herr == nil {
			return handled, nil
		}
		if !IsPermanent(herr) {
			w.attempts[k]++
		}
	}
	if !IsPermanent(herr) {
		if n := w.attempts[k]; n < w.c.cfg.MaxAttempts {
			log.Warn().Err(herr).Int("attempt", n).Msg("handler failed")
			return 0, herr
		}
		herr = fmt.Errorf("gave up after %d attempts: %w", w.c.cfg.MaxAttempts, herr)
		if len(r.m.Key) > 0 { // quarantine the key, not the partition: its later events queue behind this one
			r.skipped, r.reason = parked, herr
			log.Error().Err(herr).Str("key", string(r.m.Key)).Msg("event parked; its key's later events wait behind it until released")
			return parked, nil
		}
	}
	return w.deadLetter(log.WithContext(ctx), tx, r, herr)
}

// eventLog is the worker's logger with r's event's identity.
func (w *worker) eventLog(r *routed) zerolog.Logger {
	ev := r.ev
	logc := w.log.With().Str("topic", r.m.Topic).Str("event_id", ev.ID.String()).Str("event_type", ev.Type).Str("correlation_id", ev.CorrelationID)
	if trace := events.TraceID(ev.TraceParent); trace != "" {
		logc = logc.Str("trace_id", trace)
	}
	return logc.Logger()
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

// deadLetter appends r's message, with the reason, to the outbox for "<topic>.dlq" in tx; its id goes into
// the inbox with the batch's, so a redelivery is not dead-lettered twice.
func (w *worker) deadLetter(ctx context.Context, tx pgx.Tx, r *routed, reason error) (outcome, error) {
	m := r.m
	if err := appendDeadLetter(ctx, tx, m, w.c.cfg.Group, reason); err != nil {
		return 0, fmt.Errorf("dead-letter %s/%d/%d: %w", m.Topic, m.Partition, m.Offset, err)
	}
	zerolog.Ctx(ctx).Error().Err(reason).Str("topic", m.Topic).Int64("offset", m.Offset).Str("dlq", m.Topic+DLQSuffix).Msg("event dead-lettered")
	return deadLettered, nil
}

// commitOffsets commits the offsets after msgs (the last of each topic), retrying while Kafka is
// unavailable. The database already holds the work, so if the commit never lands (the partition moved to
// another member) the redelivery is deduped.
// Stats is a snapshot of a consumer's counters. Applied counts every message whose offset moved on:
// handled, duplicate, ignored, dead-lettered or parked. Conflicts counts batches retried after a deadlock
// or a serialization failure.
type Stats struct {
	Applied, Handled, Duplicates, Ignored, DeadLettered, Parked, Retries, Conflicts, FetchErrors uint64
	// Batches of unhurried events that waited (Config.Linger): ended by the event that came next (or a full
	// batch, or shutdown), or by the linger running out.
	LingerJoined, LingerExpired uint64
}

type counters struct {
	applied, handled, duplicates, ignored, deadLettered, parked, retries, conflicts, fetchErrors atomic.Uint64
	lingerJoined, lingerExpired                                                                  atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{c.applied.Load(), c.handled.Load(), c.duplicates.Load(), c.ignored.Load(), c.deadLettered.Load(),
		c.parked.Load(), c.retries.Load(), c.conflicts.Load(), c.fetchErrors.Load(), c.lingerJoined.Load(), c.lingerExpired.Load()}
}
