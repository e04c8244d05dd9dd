package forwarder_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// contender is one way of getting a backlog of messages into Kafka.
type contender struct {
	id     string // for -only and metric names
	name   string // for the table
	usesDB bool   // loads its backlog into a fresh Postgres database
	new    func(env runEnv) (run, error)
}

// runEnv is what one run of a contender gets: its own topic and, when it uses one, its own database.
type runEnv struct {
	cfg     *config
	brokers []string
	topic   string
	pool    *pgxpool.Pool // nil unless usesDB
	log     zerolog.Logger
}

// run is one measurement. load is not timed; drain is, and returns once Kafka acknowledged n messages.
type run interface {
	load(ctx context.Context, msgs []kafka.Message) error
	drain(ctx context.Context, n int) error
	close() error
}

func contenders() []contender {
	return []contender{
		{id: "raw", name: "raw kafka-go writer (no outbox)", new: newRawKafkaGo},
		{id: "choreo", name: "choreo outbox relay", usesDB: true, new: newChoreoRelay},
		{id: "watermill", name: "watermill forwarder (default schema)", usesDB: true, new: newWatermill(defaultSchema)},
		{id: "watermill-queue", name: "watermill forwarder (queue schema)", usesDB: true, new: newWatermill(queueSchema)},
		{id: "sarama", name: "sarama SyncProducer 1-by-1 (no outbox)", new: newSaramaOneByOne},
	}
}

func contenderIDs() []string {
	var ids []string
	for _, c := range contenders() {
		ids = append(ids, c.id)
	}
	return ids
}

// waitFor polls query, which returns one boolean, until it is true: a contender's outbox has caught up
// with what it published to Kafka. Not timed; it lets the contender stop without cutting its last
// database acknowledgement short.
func waitFor(ctx context.Context, pool *pgxpool.Pool, what, query string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var done bool
		if err := pool.QueryRow(ctx, query).Scan(&done); err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// chunks calls fn with consecutive slices of at most size messages.
func chunks(msgs []kafka.Message, size int, fn func([]kafka.Message) error) error {
	for i := 0; i < len(msgs); i += size {
		if err := fn(msgs[i:min(i+size, len(msgs))]); err != nil {
			return err
		}
	}
	return nil
}
