package forwarder_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/outbox"
)

// rawKafkaGo writes the messages straight to Kafka with the relay's own writer settings (acks=all,
// murmur2, 1 ms batch timeout), one batch after another, as the relay does: the ceiling for the relay.
type rawKafkaGo struct {
	env  runEnv
	w    *kafka.Writer
	msgs []kafka.Message
}

func newRawKafkaGo(env runEnv) (run, error) {
	return &rawKafkaGo{env: env, w: outbox.NewKafkaWriter(env.brokers, env.cfg.batch, kafkaconn.Config{})}, nil
}

func (r *rawKafkaGo) load(_ context.Context, msgs []kafka.Message) error {
	r.msgs = msgs
	return nil
}

func (r *rawKafkaGo) drain(ctx context.Context, n int) error {
	return chunks(r.msgs, r.env.cfg.batch, func(batch []kafka.Message) error {
		if err := r.w.WriteMessages(ctx, batch...); err != nil {
			return fmt.Errorf("write %d messages: %w", len(batch), err)
		}
		return nil
	})
}

func (r *rawKafkaGo) close() error { return r.w.Close() }

// choreoRelay is the product: outbox.AppendMessages in transactions of cfg.batch rows, then the relay
// (batches of cfg.batch, LISTEN/NOTIFY wake-up) publishing with outbox.NewKafkaWriter.
type choreoRelay struct {
	env     runEnv
	w       *kafka.Writer
	stop    context.CancelFunc
	stopped chan error
}

func newChoreoRelay(env runEnv) (run, error) {
	if err := postgres.Migrate(context.Background(), env.pool, "outbox", outbox.Migrations()); err != nil {
		return nil, err
	}
	return &choreoRelay{env: env, w: outbox.NewKafkaWriter(env.brokers, env.cfg.batch, kafkaconn.Config{})}, nil
}

func (c *choreoRelay) load(ctx context.Context, msgs []kafka.Message) error {
	return chunks(msgs, c.env.cfg.batch, func(batch []kafka.Message) error {
		tx, err := c.env.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if err := outbox.AppendMessages(ctx, tx, batch...); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}

// drain starts the relay and returns once Kafka acknowledged n messages; the relay keeps running (it
// still deletes the last rows) until close, so its shutdown is not timed.
func (c *choreoRelay) drain(ctx context.Context, n int) error {
	var published atomic.Int64
	done := make(chan struct{})
	r := outbox.NewRelay(c.env.pool, c.w, c.env.log, outbox.WithBatchSize(c.env.cfg.batch),
		outbox.WithOnPublished(func(recs []outbox.Record) {
			if published.Add(int64(len(recs))) == int64(n) {
				close(done)
			}
		}))
	runCtx, cancel := context.WithCancel(context.Background())
	c.stop, c.stopped = cancel, make(chan error, 1)
	go func() { c.stopped <- r.Run(runCtx) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("relay published %d of %d: %w", published.Load(), n, ctx.Err())
	}
}

func (c *choreoRelay) close() error {
	var err error
	if c.stop != nil {
		err = waitFor(context.Background(), c.env.pool, "the relay to delete every published row", `SELECT NOT EXISTS (SELECT 1 FROM outbox)`)
		c.stop()
		err = errors.Join(err, <-c.stopped)
	}
	return errors.Join(err, c.w.Close())
}
