// Package consumer is the runtime every service consumes events with: a kafka-go consumer group whose
// partitions are processed in parallel and each in order. A batch of a partition's messages is applied in
// one database transaction (one savepoint per message); each event id is recorded in the inbox table in
// that transaction so redeliveries are skipped; the Kafka offset is committed only after the database.
// Failures are retried with backoff; an event that cannot be decoded or whose handler fails permanently is
// written, in the same transaction, to the outbox for the dead-letter topic "<topic>.dlq" with the reason.
package consumer

import (
	"context"
	"embed"
	"errors"
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
	MaxAttempts    int           // handler attempts before an event is dead-lettered (default 10)
	BackoffMin     time.Duration // default 100ms
	BackoffMax     time.Duration // default 10s
	InboxRetention time.Duration // how long handled event ids are kept for dedupe (default 7 days)
	Grace          time.Duration // how long shutdown waits for in-flight batches (default 10s)

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
func (c *Consumer) Run(ctx context.Context) error {
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:               c.cfg.Brokers,
		Dialer:                c.cfg.Conn.Dialer(),
		GroupID:               c.cfg.Group,
		GroupTopics:           c.cfg.Topics,
		StartOffset:           kafka.FirstOffset,
		MinBytes:              1,
		MaxBytes:              10 << 20,
		MaxWait:               500 * time.Millisecond,
		CommitInterval:        0, // synchronous: CommitMessages returns once the broker has the offset
		SessionTimeout:        c.cfg.SessionTimeout,
		RebalanceTimeout:      c.cfg.RebalanceTimeout,
		HeartbeatInterval:     c.cfg.HeartbeatInterval,
		JoinGroupBackoff:      500 * time.Millisecond,
		ReadBackoffMin:        50 * time.Millisecond,
		ReadBackoffMax:        time.Second,
		WatchPartitionChanges: true,
		// Range assignment gives a member the same partition numbers of every topic (they have equal
		// partition counts and are keyed by order id), so one worker sees all events of an order.
		GroupBalancers: []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
		ErrorLogger:    kafka.LoggerFunc(func(msg string, args ...any) { c.log.Warn().Msgf(msg, args...) }),
	})
	defer reader.Close()

	// Workers keep applying what they already fetched until the grace period after ctx ends.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.Grace, stopWork) })()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.cleanInbox(ctx) }()

	workers := map[int]chan kafka.Message{} // by partition number, across topics
	defer func() {
		for _, ch := range workers {
			close(ch)
		}
		wg.Wait()
	}()
	c.log.Info().Strs("topics", c.cfg.Topics).Msg("consumer started")
	for failures := 0; ; {
		m, err := reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The reader reports group errors (broker unreachable, rebalance failed) and keeps healing
			// itself; a service must ride out a Kafka outage, so wait and fetch again.
			c.stats.fetchErrors.Add(1)
			d := retry.Backoff(failures, c.cfg.BackoffMin, c.cfg.BackoffMax)
			c.log.Warn().Err(err).Dur("retry_in", d).Msg("fetch failed; retrying")
			if !retry.Sleep(ctx, d) {
				return nil
			}
			failures++
			continue
		}
		failures = 0
		ch, ok := workers[m.Partition]
		if !ok {
			ch = make(chan kafka.Message, 2*c.cfg.BatchSize)
			workers[m.Partition] = ch
			w := &worker{c: c, reader: reader, in: ch, log: c.log.With().Int("partition", m.Partition).Logger()}
			wg.Add(1)
			go func() { defer wg.Done(); w.run(workCtx) }()
		}
		select {
		case ch <- m:
		case <-ctx.Done():
			return nil
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
