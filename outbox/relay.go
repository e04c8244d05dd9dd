package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/retry"
)

// Publisher writes messages to Kafka and returns once every one is acknowledged; *kafka.Writer satisfies it.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Record is a row the relay published.
type Record struct {
	ID        int64
	CreatedAt time.Time
	Message   kafka.Message
}

// Stats is a snapshot of a relay's counters.
type Stats struct {
	Active    bool      // this instance holds the outbox lock
	Published uint64    // rows acknowledged by Kafka and deleted
	Batches   uint64    // batches published
	Retries   uint64    // failed Kafka writes or database calls that were retried
	LastAck   time.Time // when Kafka last acknowledged a batch
}

// Relay publishes committed outbox rows to Kafka in id order and deletes them once acknowledged.
//
// Exactly one relay per database is active at a time: it holds a session-level advisory lock, and standby
// instances block on that lock, so per-key order holds with any number of instances. The active relay is a
// three-stage pipeline (read, publish, delete) so that database work overlaps Kafka round trips; batches are
// published one after another, so a batch is retried before any later row is sent. A crash between the Kafka
// ack and the delete republishes the batch: duplicates, never loss. Consumers dedupe by event id.
type Relay struct {
	pool *pgxpool.Pool
	pub  Publisher
	log  zerolog.Logger
	cfg  config

	active                             atomic.Bool
	published, batches, retries, ackNs atomic.Uint64
}

type config struct {
	batchSize    int
	pollInterval time.Duration
	rescanEvery  time.Duration
	lockID       int64
	backoffMin   time.Duration
	backoffMax   time.Duration
	grace        time.Duration
	onPublished  func([]Record)
}

// Option configures a Relay.
type Option func(*config)

// WithBatchSize sets how many rows one read, one Kafka write and one delete handle (default 1000).
func WithBatchSize(n int) Option { return func(c *config) { c.batchSize = n } }

// WithPollInterval sets the fallback poll for when a notification is missed (default 1s).
func WithPollInterval(d time.Duration) Option { return func(c *config) { c.pollInterval = d } }

// WithRescanEvery bounds how long, under sustained load, a row from a transaction that committed after later
// ids were read can wait before the relay rescans from the lowest id (default 1s).
func WithRescanEvery(d time.Duration) Option { return func(c *config) { c.rescanEvery = d } }

// WithLockID sets the advisory lock key that elects the active relay (default: a fixed key; one outbox per database).
func WithLockID(id int64) Option { return func(c *config) { c.lockID = id } }

// WithBackoff sets the retry backoff bounds for Kafka and Postgres failures (default 100ms to 5s).
func WithBackoff(lo, hi time.Duration) Option {
	return func(c *config) { c.backoffMin, c.backoffMax = lo, hi }
}

// WithShutdownGrace sets how long Run keeps publishing and deleting already-read batches after its context
// ends (default 5s). What is not finished by then is republished by the next relay.
func WithShutdownGrace(d time.Duration) Option { return func(c *config) { c.grace = d } }

// WithOnPublished registers a callback run after each batch is acknowledged by Kafka (metrics, benchmarks).
func WithOnPublished(fn func([]Record)) Option { return func(c *config) { c.onPublished = fn } }

// defaultLockID is "outbox" in ASCII.
const defaultLockID = 0x6f7574626f78

// NewRelay returns a relay for the outbox table in pool's database, publishing through pub.
func NewRelay(pool *pgxpool.Pool, pub Publisher, log zerolog.Logger, opts ...Option) *Relay {
	cfg := config{
		batchSize:    1000,
		pollInterval: time.Second,
		rescanEvery:  time.Second,
		lockID:       defaultLockID,
		backoffMin:   100 * time.Millisecond,
		backoffMax:   5 * time.Second,
		grace:        5 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return &Relay{pool: pool, pub: pub, log: log.With().Str("component", "relay").Logger(), cfg: cfg}
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	var last time.Time
	if ns := r.ackNs.Load(); ns > 0 {
		last = time.Unix(0, int64(ns))
	}
	return Stats{Active: r.active.Load(), Published: r.published.Load(), Batches: r.batches.Load(), Retries: r.retries.Load(), LastAck: last}
}

// Backlog reports how many rows wait to be published and the age of the oldest.
func (r *Relay) Backlog(ctx context.Context) (rows int64, oldest time.Duration, err error) {
	var age float64
	err = r.pool.QueryRow(ctx, `SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) FROM outbox`).Scan(&rows, &age)
	if err != nil {
		return 0, 0, fmt.Errorf("read outbox backlog: %w", err)
	}
	return rows, time.Duration(age * float64(time.Second)), nil
}

// Run relays until ctx ends. While another instance is active it waits as a standby. Connection failures
// are retried with backoff; Run returns nil after a clean shutdown.
func (r *Relay) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := r.runActive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.retries.Add(1)
		d := r.backoff(attempt)
		r.log.Warn().Err(err).Dur("retry_in", d).Msg("relay stopped; retrying")
		if !retry.Sleep(ctx, d) {
			return nil
		}
	}
}

