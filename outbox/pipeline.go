package outbox

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/retry"
)

type batch struct {
	records []Record
}

// inflight is the set of ids read but not yet deleted; the reader must not read them again.
type inflight struct {
	mu  sync.Mutex
	ids map[int64]struct{}
}

func (f *inflight) add(recs []Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range recs {
		f.ids[r.ID] = struct{}{}
	}
}

func (f *inflight) remove(ids []int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		delete(f.ids, id)
	}
}

func (f *inflight) list() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int64, 0, len(f.ids))
	for id := range f.ids {
		out = append(out, id)
	}
	return out
}

// pipeline runs the read, publish and delete stages until stopCtx ends (then drains) or workCtx ends.
func (r *Relay) pipeline(stopCtx, workCtx context.Context, wake <-chan struct{}) {
	toPublish := make(chan batch, 1)
	toDelete := make(chan batch, 4)
	flying := &inflight{ids: map[int64]struct{}{}}
	acked := newAckedRows()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer close(toDelete); r.publishStage(workCtx, toPublish, toDelete) }()
	go func() { defer wg.Done(); r.deleteStage(workCtx, toDelete, acked, flying) }()

	r.readStage(stopCtx, workCtx, wake, toPublish, acked, flying)
	acked.readerStopped()
	close(toPublish)
	wg.Wait()
}

// ackedRows are the rows Kafka acknowledged, waiting to be deleted. While the read stage runs it deletes
// them in the round trip of a read, once they are deleteAge old (and reads for them when it has been idle
// for deleteDelay); once it has stopped, the delete stage deletes them itself.
type ackedRows struct {
	mu      sync.Mutex
	ids     []int64
	batches int
	first   time.Time     // when the oldest of ids was added
	stopped bool          // the read stage no longer takes them
	ready   chan struct{} // signalled when rows were added for the read stage
}

func newAckedRows() *ackedRows { return &ackedRows{ready: make(chan struct{}, 1)} }

// add adds b's rows and reports whether the read stage will delete them.
func (a *ackedRows) add(b batch) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.ids) == 0 {
		a.first = time.Now()
	}
	a.ids = appendIDs(a.ids, b)
	a.batches++
	if a.stopped {
		return false
	}
	select {
	case a.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns the rows waiting and the number of batches they came in, and forgets them. With a minimum
// age, rows younger than that stay (none are taken).
func (a *ackedRows) take(age time.Duration) ([]int64, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.ids) == 0 || time.Since(a.first) < age {
		return nil, 0
	}
	ids, n := a.ids, a.batches
	a.ids, a.batches = nil, 0
	return ids, n
}

// putBack returns rows whose delete failed, to be deleted with the next attempt.
func (a *ackedRows) putBack(ids []int64, batches int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.ids) == 0 {
		a.first = time.Now()
	}
	a.ids = append(a.ids, ids...)
	a.batches += batches
}

// waiting reports whether acknowledged rows wait to be deleted.
func (a *ackedRows) waiting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ids) > 0
}

func (a *ackedRows) readerStopped() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
}

// endDeletes ends the transaction of a read that carried the deletes of del (finish) and records the
// outcome: deleted, or handed back to be deleted with a later read.
func (r *Relay) endDeletes(finish func() error, del []int64, batches int, acked *ackedRows, flying *inflight) {
	err := finish()
	if len(del) == 0 {
		return
	}
	if err != nil {
		acked.putBack(del, batches)
		r.retries.Add(1)
		r.log.Warn().Err(err).Int("rows", len(del)).Msg("delete published outbox rows failed; retrying with a later read")
		return
	}
	r.deleted(del, batches, flying)
}

// deleted counts rows deleted (published for good) and lets the read stage read them again no more.
func (r *Relay) deleted(ids []int64, batches int, flying *inflight) {
	flying.remove(ids)
	r.published.Add(uint64(len(ids)))
	r.batches.Add(uint64(batches))
}

