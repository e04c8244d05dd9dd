// Package consumer is the runtime every service consumes events with: a kafka-go consumer group in which
// each assigned partition number (of every topic) has its own reader and worker, so partitions run in
// parallel, each in order, and one that is retrying stalls no other. A batch of a partition's messages is
// applied in one database transaction; each event id is recorded in the inbox table in that transaction so
// redeliveries are skipped; the Kafka offset is committed only after the database. Failures are retried
// with backoff; an event that cannot be decoded or whose handler fails permanently is written, in the same
// transaction, to the outbox for the dead-letter topic "<topic>.dlq" with the reason. An event that keeps
// failing transiently is parked instead, with its key: the key's later events queue behind it in the
// parked table while other keys flow, until Releaser applies them in order.
package consumer

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/retry"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the numbered SQL migrations that create the inbox table in a service's database. The
// database also needs the outbox migrations: dead letters leave through the outbox.
func Migrations() fs.FS {
	return postgres.MigrationsDir(migrationFiles)
}

// Config configures a Consumer.
type Config struct {
	Brokers []string
	Group   string           // consumer group id; also the inbox's consumer name
	Topics  []string         // topics to consume
	Conn    kafkaconn.Config // TLS and SASL to the brokers (zero: plaintext)

	Tracing   trace.TracerProvider                       // a span per handler call (nil: none); see instrumented
	OnHandled func(eventType string, took time.Duration) // told the duration of every handler call (nil: nobody)

	BatchSize      int           // most messages of one partition applied in one transaction (default 100)
	MaxAttempts    int           // handler attempts before an event's key is parked (default 10)
	BackoffMin     time.Duration // default 100ms
	BackoffMax     time.Duration // default 10s
	InboxRetention time.Duration // how long handled event ids are kept for dedupe (default 7 days)
	Grace          time.Duration // how long shutdown waits for in-flight batches (default 10s)
	// CommitInterval is the least time between two offset commits of a member (default 200ms). Offsets are
	// only where the next owner of a partition starts: what it gets again is in the inbox and skipped, so
	// a commit per batch would cost the coordinator a request per batch for nothing. A generation's last
	// offsets are committed when it ends.
	CommitInterval time.Duration
	// CombineTimeout bounds a transaction that applies several partitions' batches together (default 1s):
	// past it, it is rolled back and each batch is applied on its own (see combiner).
	CombineTimeout time.Duration
	// ApplyInterval is the least time between the starts of two of the combiner's transactions (default 0:
	// none). Under load the batches that arrive within it share one transaction, so its BEGIN, inbox
	// statement, COMMIT and durable flush, and the relay's read and Kafka write that follow, are paid once
	// per interval instead of once per arrival; each hop may wait up to the interval for that. A batch
	// after a quiet spell (no transaction started within the interval) starts at once.
	ApplyInterval time.Duration
	// Linger is how long a batch made only of events the Router marks Unhurried may wait for more events
	// before it is applied (default 0: it does not wait). What arrives meanwhile joins it; the first handled
	// event of another type, or a full batch, ends the wait at once, so the saga's critical path never waits.
	Linger time.Duration

	SessionTimeout    time.Duration // consumer group session timeout (default 10s)
	RebalanceTimeout  time.Duration // default 10s
	HeartbeatInterval time.Duration // default 1s
}

func (c *Config) defaults() error {
	if len(c.Brokers) == 0 || c.Group == "" || len(c.Topics) == 0 {
		return errors.New("consumer config: brokers, group and topics are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	def(&c.BackoffMin, 100*time.Millisecond)
	def(&c.BackoffMax, 10*time.Second)
	def(&c.InboxRetention, 7*24*time.Hour)
	def(&c.Grace, 10*time.Second)
	def(&c.CommitInterval, 200*time.Millisecond)
	def(&c.CombineTimeout, time.Second)
	def(&c.SessionTimeout, 10*time.Second)
	def(&c.RebalanceTimeout, 10*time.Second)
	def(&c.HeartbeatInterval, time.Second)
	return nil
}

// Consumer consumes Config.Topics as Config.Group and applies each event with the Router's handlers.
type Consumer struct {
	cfg    Config
	pool   *pgxpool.Pool
	router *Router
	log    zerolog.Logger
	stats  counters
	tracer trace.Tracer // nil: no spans

	combiner *combiner // applies the workers' ready batches together; nil outside Run
}

// New returns a consumer that applies events to pool's database through router.
func New(cfg Config, pool *pgxpool.Pool, router *Router, log zerolog.Logger) (*Consumer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Consumer{cfg: cfg, pool: pool, router: router, log: log.With().Str("consumer", cfg.Group).Logger(), tracer: tracerOf(cfg)}, nil
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() Stats { return c.stats.snapshot() }

// Run consumes until ctx ends, then lets in-flight batches finish (within Config.Grace) and leaves the group.
//
// Each generation of the group hands this member some partition numbers (Range assignment gives a member the
// same numbers of every topic: they have equal partition counts and are keyed by order id). Every number
// gets a goroutine of its own that reads that partition of each topic and applies its messages, so one
// worker sees all events of an order, and a partition whose events are being retried stalls nothing else.
func (c *Consumer) Run(ctx context.Context) error {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    c.cfg.Group,
		Brokers:               c.cfg.Brokers,
		Dialer:                c.cfg.Conn.Dialer(),
		Topics:                c.cfg.Topics,
		GroupBalancers:        []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
		StartOffset:           kafka.FirstOffset,
		SessionTimeout:        c.cfg.SessionTimeout,
		RebalanceTimeout:      c.cfg.RebalanceTimeout,
		HeartbeatInterval:     c.cfg.HeartbeatInterval,
		JoinGroupBackoff:      500 * time.Millisecond,
		WatchPartitionChanges: true,
		ErrorLogger:           kafka.LoggerFunc(func(msg string, args ...any) { c.log.Warn().Msgf(msg, args...) }),
	})
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", c.cfg.Group, err)
	}
	// Workers finish the batch in hand when their generation ends; at shutdown within the grace period.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	// The combiner serves the workers until the group is closed (deferred below, so run before this).
	combineCtx, stopCombining := context.WithCancel(workCtx)
	c.combiner = newCombiner(c)
	combining := make(chan struct{})
	go func() { defer close(combining); c.combiner.run(combineCtx) }()
	defer func() { stopCombining(); <-combining }()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.Grace, stopWork) })()
	// Closing the group ends the current generation, waits for its partitions to stop, then leaves.
	defer context.AfterFunc(ctx, func() { _ = group.Close() })()
	defer group.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); c.cleanInbox(ctx) }()

	c.log.Info().Strs("topics", c.cfg.Topics).Msg("consumer started")
	for failures := 0; ; {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			// Joining failed (broker unreachable, rebalance in progress); the group keeps trying, and a
			// service must ride out a Kafka outage, so wait and ask again.
			c.stats.fetchErrors.Add(1)
			d := retry.Backoff(failures, c.cfg.BackoffMin, c.cfg.BackoffMax)
			c.log.Warn().Err(err).Dur("retry_in", d).Msg("join consumer group failed; retrying")
			if !retry.Sleep(ctx, d) {
				return nil
			}
			failures++
			continue
		}
		failures = 0
		offsets := map[int]map[string]int64{} // partition number -> topic -> offset to start from
		for topic, assigned := range gen.Assignments {
			for _, a := range assigned {
				if offsets[a.ID] == nil {
					offsets[a.ID] = map[string]int64{}
				}
				offsets[a.ID][topic] = a.Offset
			}
		}
		c.log.Info().Int32("generation", gen.ID).Int("partitions", len(offsets)).Msg("partitions assigned")
		c.startGeneration(gen, workCtx, offsets)
	}
}

