package forwarder_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/internal/devstack/pgembed"
	"github.com/choreo-dev/choreo/internal/postgres"
)

// server is one durable Postgres cluster (fsync, synchronous_commit and full_page_writes on, as in
// production) that every contender uses; each contender run gets a fresh database on it.
type server struct {
	url     string // the "postgres" database
	version string
}

func durablePostgres(tb testing.TB) *server {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil { // the server runs as user postgres when we are root
		tb.Fatal(err)
	}
	cluster, err := pgembed.Start(ctx, pgembed.Config{DataDir: dir, Durable: true, Log: logger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	s := &server{url: cluster.URL("postgres")}
	conn, err := pgx.Connect(ctx, s.url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var fsync string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync')`).Scan(&s.version, &fsync); err != nil {
		tb.Fatal(err)
	}
	if fsync != "on" {
		tb.Fatalf("the benchmark cluster runs with fsync=%s; it must be durable", fsync)
	}
	return s
}

// database creates a fresh database named name and returns a pool on it; the database is dropped when
// drop is called.
func (s *server) database(ctx context.Context, name string) (pool *pgxpool.Pool, drop func() error, err error) {
	url, err := postgres.EnsureDatabase(ctx, s.url, name)
	if err != nil {
		return nil, nil, err
	}
	pool, err = postgres.Connect(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	drop = func() error {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.url)
		if err != nil {
			return fmt.Errorf("connect to drop database %s: %w", name, err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	return pool, drop, nil
}

// settle gives the drain that follows the state a backlog has once autovacuum caught up with it (planner
// statistics, visibility map) and flushes what loading wrote, so that no contender's timed drain pays for
// a checkpoint its load caused. Every contender with a database gets the same.
func settle(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		return fmt.Errorf("vacuum analyze: %w", err)
	}
	if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}