// readStage reads committed rows in id order. Ids are taken at insert time, so a transaction can commit
// after rows with higher ids were already read. Every read therefore scans from the lowest id, skipping the
// rows in flight: a late row is found there, and comes before any later row of its key (which could only
// be written after it committed). A cursor read (id > the last id read) would be cheaper in a backlog but
// would publish a key's next row before a late one below the cursor.
//
// Writers are asked to notify (outbox_relay.waiting) only while the relay waits: a notification wakes it
// and it lowers the flag, and a backlog (full batches) lowers it too; it is raised again once the relay is
// caught up. Writers of this process wake the relay in process instead (LocalCommits), whatever the flag
// says, and a wake-up of theirs leaves the flag as it is.
func (r *Relay) readStage(stopCtx, workCtx context.Context, wake <-chan struct{}, out chan<- batch, acked *ackedRows, flying *inflight) {
	var local <-chan struct{}  // nil: no LocalCommits, the case never fires
	var handed <-chan []Record // likewise
	if r.cfg.local != nil {
		local, handed = r.cfg.local.Woken(), r.cfg.local.Handed()
		for drained := false; !drained; { // handed to a relay that was not active: the first read finds them
			select {
			case <-handed:
			default:
				drained = true
			}
		}
		r.cfg.local.Accept(true)
		defer r.cfg.local.Accept(false)
	}
	front := newFrontier()
	// The flag goes up first: a relay that stopped while streaming may have left it down. Writers in
	// progress then may have seen it down (unsure): they are waited for like those of any raise below.
	announced := r.setWaiting(stopCtx, true) == nil
	var unsure []string // writers in progress when the flag went up: they may have seen it down
	var unsureUntil time.Time
	if announced {
		unsure, unsureUntil = r.inProgress(stopCtx), time.Now().Add(r.cfg.pollInterval)
	}
	pause := time.Duration(0)
	poll := time.NewTimer(r.cfg.pollInterval)
	defer poll.Stop()
	for attempt := 0; stopCtx.Err() == nil && workCtx.Err() == nil; {
		del, delBatches := acked.take(deleteAge)
		got, finish, err := r.read(stopCtx, del, flying.list(), front.wantsBound())
		recs, more := got.records, got.more
		if err != nil {
			r.endDeletes(finish, del, delBatches, acked, flying)
			if stopCtx.Err() != nil {
				return
			}
			r.retries.Add(1)
			r.log.Warn().Err(err).Msg("read outbox; retrying")
			if !retry.Sleep(stopCtx, r.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		if below := front.read(ids(recs), got.xmin, got.bound, !more); below != 0 {
			r.log.Error().Int64("id", below).Msg("read an outbox row below ids it had accounted for: ids are not taken in " +
				"transaction order (a sequence cache, explicit ids?), so a hand-over may have overtaken it")
		}
		// The batch goes to the publisher before the deletes that came with it end, if it is free; never
		// does a delete's transaction stay open while the reader waits for it.
		sent := len(recs) == 0
		if !sent {
			flying.add(recs)
			select {
			case out <- batch{records: recs}:
				sent = true
			default:
			}
		}
		r.endDeletes(finish, del, delBatches, acked, flying) // the rows read are good either way
		if !sent && !send(workCtx, out, recs) {
			return
		}
		if more {
			// A backlog: read on without waiting, and let writers stop notifying meanwhile.
			if announced && r.setWaiting(stopCtx, false) == nil {
				announced = false
			}
			continue
		}
		// Caught up. Writers must be notifying before the relay waits: one that sees the flag set notifies
		// when it commits; one that saw it down inserted before the flag went up, so it was a transaction
		// in progress then, and the relay keeps reading (briefly pausing) until those have ended, instead
		// of leaving their rows to the poll.
		if !announced {
			if err := r.setWaiting(stopCtx, true); err != nil {
				continue // the read above retries with backoff if the database is gone
			}
			announced, pause = true, 0
			unsure, unsureUntil = r.inProgress(stopCtx), time.Now().Add(r.cfg.pollInterval)
			continue
		}
		if len(unsure) > 0 && time.Now().Before(unsureUntil) {
			unsure = r.stillInProgress(stopCtx, unsure)
			if len(unsure) > 0 {
				pause = min(max(2*pause, 250*time.Microsecond), 5*time.Millisecond)
				if !retry.Sleep(stopCtx, pause) {
					return
				}
			}
			continue // read again: what those writers committed is visible now
		}
		unsure = nil
		// Wait. Whatever committed since the read above began has notified, or woken the relay in
		// process; either is kept in its channel until taken here, so nothing slips between read and wait.
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(r.cfg.pollInterval)
		notified := false
		var deleteDue <-chan time.Time // armed while acknowledged rows wait (see deleteDelay)
		if acked.waiting() {
			deleteDue = time.After(deleteDelay)
		}
	wait:
		for {
			select {
			case recs := <-handed:
				read, ok := r.takeHandOvers(workCtx, recs, handed, front, out, flying)
				if !ok {
					return
				}
				if read {
					break wait
				}
				continue
			case <-wake:
				notified = true
			case <-local:
			case <-acked.ready:
				if deleteDue == nil {
					deleteDue = time.After(deleteDelay)
				}
				continue
			case <-deleteDue:
			case <-poll.C:
			case <-stopCtx.Done():
			case <-workCtx.Done():
			}
			break wait
		}
		// Woken by a NOTIFY: writers of another process are busy, and each of their commits would notify
		// again while the relay reads; let them stop until it is caught up. Its own process's writers never
		// notify, so while only they write the flag stays up and costs nothing.
		if notified && r.setWaiting(stopCtx, false) == nil {
			announced = false
		}
	}
}

// takeHandOvers publishes first, a local transaction's committed rows, and the hand-overs waiting behind
// it, as one batch where they fit in one, if they are what a read would return next (frontier); it stops
// at the first that is not, and reports that the relay must read. ok is false once ctx ended.
func (r *Relay) takeHandOvers(ctx context.Context, first []Record, handed <-chan []Record, front *frontier, out chan<- batch, flying *inflight) (read, ok bool) {
	var taken []Record
	for recs, more := first, true; more; {
		if !r.fits(recs) {
			read = true
			break
		}
		take, seen := front.handOver(ids(recs))
		switch {
		case seen:
			r.handOversSeen.Add(1)
		case !take:
			read = true
		default:
			if !r.fits(append(taken, recs...)) {
				if !send(ctx, out, taken) {
					return read, false
				}
				taken = nil
			}
			flying.add(recs)
			taken = append(taken, recs...)
			r.handOvers.Add(1)
		}
		if read {
			r.handOversRead.Add(1)
			break
		}
		select {
		case recs = <-handed:
		default:
			more = false
		}
	}
	return read, len(taken) == 0 || send(ctx, out, taken)
}

// fits reports whether recs make one batch, as a read would cut it (count, then MaxBatchBytes).
func (r *Relay) fits(recs []Record) bool {
	if len(recs) > r.cfg.batchSize {
		return false
	}
	size := 0
	for _, rec := range recs {
		size += messageSize(rec.Message)
	}
	return size <= MaxBatchBytes || len(recs) == 1
}

// send hands recs to the publish stage, unless ctx ends first.
func send(ctx context.Context, out chan<- batch, recs []Record) bool {
	select {
	case out <- batch{records: recs}:
		return true
	case <-ctx.Done():
		return false
	}
}

// setWaiting tells writers whether to notify on commit. The flag is only a hint for latency (the poll
// covers a lost update), so it is written without waiting for the WAL flush.
func (r *Relay) setWaiting(ctx context.Context, waiting bool) error {
	_, err := r.pool.Exec(ctx, `BEGIN; SET LOCAL synchronous_commit = off; UPDATE outbox_relay SET waiting = `+strconv.FormatBool(waiting)+` WHERE id = 1; COMMIT`)
	if err != nil {
		return fmt.Errorf("set outbox_relay.waiting: %w", err)
	}
	return nil
}

// inProgress returns the transactions in progress now. Transaction ids belong to the Postgres cluster, so
// where services share one (choreo run) these include the other services' transactions, which the relay
// then waits out too, at most a poll interval. Failing, it returns none (the poll covers what that misses).
func (r *Relay) inProgress(ctx context.Context) []string {
	rows, err := r.pool.Query(ctx, `SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x`)
	if err != nil {
		return nil
	}
	xids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil
	}
	return xids
}

// stillInProgress returns those of xids that have not ended yet.
func (r *Relay) stillInProgress(ctx context.Context, xids []string) []string {
	rows, err := r.pool.Query(ctx, `SELECT x::text FROM unnest($1::xid8[]) AS x WHERE pg_xact_status(x) = 'in progress'`, xids)
	if err != nil {
		return nil
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil
	}
	return left
}

// readSQL returns the lowest rows not in flight, each with its read's snapshot's xmin (for the frontier),
// and that alone when there is no row. readBoundSQL also takes a transaction id after the snapshot (the
// frontier's bound; only in a transaction that does not wait for its commit). Postgres 14+ hashes the array
// of a "<> ALL" with a parameter, so skipping in-flight ids stays cheap.
const (
	readColumns  = `id, topic, key, header_keys, header_values, CASE WHEN header_keys IS NULL THEN headers END, value, created_at`
	readRows     = `LEFT JOIN LATERAL (SELECT ` + readColumns + ` FROM outbox WHERE id <> ALL($1::bigint[]) ORDER BY id LIMIT $2) AS o ON true`
	readSQL      = `SELECT pg_snapshot_xmin(s)::text::bigint, 0::bigint, o.* FROM pg_current_snapshot() AS s ` + readRows
	readBoundSQL = `SELECT pg_snapshot_xmin(s)::text::bigint, x::text::bigint, o.* FROM pg_current_snapshot() AS s CROSS JOIN pg_current_xact_id() AS x ` + readRows
)

// readBatch is what a read returned.
type readBatch struct {
	records     []Record
	more        bool  // the read stopped at the batch's count or size: more rows wait behind it
	xmin, bound int64 // its snapshot's xmin, and the transaction id it took after it (or 0)
}

// ids returns the ids of recs.
func ids(recs []Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// queueDelete begins a batch that deletes the published rows ids in a transaction whose commit does not
// wait for the WAL flush: a delete lost in a crash only publishes its rows again (consumers skip
// duplicates), and a relay read that carries deletes returns its rows without waiting for the disk. The
// caller adds its statements and COMMIT.
func queueDelete(ids []int64) *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue(asyncCommitSQL)
	b.Queue(deleteSQL, ids)
	return b
}

// asyncCommitSQL makes the transaction's commit not wait for the WAL flush.
const asyncCommitSQL = `SELECT set_config('synchronous_commit', 'off', true)`

const (
	// deleteSQL deletes published rows.
	deleteSQL = `DELETE FROM outbox WHERE id = ANY($1)`
	// deleteDelay is how long acknowledged rows may wait for a read to carry their delete before an idle
	// relay reads for them. Under load the next commit's read comes sooner, so a delete costs no round trip
	// of its own; meanwhile the rows are in flight, not read again, and only a crash republishes them
	// (consumers skip duplicates).
	deleteDelay = 50 * time.Millisecond
	// deleteAge is how old acknowledged rows are before a read carries their delete: the reads in between
	// stay single statements, and the rows of several batches share one delete.
	deleteAge = 10 * time.Millisecond
)

// read returns the next batch, skipping the rows in flight, and whether more rows wait behind it (the
// batch was cut by count or bytes). With del (published rows), the same round trip deletes them, after the
// read and in its transaction, which does not wait for the WAL flush (queueDelete). finish ends that
// transaction and reports whether the rows were deleted; the caller hands the batch on first, and calls
// finish also when read fails (the rows may have been deleted all the same). With bound, the read takes a
// transaction id after its snapshot for the frontier (frontier.wantsBound), in such a transaction too.
func (r *Relay) read(ctx context.Context, del []int64, flying []int64, bound bool) (got readBatch, finish func() error, err error) {
	finish = func() error { return nil }
	var rows pgx.Rows
	if len(del) == 0 && !bound {
		rows, err = r.pool.Query(ctx, readSQL, flying, r.cfg.batchSize)
	} else {
		sql := readSQL
		if bound {
			sql = readBoundSQL
		}
		// The read comes first: a bound must be taken after its snapshot, and the delete would take the
		// transaction's id before it.
		b := &pgx.Batch{}
		b.Queue("begin")
		b.Queue(asyncCommitSQL)
		b.Queue(sql, flying, r.cfg.batchSize)
		if len(del) > 0 {
			b.Queue(deleteSQL, del)
		}
		b.Queue("commit")
		br := r.pool.SendBatch(ctx, b)
		finish = br.Close
		if _, err = br.Exec(); err == nil {
			if _, err = br.Exec(); err == nil {
				rows, err = br.Query()
			}
		}
	}
	if err != nil {
		return readBatch{}, finish, fmt.Errorf("read outbox: %w", err)
	}
	recs := make([]Record, 0, min(r.cfg.batchSize, 16)) // grown as rows come: most reads under a trickle find one or two
	size, more, sorted := 0, false, true
	for rows.Next() {
		var rec Record
		var id pgtype.Int8
		var topic pgtype.Text
		var created pgtype.Timestamptz
		var keys []string
		var values [][]byte
		var legacy []byte
		if err := rows.Scan(&got.xmin, &got.bound, &id, &topic, &rec.Message.Key, &keys, &values, &legacy, &rec.Message.Value, &created); err != nil {
			rows.Close()
			return readBatch{}, finish, fmt.Errorf("scan outbox row: %w", err)
		}
		if !id.Valid { // no row: the snapshot alone
			continue
		}
		rec.ID, rec.Message.Topic, rec.CreatedAt = id.Int64, topic.String, created.Time
		hs, err := headersOf(keys, values, legacy)
		if err != nil {
			rows.Close()
			return readBatch{}, finish, fmt.Errorf("headers of outbox row %d: %w", rec.ID, err)
		}
		rec.Message.Headers = hs
		if len(recs) > 0 && rec.ID < recs[len(recs)-1].ID {
			sorted = false // the join's output order is the subquery's in practice, not by promise
		}
		recs = append(recs, rec)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return readBatch{}, finish, fmt.Errorf("read outbox: %w", err)
	}
	if !sorted {
		slices.SortFunc(recs, func(a, b Record) int { return cmp.Compare(a.ID, b.ID) })
	}
	more = len(recs) == r.cfg.batchSize
	// Stop at MaxBatchBytes so that no partition needs two produce requests (see MaxBatchBytes); the rows
	// left out are read again next time.
	for i, rec := range recs {
		if size += messageSize(rec.Message); size > MaxBatchBytes && i > 0 {
			recs, more = recs[:i], true
			break
		}
	}
	got.records, got.more = recs, more
	return got, finish, nil
}

// headersOf builds a row's Kafka headers from its arrays, or from the JSON of a row written by the
// previous version (legacy, when the arrays are NULL).
func headersOf(keys []string, values [][]byte, legacy []byte) ([]kafka.Header, error) {
	if keys == nil && legacy != nil {
		var hs []header
		if err := json.Unmarshal(legacy, &hs); err != nil {
			return nil, fmt.Errorf("decode JSON headers: %w", err)
		}
		out := make([]kafka.Header, len(hs))
		for i, h := range hs {
			out[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
		return out, nil
	}
	if len(keys) != len(values) {
		return nil, fmt.Errorf("%d header keys but %d values", len(keys), len(values))
	}
	out := make([]kafka.Header, len(keys))
	for i := range keys {
		out[i] = kafka.Header{Key: keys[i], Value: values[i]}
	}
	return out, nil
}

// publishStage writes batches one at a time, retrying each until Kafka acknowledges it, so no row is
// published ahead of an earlier one that failed.
func (r *Relay) publishStage(ctx context.Context, in <-chan batch, out chan<- batch) {
	msgs := make([]kafka.Message, 0, r.cfg.batchSize)
	for b := range in {
		msgs = msgs[:0]
		for _, rec := range b.records {
			msgs = append(msgs, rec.Message)
		}
		spans := r.startSpans(b.records, msgs)
		ok := r.untilDone(ctx, "publish to Kafka", len(msgs), b.records[0].ID, func() error { return r.pub.WriteMessages(ctx, msgs...) })
		endSpans(spans, ok)
		if !ok {
			return
		}
		r.ackNs.Store(uint64(time.Now().UnixNano()))
		for _, fn := range r.cfg.onPublished {
			fn(b.records)
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}

// deleteStage hands acknowledged rows to the read stage, which deletes them with its next read; once that
// has stopped, it deletes them itself, merging whatever batches are waiting into one statement.
func (r *Relay) deleteStage(ctx context.Context, in <-chan batch, acked *ackedRows, flying *inflight) {
	for b := range in {
		if !acked.add(b) {
			r.deleteAcked(ctx, acked, flying)
		}
	}
	r.deleteAcked(ctx, acked, flying) // what the read stage left
}

// deleteAcked deletes the acknowledged rows waiting, retrying until it succeeds or ctx ends.
func (r *Relay) deleteAcked(ctx context.Context, acked *ackedRows, flying *inflight) {
	ids, n := acked.take(0)
	if len(ids) == 0 {
		return
	}
	del := func() error {
		b := queueDelete(ids)
		b.Queue("commit")
		return r.pool.SendBatch(ctx, b).Close()
	}
	if r.untilDone(ctx, "delete published outbox rows", len(ids), ids[0], del) {
		r.deleted(ids, n, flying)
	}
}

// untilDone runs op until it succeeds, retrying with backoff: a stage never moves past a batch it could not
// finish. It reports false once ctx ends.
func (r *Relay) untilDone(ctx context.Context, what string, rows int, firstID int64, op func() error) bool {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.retries.Add(1)
		d := r.backoff(attempt)
		r.log.Warn().Err(err).Int("rows", rows).Int64("first_id", firstID).Dur("retry_in", d).Msg(what + " failed; retrying")
		if !retry.Sleep(ctx, d) {
			return false
		}
	}
}

func appendIDs(ids []int64, b batch) []int64 {
	for _, rec := range b.records {
		ids = append(ids, rec.ID)
	}
	return ids
}

func (r *Relay) backoff(attempt int) time.Duration {
	return retry.Backoff(attempt, r.cfg.backoffMin, r.cfg.backoffMax)
}