// startGeneration runs a worker for every partition number of gen, and a committer that commits their
// offsets in the background and, once they have stopped, commits their last.
func (c *Consumer) startGeneration(gen *kafka.Generation, workCtx context.Context, offsets map[int]map[string]int64) {
	commits := newCommitter(gen.CommitOffsets, c.cfg, c.log)
	var workers sync.WaitGroup
	workers.Add(len(offsets))
	stopped := make(chan struct{})
	go func() { workers.Wait(); close(stopped) }()
	gen.Start(func(genCtx context.Context) { commits.run(genCtx, stopped) })
	for number, from := range offsets {
		gen.Start(func(genCtx context.Context) {
			defer workers.Done()
			c.runPartition(genCtx, workCtx, commits, number, from)
		})
	}
}

// runPartition applies partition number of every topic in from, each from its offset, until genCtx ends
// (a rebalance or shutdown): the batch in hand is finished first, with workCtx for its database work.
func (c *Consumer) runPartition(genCtx, workCtx context.Context, commits *committer, number int, from map[string]int64) {
	log := c.log.With().Int("partition", number).Logger()
	in := make(chan kafka.Message, 2*c.cfg.BatchSize)
	var fetchers sync.WaitGroup
	defer fetchers.Wait()
	for topic, offset := range from {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:        c.cfg.Brokers,
			Dialer:         c.cfg.Conn.Dialer(),
			Topic:          topic,
			Partition:      number,
			MinBytes:       1,
			MaxBytes:       10 << 20,
			MaxWait:        500 * time.Millisecond,
			ReadBackoffMin: 50 * time.Millisecond,
			ReadBackoffMax: time.Second,
			ErrorLogger:    kafka.LoggerFunc(func(msg string, args ...any) { log.Warn().Msgf(msg, args...) }),
		})
		if err := r.SetOffset(offset); err != nil { // only fails for a group reader
			log.Error().Err(err).Str("topic", topic).Msg("set offset")
		}
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			defer r.Close()
			c.fetch(genCtx, r, in, log)
		}()
	}
	w := &worker{c: c, commits: commits, in: in, log: log}
	w.run(genCtx, workCtx)
}

// fetch hands r's messages to in, in order, until ctx ends.
func (c *Consumer) fetch(ctx context.Context, r *kafka.Reader, in chan<- kafka.Message, log zerolog.Logger) {
	for failures := 0; ; {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.stats.fetchErrors.Add(1)
			d := retry.Backoff(failures, c.cfg.BackoffMin, c.cfg.BackoffMax)
			log.Warn().Err(err).Dur("retry_in", d).Msg("fetch failed; retrying")
			if !retry.Sleep(ctx, d) {
				return
			}
			failures++
			continue
		}
		failures = 0
		select {
		case in <- m:
		case <-ctx.Done():
			return
		}
	}
}

// cleanInbox deletes handled event ids older than the retention, hourly.
func (c *Consumer) cleanInbox(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		tag, err := c.pool.Exec(ctx, `DELETE FROM inbox WHERE consumer = $1 AND received_at < now() - make_interval(secs => $2)`,
			c.cfg.Group, c.cfg.InboxRetention.Seconds())
		if err != nil && ctx.Err() == nil {
			c.log.Warn().Err(err).Msg("clean inbox")
		} else if tag.RowsAffected() > 0 {
			c.log.Info().Int64("rows", tag.RowsAffected()).Msg("cleaned inbox")
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}