// runActive takes the outbox lock on a dedicated connection, listens for commits on it, and relays until
// ctx ends or that connection fails (the lock is then gone and another instance may take over).
func (r *Relay) runActive(ctx context.Context) error {
	conn, err := r.takeLock(ctx)
	if err != nil || conn == nil {
		return err
	}
	// The connection holds the session lock and a LISTEN; never hand it back to the pool.
	defer func() { _ = conn.Conn().Close(context.Background()); conn.Release() }()
	// LISTEN only now: a session that listens must not sit idle in a transaction or a long statement, or
	// it holds back the notification queue. The first read scans from the lowest id, so commits made
	// before the LISTEN are not missed.
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("listen for outbox commits: %w", err)
	}
	r.active.Store(true)
	defer r.active.Store(false)
	r.log.Info().Msg("relay active")

	// ctx ending stops reading; batches already read are still published and deleted under workCtx, which
	// ends when the lock connection dies (another relay may be active then) or the shutdown grace is over.
	workCtx, stopWork := context.WithCancelCause(context.WithoutCancel(ctx))
	wake := make(chan struct{}, 1)
	listening := make(chan struct{})
	go func() { defer close(listening); r.listen(workCtx, conn.Conn(), wake, stopWork) }()
	defer func() { stopWork(nil); <-listening }() // the connection closes only once nothing uses it
	defer context.AfterFunc(ctx, func() {
		time.AfterFunc(r.cfg.grace, func() { stopWork(errors.New("shutdown grace period over")) })
	})()

	r.pipeline(ctx, workCtx, wake)
	if ctx.Err() == nil {
		return context.Cause(workCtx)
	}
	return nil
}

// takeLock returns a connection holding the outbox lock, or nil once ctx ends. While another instance holds
// it, a standby polls with pg_try_advisory_lock between idle waits: blocking in pg_advisory_lock would keep
// a statement, and so a snapshot, open for as long as the other relay runs, and VACUUM could not remove
// any dead row in the database meanwhile. Between polls the standby holds no connection.
func (r *Relay) takeLock(ctx context.Context) (*pgxpool.Conn, error) {
	for standing := false; ; {
		conn, err := r.pool.Acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("acquire lock connection: %w", err)
		}
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, r.cfg.lockID).Scan(&got); err != nil {
			conn.Release()
			return nil, fmt.Errorf("try outbox lock: %w", err)
		}
		if got {
			return conn, nil
		}
		conn.Release()
		if !standing {
			r.log.Info().Msg("another relay is active; standing by")
			standing = true
		}
		if !retry.Sleep(ctx, r.cfg.pollInterval) {
			return nil, nil
		}
	}
}

// listen turns notifications on conn into wake-ups. Any error but cancellation means the lock is lost.
func (r *Relay) listen(ctx context.Context, conn *pgx.Conn, wake chan<- struct{}, lost context.CancelCauseFunc) {
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if ctx.Err() == nil {
				lost(fmt.Errorf("lock connection: %w", err))
			}
			return
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

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

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer close(toDelete); r.publishStage(workCtx, toPublish, toDelete) }()
	go func() { defer wg.Done(); r.deleteStage(workCtx, toDelete, flying) }()

	r.readStage(stopCtx, workCtx, wake, toPublish, flying)
	close(toPublish)
	wg.Wait()
}

