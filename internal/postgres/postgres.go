// Package postgres sets up choreo's Postgres access: a connection pool that
// waits for the server, per-component databases and numbered migrations.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultMaxConns is the pool size Connect uses unless the URL sets pool_max_conns.
const DefaultMaxConns = 20

// Connect opens a pool on url and pings it. While the server is unreachable
// or starting up it retries with backoff until ctx ends, so a service may
// start before Postgres; a refused login or a missing database fails at once. Each configure function
// may adjust the pool's configuration before the pool is built. Every connection knows uuid.UUID
// (RegisterUUID).
func Connect(ctx context.Context, url string, configure ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %w", Redact(url), err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default, max(4, NumCPU), is too small for a service: its relay (a lock connection and
		// two pipeline stages), one consumer worker per partition, HTTP handlers and background work share
		// the pool. pool_max_conns in the URL overrides this.
		cfg.MaxConns = DefaultMaxConns
	}
	after := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		RegisterUUID(conn.TypeMap())
		if after != nil {
			return after(ctx, conn)
		}
		return nil
	}
	for _, c := range configure {
		c(cfg)
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool for postgres at %s: %w", where, err)
	}
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		err = ping(ctx, pool)
		if err == nil {
			return pool, nil
		}
		if permanent(err) {
			break
		}
		select {
		case <-ctx.Done():
			pool.Close()
			return nil, fmt.Errorf("connect to postgres at %s: %w (last error: %v)", where, ctx.Err(), err)
		case <-time.After(backoff):
		}
	}
	pool.Close()
	return nil, fmt.Errorf("connect to postgres at %s: %w", where, err)
}

func ping(ctx context.Context, pool *pgxpool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pool.Ping(ctx)
}

// permanent reports errors that waiting will not cure: bad credentials
// (class 28) and a database that does not exist (3D000).
func permanent(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "3D000" || (len(pgErr.Code) == 5 && pgErr.Code[:2] == "28")
}

// Querier is what QueryOne needs: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// QueryOne runs sql and returns its one row as a T, whose fields take the columns in order.
func QueryOne[T any](ctx context.Context, q Querier, sql string, args ...any) (T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	return pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[T])
}
