package projection

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/retry"
)

// Config configures a Runner.
type Config struct {
	Brokers   []string
	Conn      kafkaconn.Config // TLS and SASL (zero: plaintext)
	Namespace string           // prefixes the projection's topics (tests share a cluster)
	// BatchEvents is the most events one transaction applies (default 20,000). Replays fill their batches;
	// a live projection applies what has arrived.
	BatchEvents int
	// MaxWait is how long a fetch waits for new events when the projection is caught up (default 200ms).
	MaxWait time.Duration
	// ApplyInterval is the least time from the start of one live transaction to the start of the next
	// (default 50ms; negative: none). Under load a read model then applies what arrived meanwhile in one
	// transaction instead of one transaction per arrival, which would cost as much as the saga's own
	// steps; an event arriving after a quiet spell is applied at once.
	ApplyInterval time.Duration
	Log           zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.BatchEvents <= 0 {
		c.BatchEvents = 20000
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 200 * time.Millisecond
	}
	if c.ApplyInterval == 0 {
		c.ApplyInterval = 50 * time.Millisecond
	}
	return c
}

// Runner keeps one projection in one database.
type Runner struct {
	cfg  Config
	pool *pgxpool.Pool
	reg  *events.Registry
	proj Projection
	log  zerolog.Logger

	applied, batches, restarts, skipped atomic.Uint64
}

// New returns a Runner of proj over pool, a database migrated with Migrations.
func New(cfg Config, pool *pgxpool.Pool, reg *events.Registry, proj Projection) *Runner {
	cfg = cfg.withDefaults()
	return &Runner{cfg: cfg, pool: pool, reg: reg, proj: proj, log: cfg.Log.With().Str("projection", proj.Name()).Logger()}
}

// Projection is what the runner keeps.
func (r *Runner) Projection() Projection { return r.proj }

// Stats are a live runner's counters since it started.
type Stats struct {
	Applied  uint64 // events applied to the live copy
	Batches  uint64 // transactions committed
	Restarts uint64 // times it started over from its stored positions (a swap, an error)
	Skipped  uint64 // messages that are no event or whose payload does not decode: on no table but counted
}

// Stats returns the runner's counters.
func (r *Runner) Stats() Stats {
	return Stats{Applied: r.applied.Load(), Batches: r.batches.Load(), Restarts: r.restarts.Load(), Skipped: r.skipped.Load()}
}

func (r *Runner) streamConfig() streamConfig {
	return streamConfig{brokers: r.cfg.Brokers, conn: r.cfg.Conn, maxWait: r.cfg.MaxWait, maxBytes: 16 << 20, buffer: 4 * r.cfg.BatchEvents}
}

// errMoved means the live positions are not where this runner left them: a replay swapped in a new copy.
var errMoved = errors.New("the projection's positions moved (a replay swapped in a new copy)")

// Run keeps the live copy until ctx ends. A missing live copy is built first, as a replay builds one, so
// that no reader ever sees it half-built. After a swap, or an error, it starts over from the positions
// stored in the live copy.
func (r *Runner) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.restarts.Add(1)
		if errors.Is(err, errMoved) {
			r.log.Info().Msg("a replay swapped in a new copy; continuing from its positions")
			attempt = -1
			continue
		}
		r.log.Warn().Err(err).Msg("projection failed; starting over from its stored positions")
		if !retry.Sleep(ctx, retry.Backoff(attempt, 200*time.Millisecond, 10*time.Second)) {
			return nil
		}
	}
}

// follow applies new events to the live copy until ctx ends or something fails.
func (r *Runner) follow(ctx context.Context) error {
	live := r.proj.Name()
	exists, err := schemaExists(ctx, r.pool, live)
	if err != nil {
		return err
	}
	if !exists {
		r.log.Info().Msg("no live copy yet: building it from the topics")
		if _, err := r.Rebuild(ctx, RebuildOptions{}); err != nil && !errors.Is(err, ErrBusy) {
			return fmt.Errorf("build %s: %w", live, err)
		}
		return errMoved // start over from the copy just built (or the one another process builds)
	}
	committed, err := r.livePositions(ctx)
	if err != nil {
		return err
	}
	from, err := r.startPositions(ctx, committed)
	if err != nil {
		return err
	}
	s := openStream(ctx, r.streamConfig(), from)
	defer s.Close()
	var began time.Time
	for {
		if d := time.Until(began.Add(r.cfg.ApplyInterval)); d > 0 && !retry.Sleep(ctx, d) {
			return ctx.Err()
		}
		msgs, err := s.next(ctx, r.cfg.BatchEvents, time.Minute)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		began = time.Now()
		moved, err := r.applyLive(ctx, committed, msgs)
		if err != nil {
			return err
		}
		maps.Copy(committed, moved)
		r.applied.Add(uint64(len(msgs)))
		r.batches.Add(1)
	}
}

func (r *Runner) livePositions(ctx context.Context) (positions, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	return loadPositions(ctx, tx, r.proj.Name(), false)
}