// readStage reads committed rows in id order. Ids are taken at insert time, so a transaction can commit
// after rows with higher ids were already read. Two queries keep such late rows from waiting:
//   - a scan from the lowest id that skips the rows in flight, whenever the relay is caught up (and at
//     least every rescanEvery under sustained load); it finds late rows as well as new ones;
//   - a cheap cursor read (id > last read) while full batches keep coming.
func (r *Relay) readStage(stopCtx, workCtx context.Context, wake <-chan struct{}, out chan<- batch, flying *inflight) {
	var cursor int64
	streaming, announced := false, false
	lastScan := time.Now()
	poll := time.NewTimer(r.cfg.pollInterval)
	defer poll.Stop()
	for attempt := 0; stopCtx.Err() == nil && workCtx.Err() == nil; {
		var recs []Record
		var more bool
		var err error
		if streaming {
			recs, more, err = r.read(stopCtx, readAfterSQL, cursor)
		} else {
			recs, more, err = r.read(stopCtx, readSkippingSQL, flying.list())
			lastScan = time.Now()
		}
		if err != nil {
			if stopCtx.Err() != nil {
				return
			}
			r.retries.Add(1)
			r.log.Warn().Err(err).Msg("read outbox; retrying")
			if !retry.Sleep(stopCtx, r.backoff(attempt)) {
				return
			}
			attempt++
			streaming = false
			continue
		}
		attempt = 0
		if len(recs) > 0 {
			flying.add(recs)
			select {
			case out <- batch{records: recs}:
			case <-workCtx.Done():
				return
			}
			cursor = max(cursor, recs[len(recs)-1].ID)
		}
		if more {
			streaming = time.Since(lastScan) < r.cfg.rescanEvery
			continue
		}
		streaming = false
		if len(recs) > 0 {
			continue // rows keep coming: read on without sleeping, and without asking for notifications
		}
		// Caught up. Ask writers to notify, then read once more: a commit that saw the flag unset and
		// committed before this read is found by it; one that sees the flag set notifies.
		if !announced {
			if err := r.setWaiting(stopCtx, true); err != nil {
				continue // the read above retries with backoff if the database is gone
			}
			announced = true
			continue
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(r.cfg.pollInterval)
		select {
		case <-wake:
		case <-poll.C:
		case <-stopCtx.Done():
		case <-workCtx.Done():
		}
		// Awake: writers need not notify while the relay keeps reading.
		if err := r.setWaiting(stopCtx, false); err == nil {
			announced = false
		}
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

// Postgres 14+ hashes the array of a "<> ALL" with a parameter, so skipping in-flight ids stays cheap.
const (
	readAfterSQL    = `SELECT id, topic, key, headers, value, created_at FROM outbox WHERE id > $1 ORDER BY id LIMIT $2`
	readSkippingSQL = `SELECT id, topic, key, headers, value, created_at FROM outbox WHERE id <> ALL($1::bigint[]) ORDER BY id LIMIT $2`
)

// read returns the next batch and whether more rows wait behind it (the batch was cut by count or bytes).
func (r *Relay) read(ctx context.Context, sql string, arg any) ([]Record, bool, error) {
	rows, err := r.pool.Query(ctx, sql, arg, r.cfg.batchSize)
	if err != nil {
		return nil, false, fmt.Errorf("read outbox: %w", err)
	}
	recs := make([]Record, 0, r.cfg.batchSize)
	var hs []header
	size, more := 0, false
	for rows.Next() {
		var rec Record
		var rawHeaders []byte
		if err := rows.Scan(&rec.ID, &rec.Message.Topic, &rec.Message.Key, &rawHeaders, &rec.Message.Value, &rec.CreatedAt); err != nil {
			rows.Close()
			return nil, false, fmt.Errorf("scan outbox row: %w", err)
		}
		hs = hs[:0]
		if err := json.Unmarshal(rawHeaders, &hs); err != nil {
			rows.Close()
			return nil, false, fmt.Errorf("decode headers of outbox row %d: %w", rec.ID, err)
		}
		rec.Message.Headers = make([]kafka.Header, len(hs))
		for i, h := range hs {
			rec.Message.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
		// Stop at MaxBatchBytes so that no partition needs two produce requests (see MaxBatchBytes); the
		// rows left out are read again next time.
		if size += messageSize(rec.Message); size > MaxBatchBytes && len(recs) > 0 {
			more = true
			break
		}
		recs = append(recs, rec)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read outbox: %w", err)
	}
	return recs, more || len(recs) == r.cfg.batchSize, nil
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
		for attempt := 0; ; attempt++ {
			err := r.pub.WriteMessages(ctx, msgs...)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			r.retries.Add(1)
			d := r.backoff(attempt)
			r.log.Warn().Err(err).Int("rows", len(msgs)).Int64("first_id", b.records[0].ID).Dur("retry_in", d).Msg("publish to Kafka failed; retrying")
			if !retry.Sleep(ctx, d) {
				return
			}
		}
		r.ackNs.Store(uint64(time.Now().UnixNano()))
		if r.cfg.onPublished != nil {
			r.cfg.onPublished(b.records)
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}

// deleteStage deletes acknowledged rows, merging whatever batches are waiting into one statement.
func (r *Relay) deleteStage(ctx context.Context, in <-chan batch, flying *inflight) {
	var ids []int64
	for b := range in {
		ids = appendIDs(ids[:0], b)
		n := 1
	more:
		for {
			select {
			case next, ok := <-in:
				if !ok {
					break more
				}
				ids = appendIDs(ids, next)
				n++
			default:
				break more
			}
		}
		for attempt := 0; ; attempt++ {
			_, err := r.pool.Exec(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, ids)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			r.retries.Add(1)
			d := r.backoff(attempt)
			r.log.Warn().Err(err).Int("rows", len(ids)).Dur("retry_in", d).Msg("delete published outbox rows failed; retrying")
			if !retry.Sleep(ctx, d) {
				return
			}
		}
		flying.remove(ids)
		r.published.Add(uint64(len(ids)))
		r.batches.Add(uint64(n))
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
