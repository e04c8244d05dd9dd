package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/outbox"
)

// outboxDB returns a fresh database with the outbox migrated.
func outboxDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := testenv.Postgres(t)
	migrate(t, pool)
	return pool
}

// outboxTx begins a transaction in a fresh outbox database, rolled back when the test ends.
func outboxTx(t *testing.T) pgx.Tx {
	t.Helper()
	tx, err := outboxDB(t).Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// connect opens a pool on url, closed when the test ends.
func connect(t *testing.T, url string, configure ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Connect(context.Background(), url, configure...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func migrate(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if err := postgres.Migrate(context.Background(), pool, "outbox", outbox.Migrations()); err != nil {
		t.Fatalf("migrate outbox: %v", err)
	}
}

func newTopic(t *testing.T, brokers []string, partitions int) string {
	t.Helper()
	topic := testenv.Name(t, "relay")
	if err := kafkaadmin.EnsureTopics(context.Background(), brokers, kafkaadmin.Topic{Name: topic, Partitions: partitions}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	return topic
}

// startRelay runs a relay until the test ends; it returns a function that stops it and waits.
func startRelay(t *testing.T, pool *pgxpool.Pool, pub outbox.Publisher, log zerolog.Logger, opts ...outbox.Option) (*outbox.Relay, func()) {
	t.Helper()
	opts = append([]outbox.Option{outbox.WithBackoff(20*time.Millisecond, 200*time.Millisecond), outbox.WithPollInterval(200 * time.Millisecond)}, opts...)
	r := outbox.NewRelay(pool, pub, log, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay run: %v", err)
		}
	}
	t.Cleanup(stop)
	return r, stop
}

func writer(t *testing.T, brokers []string) *kafka.Writer {
	t.Helper()
	w := outbox.NewKafkaWriter(brokers, 1000, kafkaconn.Config{})
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// appendEvents commits one transaction appending n events for subject, numbered from first.
func appendEvents(t *testing.T, pool *pgxpool.Pool, topic, subject string, first, n int) []events.Envelope {
	t.Helper()
	ctx := context.Background()
	evs := make([]events.Envelope, n)
	for i := range evs {
		e, err := events.New("test", subject, events.OrderCancelled{OrderID: subject, Reason: fmt.Sprint(first + i)})
		if err != nil {
			t.Fatal(err)
		}
		evs[i] = e
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := outbox.Append(ctx, tx, topic, evs...); err != nil {
		t.Fatalf("append: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return evs
}

// consume reads topic from the beginning until want messages arrived or the deadline passed.
func consume(t *testing.T, brokers []string, topic string, want int, within time.Duration) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: brokers, GroupID: testenv.Name(t, "check"), Topic: topic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got []kafka.Message
	for len(got) < want {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consumed %d of %d messages from %s: %v", len(got), want, topic, err)
		}
		got = append(got, m)
	}
	return got
}

// countRows returns how many rows wait in the outbox.
func countRows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// begin begins a transaction on pool: with heldBack a postgres.Tx, whose appends through postgres.Later
// are held back to its commit as a service's are (with LocalCommits on the pool, the relay is handed the
// rows), else a pgx transaction.
func begin(ctx context.Context, pool *pgxpool.Pool, heldBack bool) (pgx.Tx, error) {
	if heldBack {
		return postgres.BeginLater(ctx, pool)
	}
	return pool.Begin(ctx)
}
