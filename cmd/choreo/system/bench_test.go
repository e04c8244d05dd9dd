package system_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

// durableServer starts a private Postgres cluster with its crash-safety defaults (fsync, synchronous_commit
// and full_page_writes on), as production runs, with pg_stat_statements loaded, and returns its server URL.
func durableServer(b *testing.B) string {
	b.Helper()
	url := testenv.DurableServerURL(b, "pg_stat_statements")
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		b.Fatal(err)
	}
	return url
}

// statementReport prints, per saga, the statements and commits every database ran since the last reset,
// and the statements that ran most often; the count is what batching reduces, and unlike time it does
// not depend on what else the machine is doing.
func statementReport(b *testing.B, serverURL string, sagas int, commitsBefore map[string]int64) {
	b.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, serverURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	commits := commitsByDatabase(b, pool)
	rows, err := pool.Query(ctx, `SELECT d.datname, sum(s.calls)::bigint, round(sum(s.total_exec_time))::bigint
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid GROUP BY d.datname ORDER BY 2 DESC`)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("  statements per saga by database (pg_stat_statements):\n")
	var total float64
	for rows.Next() {
		var db string
		var calls, ms int64
		if err := rows.Scan(&db, &calls, &ms); err != nil {
			b.Fatal(err)
		}
		total += float64(calls) / float64(sagas)
		fmt.Printf("    %-28s %6.1f statements  %6.2f commits  %7d ms executing\n", db, float64(calls)/float64(sagas), float64(commits[db]-commitsBefore[db])/float64(sagas), ms)
	}
	fmt.Printf("    %-28s %6.1f statements\n", "all", total)
	rows, err = pool.Query(ctx, `SELECT d.datname, s.calls, round(s.total_exec_time)::bigint, left(regexp_replace(s.query, '\s+', ' ', 'g'), 110)
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid ORDER BY s.calls DESC LIMIT 30`)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("  most frequent statements (calls per saga, ms, database, statement):\n")
	for rows.Next() {
		var db, q string
		var calls, ms int64
		if err := rows.Scan(&db, &calls, &ms, &q); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("    %5.2f %6d  %-22s %s\n", float64(calls)/float64(sagas), ms, db, q)
	}
}

// durableCommitRate is the machine's budget: single-row transactions per second that writers committing
// concurrently reach on the cluster at serverURL, for d.
func durableCommitRate(b *testing.B, serverURL string, writers int, d time.Duration) float64 {
	b.Helper()
	ctx := context.Background()
	url, err := postgres.EnsureDatabase(ctx, serverURL, "commit_rate")
	if err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS commits (n bigserial PRIMARY KEY, at timestamptz DEFAULT now())`); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := pool.Exec(ctx, `INSERT INTO commits DEFAULT VALUES`); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// BenchmarkSagaThroughput places orders as fast as 32 concurrent clients can (closed loop) over 20
// products, half of them also ordering one hot product, through the HTTP API of the whole system on
// durable Postgres, and reports finished sagas per second, from the first POST until every order is final,
// beside the machine's durable commit rate measured in the same run. Run it with
// `go test -run '^$' -bench SagaThroughput -benchtime 1x ./cmd/choreo/system/` (add -cpuprofile to profile).
func BenchmarkSagaThroughput(b *testing.B) {
	const (
		orders   = 3000
		clients  = 32
		products = 20
	)
	server := durableServer(b)
	commitRate := durableCommitRate(b, server, 8, 3*time.Second)
	for range b.N {
		cfg := baseConfig(b)
		cfg.ServerURL = server
		cfg.Partitions = 6
		ctx, cancel := context.WithCancel(context.Background())
		h := startUntil(b, ctx, cfg)
		skus := make([]string, products)
		for i := range skus {
			skus[i] = fmt.Sprintf("BENCH-%02d", i)
			h.putProduct(skus[i], 100, 1_000_000_000)
		}
		h.putProduct("BENCH-HOT", 100, 1_000_000_000)

		commitsBefore := resetStatements(b, server)
		buyer := h.customer("bench")
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(c), 1))
				for next.Add(1) <= orders {
					req := newOrder(buyer, skus[rng.IntN(products)], 1, "tok_visa", "US")
					if rng.IntN(2) == 0 {
						req.Items = append(req.Items, item{"BENCH-HOT", 1})
					}
					if code, body := h.do("POST", "/v1/orders", req, nil); code != http.StatusAccepted {
						b.Errorf("place: %d %s", code, body)
						return
					}
				}
			}()
		}
		wg.Wait()
		placed := time.Since(start)
		for {
			final := scalar[int](h, sagas.Order, `SELECT count(*) FROM orders WHERE status <> 'PENDING'`)
			if final >= orders {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("only %d of %d orders final after 10 minutes", final, orders)
			}
			time.Sleep(20 * time.Millisecond)
		}
		elapsed := time.Since(start)
		rate := float64(orders) / elapsed.Seconds()
		b.ReportMetric(rate, "sagas/s")
		b.ReportMetric(commitRate, "durable_commits/s")
		b.ReportMetric(rate/commitRate, "sagas/commit")
		fmt.Printf("\nsaga throughput: %d orders, %d clients, %d products + 1 hot, durable Postgres, Kafka %v\n", orders, clients, products, cfg.Brokers)
		fmt.Printf("  placed in %v (%.0f POST/s); all final after %v: %.0f sagas/s\n", placed.Round(time.Millisecond), float64(orders)/placed.Seconds(), elapsed.Round(time.Millisecond), rate)
		fmt.Printf("  durable commit rate, 8 writers, same run: %.0f tx/s; sagas/s per durable commit/s = %.3f\n", commitRate, rate/commitRate)
		statementReport(b, server, orders, commitsBefore)
		cancel()
		h.wait()
	}
}

// resetStatements forgets the statement statistics gathered so far (set-up, seeding) and returns the
// commits of each database so far.
func resetStatements(b *testing.B, serverURL string) map[string]int64 {
	b.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, serverURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		b.Fatal(err)
	}
	return commitsByDatabase(b, pool)
}

func commitsByDatabase(b *testing.B, pool *pgxpool.Pool) map[string]int64 {
	b.Helper()
	rows, err := pool.Query(context.Background(), `SELECT datname, xact_commit FROM pg_stat_database WHERE datname IS NOT NULL`)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]int64{}
	for rows.Next() {
		var db string
		var n int64
		if err := rows.Scan(&db, &n); err != nil {
			b.Fatal(err)
		}
		out[db] = n
	}
	return out
}
