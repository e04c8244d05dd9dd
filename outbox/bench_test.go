package outbox_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/outbox"
)

const (
	benchEvents    = 100_000
	benchBatch     = 1000
	benchPayload   = 500
	benchKeys      = 1000
	benchLagEvents = 4000
	benchWriters   = 8
	benchRounds    = 3
	benchAppendFor = 3 * time.Second
	benchLagRate   = 1000 // events/s offered in the lag measurement, spread over the writers
)

// BenchmarkRelay drains a backlog of 100k ~500-byte events through the relay and, in the same run, writes
// the same messages with a raw kafka-go writer of identical settings; it reports both rates and their
// ratio. It then measures publish lag (commit to Kafka ack) with concurrent single-event transactions.
// Postgres runs durable (fsync on), as in production.
func BenchmarkRelay(b *testing.B) {
	ctx := context.Background()
	pool, url := durablePostgres(b)
	// The same database as the writers of the relay's own process see it: they wake it in process.
	local := outbox.NewLocalCommits()
	localPool, err := postgres.Connect(ctx, url, local.Configure)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(localPool.Close)
	brokers := testenv.Kafka(b)
	topic := testenv.Name(b, "bench")
	if err := kafkaadmin.EnsureTopics(ctx, brokers, kafkaadmin.Topic{Name: topic, Partitions: 6}); err != nil {
		b.Fatal(err)
	}
	msgs := benchMessages(topic)

	for range b.N {
		// Alternate the contenders so that drift on a shared machine hits both alike; report medians.
		var raws, relays, ratios []float64
		for range benchRounds {
			raw := rawRate(b, brokers, msgs)
			relay := relayRate(b, pool, brokers, msgs)
			raws, relays, ratios = append(raws, raw), append(relays, relay), append(ratios, relay/raw)
		}
		outboxTPS, localTPS, plainTPS := appendRates(b, pool, localPool, local, brokers, topic)
		lag := relayLag(b, pool, nil, brokers, topic, false)
		localLag := relayLag(b, localPool, local, brokers, topic, false)
		handedLag := relayLag(b, localPool, local, brokers, topic, true)
		rawLag := rawLatency(b, brokers, topic)
		raw, relay, ratio := median(raws), median(relays), median(ratios)

		b.ReportMetric(relay, "relay_events/s")
		b.ReportMetric(raw, "raw_events/s")
		b.ReportMetric(ratio, "relay/raw")
		b.ReportMetric(outboxTPS, "append_tx/s")
		b.ReportMetric(outboxTPS/plainTPS, "append/plain")
		b.ReportMetric(localTPS/plainTPS, "local_append/plain")
		b.ReportMetric(ms(lag[0]), "lag_p50_ms")
		b.ReportMetric(ms(lag[1]), "lag_p99_ms")
		b.ReportMetric(ms(localLag[0]), "local_lag_p50_ms")
		b.ReportMetric(ms(handedLag[0]), "handed_lag_p50_ms")
		fmt.Fprintf(os.Stdout, "\nrelay benchmark: %d events of %d bytes, %d keys, batches of %d, durable Postgres, Kafka %s\n",
			benchEvents, benchPayload, benchKeys, benchBatch, strings.Join(brokers, ","))
		fmt.Fprintf(os.Stdout, "  %d alternating rounds (median, then each round):\n", benchRounds)
		fmt.Fprintf(os.Stdout, "  raw kafka-go writer : %9.0f events/s   %s\n", raw, rounds(raws, "%.0f"))
		fmt.Fprintf(os.Stdout, "  outbox relay        : %9.0f events/s   %s\n", relay, rounds(relays, "%.0f"))
		fmt.Fprintf(os.Stdout, "  relay/raw           : %9.2f           %s\n", ratio, rounds(ratios, "%.2f"))
		fmt.Fprintf(os.Stdout, "  durable commits, %d writers, one event per transaction, %v each:\n", benchWriters, benchAppendFor)
		fmt.Fprintf(os.Stdout, "    outbox, writers in another process (relay running): %7.0f tx/s   outbox/plain = %.2f\n", outboxTPS, outboxTPS/plainTPS)
		fmt.Fprintf(os.Stdout, "    outbox, writers in the relay's process (LocalCommits): %7.0f tx/s   outbox/plain = %.2f\n", localTPS, localTPS/plainTPS)
		fmt.Fprintf(os.Stdout, "    plain table insert                                 : %7.0f tx/s\n", plainTPS)
		fmt.Fprintf(os.Stdout, "  publish lag, %d events offered at %d/s by %d writers, one event per transaction:\n", benchLagEvents, benchLagRate, benchWriters)
		fmt.Fprintf(os.Stdout, "    relay commit->ack, writers in another process : p50 %6.2f ms   p99 %6.2f ms\n", ms(lag[0]), ms(lag[1]))
		fmt.Fprintf(os.Stdout, "    relay commit->ack, writers in its process     : p50 %6.2f ms   p99 %6.2f ms\n", ms(localLag[0]), ms(localLag[1]))
		fmt.Fprintf(os.Stdout, "    ... appends held back to the commit (handed over): p50 %6.2f ms   p99 %6.2f ms\n", ms(handedLag[0]), ms(handedLag[1]))
		fmt.Fprintf(os.Stdout, "    raw write->ack     : p50 %6.2f ms   p99 %6.2f ms\n\n", ms(rawLag[0]), ms(rawLag[1]))
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounds(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// durablePostgres returns a pool on a private cluster with fsync on (the shared test cluster runs
// without it), the outbox migrated.
func durablePostgres(b *testing.B) (*pgxpool.Pool, string) {
	b.Helper()
	ctx := context.Background()
	url := testenv.DurableServerURL(b)
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := postgres.Migrate(ctx, pool, "outbox", outbox.Migrations()); err != nil {
		b.Fatal(err)
	}
	return pool, url
}

func benchMessages(topic string) []kafka.Message {
	payload := []byte(`{"order_id":"` + strings.Repeat("x", benchPayload-16) + `"}`)
	msgs := make([]kafka.Message, benchEvents)
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: topic, Key: fmt.Appendf(nil, "order-%04d", i%benchKeys), Value: payload,
			Headers: []kafka.Header{{Key: "ce_type", Value: []byte("order.placed")}, {Key: "ce_id", Value: fmt.Appendf(nil, "%036d", i)}}}
	}
	return msgs
}

// rawRate writes msgs with the relay's writer settings, one batch after another, like the relay does.
func rawRate(b *testing.B, brokers []string, msgs []kafka.Message) float64 {
	w := outbox.NewKafkaWriter(brokers, benchBatch, kafkaconn.Config{})
	defer w.Close()
	start := time.Now()
	for i := 0; i < len(msgs); i += benchBatch {
		if err := w.WriteMessages(context.Background(), msgs[i:min(i+benchBatch, len(msgs))]...); err != nil {
			b.Fatal(err)
		}
	}
	return float64(len(msgs)) / time.Since(start).Seconds()
}

// relayRate loads msgs into the outbox and vacuums it (untimed), then times the relay draining them.
func relayRate(b *testing.B, pool *pgxpool.Pool, brokers []string, msgs []kafka.Message) float64 {
	ctx := context.Background()
	for i := 0; i < len(msgs); i += benchBatch {
		tx, err := pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := outbox.AppendMessages(ctx, tx, msgs[i:min(i+benchBatch, len(msgs))]...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// Earlier rounds left dead rows behind, as autovacuum would have cleaned; and the loading's WAL would
	// otherwise set off a checkpoint in the middle of a timed round (it did, every third round).
	for _, sql := range []string{`VACUUM ANALYZE outbox`, `CHECKPOINT`} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}
	w := outbox.NewKafkaWriter(brokers, benchBatch, kafkaconn.Config{})
	defer w.Close()
	done := make(chan struct{})
	var published int
	r := outbox.NewRelay(pool, w, testenv.Logger(b), outbox.WithBatchSize(benchBatch), outbox.WithOnPublished(func(recs []outbox.Record) {
		if published += len(recs); published == len(msgs) {
			close(done)
		}
	}))
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	start := time.Now()
	go func() { defer close(stopped); _ = r.Run(runCtx) }()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("relay published %d of %d in 10 minutes", published, len(msgs))
	}
	rate := float64(len(msgs)) / time.Since(start).Seconds()
	cancel()
	<-stopped
	return rate
}

// appendRates measures durable single-event transactions per second from benchWriters goroutines: into
// the outbox while a relay drains it, with writers of another process (they notify) and then of the
// relay's process (pool configured with local: they wake it in process), and the same rows into a plain
// table with no trigger (the ceiling Postgres's group commit gives this disk).
func appendRates(b *testing.B, pool, localPool *pgxpool.Pool, local *outbox.LocalCommits, brokers []string, topic string) (outboxTPS, localTPS, plainTPS float64) {
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS plain (LIKE outbox INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	w := outbox.NewKafkaWriter(brokers, benchBatch, kafkaconn.Config{})
	defer w.Close()
	payload := make([]byte, benchPayload)
	for _, writers := range []struct {
		pool *pgxpool.Pool
		opts []outbox.Option
		tps  *float64
	}{{pool, nil, &outboxTPS}, {localPool, []outbox.Option{outbox.WithLocalCommits(local)}, &localTPS}} {
		r := outbox.NewRelay(writers.pool, w, testenv.Logger(b), writers.opts...)
		runCtx, cancel := context.WithCancel(ctx)
		stopped := make(chan struct{})
		go func() { defer close(stopped); _ = r.Run(runCtx) }()
		*writers.tps = commitRate(b, writers.pool, func(tx pgx.Tx) error {
			return outbox.AppendMessages(ctx, tx, kafka.Message{Topic: topic, Key: []byte("k"), Value: payload})
		})
		cancel()
		<-stopped
	}
	plainTPS = commitRate(b, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO plain (topic, key, headers, value) VALUES ($1, $2, '[]', $3)`, topic, []byte("k"), payload)
		return err
	})
	return outboxTPS, localTPS, plainTPS
}

// commitRate runs write in its own transaction from benchWriters goroutines for benchAppendFor.
func commitRate(b *testing.B, pool *pgxpool.Pool, write func(pgx.Tx) error) float64 {
	ctx := context.Background()
	var total atomic.Int64
	deadline := time.Now().Add(benchAppendFor)
	var wg sync.WaitGroup
	for range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				tx, err := pool.Begin(ctx)
				if err == nil {
					err = write(tx)
				}
				if err == nil {
					err = tx.Commit(ctx)
				}
				if err != nil {
					b.Error(err)
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()) / benchAppendFor.Seconds()
}

// relayLag commits benchLagEvents single-event transactions, offered at benchLagRate from benchWriters
// goroutines, while a relay runs, and returns the p50 and p99 of commit-to-ack. Pacing keeps the machine
// out of saturation, so the numbers are the pipeline's latency rather than queueing.
//
// With heldBack, each transaction is a postgres.Tx whose append is held back to its commit, as a service's
// are: with local, the relay is handed the committed row.
func relayLag(b *testing.B, pool *pgxpool.Pool, local *outbox.LocalCommits, brokers []string, topic string, heldBack bool) [2]time.Duration {
	ctx := context.Background()
	// Acks and commits are timed apart and matched at the end: an ack may be seen before its writer's
	// Commit has returned (a hand-over is made inside it), and a lock held across the commits would
	// serialise the writers and stall the relay's callback behind them.
	var mu sync.Mutex
	committed, acked := map[string]time.Time{}, map[string]time.Time{}
	all := make(chan struct{})
	w := outbox.NewKafkaWriter(brokers, benchBatch, kafkaconn.Config{})
	defer w.Close()
	opts := []outbox.Option{}
	if local != nil {
		opts = append(opts, outbox.WithLocalCommits(local))
	}
	r := outbox.NewRelay(pool, w, testenv.Logger(b), append(opts, outbox.WithOnPublished(func(recs []outbox.Record) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, rec := range recs {
			if v := string(rec.Message.Value); strings.HasPrefix(v, "lag-") {
				if _, ok := acked[v]; !ok {
					acked[v] = now
				}
			}
		}
		if len(acked) == benchLagEvents {
			close(all)
		}
	}))...)
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = r.Run(runCtx) }()
	defer func() { cancel(); <-stopped }()

	var wg sync.WaitGroup
	for wr := range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * benchWriters / benchLagRate)
			defer tick.Stop()
			for i := range benchLagEvents / benchWriters {
				<-tick.C
				value := fmt.Sprintf("lag-%d-%d", wr, i)
				tx, err := begin(ctx, pool, heldBack)
				if err != nil {
					b.Error(err)
					return
				}
				if err := outbox.AppendMessages(ctx, postgres.Later(tx), kafka.Message{Topic: topic, Key: []byte(value), Value: []byte(value)}); err != nil {
					b.Error(err)
					return
				}
				err = tx.Commit(ctx)
				at := time.Now()
				mu.Lock()
				committed[value] = at
				mu.Unlock()
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		b.Fatalf("only %d of %d events acknowledged", n, benchLagEvents)
	}
	mu.Lock()
	defer mu.Unlock()
	lags := make([]time.Duration, 0, len(acked))
	for v, at := range acked {
		lags = append(lags, max(at.Sub(committed[v]), 0)) // an ack just before its Commit returned counts as 0
	}
	return percentiles(lags)
}

// rawLatency is the same paced workload straight to Kafka, one message per write; it returns p50 and p99
// of write-to-ack.
func rawLatency(b *testing.B, brokers []string, topic string) [2]time.Duration {
	w := outbox.NewKafkaWriter(brokers, benchBatch, kafkaconn.Config{})
	defer w.Close()
	var mu sync.Mutex
	var lats []time.Duration
	var wg sync.WaitGroup
	for wr := range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * benchWriters / benchLagRate)
			defer tick.Stop()
			for i := range benchLagEvents / benchWriters {
				<-tick.C
				v := fmt.Appendf(nil, "raw-%d-%d", wr, i)
				start := time.Now()
				if err := w.WriteMessages(context.Background(), kafka.Message{Key: v, Value: v, Topic: topic}); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				lats = append(lats, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return percentiles(lats)
}

func percentiles(ds []time.Duration) [2]time.Duration {
	if len(ds) == 0 {
		return [2]time.Duration{}
	}
	slices.Sort(ds)
	return [2]time.Duration{ds[len(ds)/2], ds[len(ds)*99/100]}
}
