package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

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
	// Of the committed transactions LocalCommits handed over: published without a read, read instead (a
	// lower id was unaccounted for; see frontier), and dropped because a read had returned them already.
	HandOvers, HandOversRead, HandOversSeen uint64
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

	active                                  atomic.Bool
	published, batches, retries, ackNs      atomic.Uint64
	handOvers, handOversRead, handOversSeen atomic.Uint64
}

type config struct {
	batchSize    int
	pollInterval time.Duration
	lockID       int64 // the advisory lock key that elects the active relay
	backoffMin   time.Duration
	backoffMax   time.Duration
	grace        time.Duration
	onPublished  []func([]Record)
	tracer       trace.Tracer  // nil: no spans
	local        *LocalCommits // nil: every writer notifies
}

// Option configures a Relay.
type Option func(*config)

// WithBatchSize sets how many rows one read, one Kafka write and one delete handle (default 1000; never
// more than a *kafka.Writer publisher's BatchSize).
func WithBatchSize(n int) Option { return func(c *config) { c.batchSize = n } }

// WithPollInterval sets the fallback poll for when a notification is missed (default 1s).
func WithPollInterval(d time.Duration) Option { return func(c *config) { c.pollInterval = d } }

// WithBackoff sets the retry backoff bounds for Kafka and Postgres failures (default 100ms to 5s).
func WithBackoff(lo, hi time.Duration) Option {
	return func(c *config) { c.backoffMin, c.backoffMax = lo, hi }
}

// WithShutdownGrace sets how long Run keeps publishing and deleting already-read batches after its context
// ends (default 5s). What is not finished by then is republished by the next relay.
func WithShutdownGrace(d time.Duration) Option { return func(c *config) { c.grace = d } }

// WithOnPublished registers a callback run after each batch is acknowledged by Kafka (metrics, benchmarks);
// each one registered runs, in order.
func WithOnPublished(fn func([]Record)) Option {
	return func(c *config) { c.onPublished = append(c.onPublished, fn) }
}

// WithLocalCommits makes the relay hear of its own process's commits from l (see LocalCommits) rather than
// through NOTIFY. l must be configured on the pool the process writes its outbox rows with.
func WithLocalCommits(l *LocalCommits) Option { return func(c *config) { c.local = l } }

// defaultLockID is "outbox" in ASCII.
const defaultLockID = 0x6f7574626f78

// NewRelay returns a relay for the outbox table in pool's database, publishing through pub.
func NewRelay(pool *pgxpool.Pool, pub Publisher, log zerolog.Logger, opts ...Option) *Relay {
	cfg := config{
		batchSize:    1000,
		pollInterval: time.Second,
		lockID:       defaultLockID,
		backoffMin:   100 * time.Millisecond,
		backoffMax:   5 * time.Second,
		grace:        5 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	// A kafka-go writer splits a partition's share of a batch larger than its BatchSize into several
	// produce requests, and an earlier one failing does not stop the later ones: keep every batch within one.
	limit := 0
	switch w := pub.(type) {
	case *kafka.Writer:
		limit = w.BatchSize
	case interface{ BatchSize() int }:
		limit = w.BatchSize()
	}
	if limit > 0 && cfg.batchSize > limit {
		cfg.batchSize = limit
	}
	return &Relay{pool: pool, pub: pub, log: log.With().Str("component", "relay").Logger(), cfg: cfg}
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	var last time.Time
	if ns := r.ackNs.Load(); ns > 0 {
		last = time.Unix(0, int64(ns))
	}
	return Stats{Active: r.active.Load(), Published: r.published.Load(), Batches: r.batches.Load(), Retries: r.retries.Load(), LastAck: last,
		HandOvers: r.handOvers.Load(), HandOversRead: r.handOversRead.Load(), HandOversSeen: r.handOversSeen.Load()}
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
	// Name this process as the holder: its own writers stop notifying (they wake this relay in process),
	// and those of a process that held the lock before start notifying again.
	holder := ""
	if r.cfg.local != nil {
		holder = r.cfg.local.id
	}
	if _, err := conn.Exec(ctx, `UPDATE outbox_relay SET holder = $1 WHERE id = 1`, holder); err != nil {
		return fmt.Errorf("name the outbox relay's holder: %w", err)
	}
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
