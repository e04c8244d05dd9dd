package postgres_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// TestTxBeginsAndCommitsWithItsStatements: the statements sent with BEGIN and COMMIT run inside the
// transaction, their callbacks see their results, a savepoint rolls back alone, and what a failed
// transaction wrote is gone, with its connection back in the pool and usable.
func TestTxBeginsAndCommitsWithItsStatements(t *testing.T) {
	ctx := context.Background()
	// One connection: one left in a transaction would be destroyed, or block the next Acquire.
	pool, err := postgres.Connect(ctx, testenv.DatabaseURL(t), func(c *pgxpool.Config) { c.MaxConns = 1 })
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE t (n int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	var inTx bool
	first := &pgx.Batch{}
	first.Queue(`INSERT INTO t VALUES (1)`)
	first.Queue(`SELECT now() = statement_timestamp()`).QueryRow(func(row pgx.Row) error { return row.Scan(&inTx) })
	tx, err := postgres.BeginWith(ctx, pool, first)
	if err != nil {
		t.Fatal(err)
	}
	if inTx {
		t.Error("the first statements ran outside a transaction (now() is the statement's time)")
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Exec(ctx, `INSERT INTO t VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	if err := sp.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	last := &pgx.Batch{}
	var inserted int64
	last.Queue(`INSERT INTO t VALUES (3)`).Exec(func(tag pgconn.CommandTag) error { inserted = tag.RowsAffected(); return nil })
	if err := tx.CommitWith(ctx, last); err != nil {
		t.Fatal(err)
	}
	if inserted != 1 || count() != 2 {
		t.Fatalf("after commit: %d rows (want 1 and 3), last callback saw %d", count(), inserted)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
		t.Fatalf("rollback after commit: %v, want ErrTxClosed", err)
	}

	// A failing statement in the commit's round trip rolls everything back.
	tx, err = postgres.BeginWith(ctx, pool, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: `INSERT INTO t VALUES (4)`}}})
	if err != nil {
		t.Fatal(err)
	}
	dup := &pgx.Batch{}
	dup.Queue(`INSERT INTO t VALUES (1)`)
	if err := tx.CommitWith(ctx, dup); err == nil {
		t.Fatal("a duplicate key committed")
	}
	// A failed first statement leaves nothing open either; then a plain Commit of a failed transaction.
	if _, err := postgres.BeginWith(ctx, pool, dup); err == nil {
		t.Fatal("BeginWith with a duplicate key succeeded")
	}
	tx, err = postgres.BeginWith(ctx, pool, &pgx.Batch{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1)`); err == nil {
		t.Fatal("a duplicate key was inserted")
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Fatalf("commit of a failed transaction: %v, want ErrTxCommitRollback", err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows after the failed transactions, want 2", n)
	}
}