// applyLive applies msgs to the live copy if its positions are still committed, and moves them. BEGIN goes
// out with the positions' lock, and COMMIT with their update: two round trips besides the projection's own.
func (r *Runner) applyLive(ctx context.Context, committed positions, msgs []kafka.Message) (positions, error) {
	live := r.proj.Name()
	var now positions
	first := &pgx.Batch{}
	first.Queue(searchPathSQL, searchPath(live))
	// The positions' row locks make a swap wait for this batch, and this batch wait for a swap.
	first.Queue(positionsSQL(live, true)).Query(func(rows pgx.Rows) (err error) {
		now, err = scanPositions(rows, live)
		return err
	})
	tx, err := postgres.BeginWith(ctx, r.pool, first)
	if err != nil {
		return nil, fmt.Errorf("begin batch of %s: %w", live, err)
	}
	defer tx.Rollback(ctx)
	if !maps.Equal(now, committed) {
		return nil, errMoved
	}
	moved, err := r.applyEvents(ctx, tx, live, msgs, true)
	if err != nil {
		return nil, err
	}
	last := &pgx.Batch{}
	if len(moved) > 0 {
		last.Queue(savePositionsSQL, positionArgs(moved)...)
	}
	if err := tx.CommitWith(ctx, last); err != nil {
		return nil, fmt.Errorf("commit batch of %s: %w", live, err)
	}
	return moved, nil
}

// apply decodes msgs and applies them, with the positions they move, to schema in tx (see applyEvents).
func (r *Runner) apply(ctx context.Context, tx pgx.Tx, schema string, msgs []kafka.Message, deadLetter bool) (positions, error) {
	if err := setSearchPath(ctx, tx, schema); err != nil {
		return nil, err
	}
	moved, err := r.applyEvents(ctx, tx, schema, msgs, deadLetter)
	if err != nil {
		return nil, err
	}
	return moved, savePositions(ctx, tx, moved)
}

// applyEvents decodes msgs and applies them to schema, which tx's search path points at, and returns the
// positions they move. With deadLetter (the live copy), a message that cannot be applied goes to its
// topic's dead-letter topic through the outbox, in tx, exactly once; a rebuild only counts it (the live
// copy dead-lettered it when it first came).
func (r *Runner) applyEvents(ctx context.Context, tx pgx.Tx, schema string, msgs []kafka.Message, deadLetter bool) (positions, error) {
	evs := make([]consumer.Event, 0, len(msgs))
	moved := positions{}
	for _, m := range msgs {
		moved[partition{m.Topic, m.Partition}] = m.Offset + 1
		ev, err := r.decode(m)
		if err == nil {
			evs = append(evs, ev)
			continue
		}
		if deadLetter {
			if err := consumer.AppendDeadLetter(ctx, tx, m, r.cfg.Namespace+r.proj.Name(), err); err != nil {
				return nil, fmt.Errorf("dead-letter %s/%d/%d: %w", m.Topic, m.Partition, m.Offset, err)
			}
		}
	}
	if err := r.proj.Apply(ctx, tx, evs); err != nil {
		return nil, fmt.Errorf("apply %d events to %s: %w", len(evs), schema, err)
	}
	return moved, nil
}

// decode reads m's envelope and payload. A type the registry does not know comes with a nil payload (the
// timeline records it); a message that is no event, or a known type that does not decode, is an error:
// the read model moves on without it (it cannot stop for it), the live copy dead-letters it, and a replay
// once the producer is fixed puts it right.
func (r *Runner) decode(m kafka.Message) (consumer.Event, error) {
	env, err := events.FromMessage(m)
	if err != nil {
		r.skipped.Add(1)
		r.log.Warn().Err(err).Str("topic", m.Topic).Int("partition", m.Partition).Int64("offset", m.Offset).Msg("a message that is no event: not applied")
		return consumer.Event{}, fmt.Errorf("not an event: %w", err)
	}
	ev := consumer.Event{Envelope: env, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	ev.Payload, err = r.reg.Decode(env)
	var unknown *events.UnknownTypeError
	if err != nil && !errors.As(err, &unknown) {
		r.skipped.Add(1)
		r.log.Warn().Err(err).Str("event_id", env.ID.String()).Str("type", env.Type).Msg("an event whose payload does not decode: not applied")
		return consumer.Event{}, err
	}
	return ev, nil
}

// partitions returns every partition of the projection's topics with its first and next offsets.
func (r *Runner) partitions(ctx context.Context) (map[partition]kafkaadmin.PartitionInfo, error) {
	in, err := kafkaadmin.Admin{Brokers: r.cfg.Brokers, Conn: r.cfg.Conn}.Inspector()
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out := map[partition]kafkaadmin.PartitionInfo{}
	for _, t := range r.proj.Topics() {
		ti, err := in.Topic(ctx, r.cfg.Namespace+t)
		if err != nil {
			return nil, fmt.Errorf("describe %s: %w", r.cfg.Namespace+t, err)
		}
		for _, p := range ti.Partitions {
			out[partition{ti.Name, p.ID}] = p
		}
	}
	return out, nil
}

// startPositions is stored completed with the first offset of every partition it does not name.
func (r *Runner) startPositions(ctx context.Context, stored positions) (positions, error) {
	parts, err := r.partitions(ctx)
	if err != nil {
		return nil, err
	}
	from := positions{}
	for p, info := range parts {
		from[p] = info.Start
		if off, ok := stored[p]; ok && off >= info.Start {
			from[p] = off
		}
	}
	return from, nil
}
