package postgres_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// onePoolWithTable returns a pool of one connection (one left in a transaction would be destroyed, or block
// the next Acquire) to a database with an empty table t (n int PRIMARY KEY), its statements seen by tracer
// if one is given.
func onePoolWithTable(t *testing.T, tracer ...pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.Connect(t.Context(), testenv.DatabaseURL(t), func(c *pgxpool.Config) {
		c.MaxConns = 1
		if len(tracer) > 0 {
			c.ConnConfig.Tracer = tracer[0]
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(t.Context(), `CREATE TABLE t (n int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestTxBeginsAndCommitsWithItsStatements: the statements sent with BEGIN and COMMIT run inside the
// transaction, their callbacks see their results, a savepoint rolls back alone, and what a failed
// transaction wrote is gone, with its connection back in the pool and usable.
func TestTxBeginsAndCommitsWithItsStatements(t *testing.T) {
	ctx := context.Background()
	pool := onePoolWithTable(t)
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

// TestTxLaterStatementsGoWithTheNextRoundTrip: statements held back run before the next statement (which
// sees what they wrote), or with COMMIT; one that fails makes that statement or the commit fail and
// leaves nothing behind; a rollback drops them; on a pgx transaction Later runs them at once.
func TestTxLaterStatementsGoWithTheNextRoundTrip(t *testing.T) {
	ctx := context.Background()
	pool := onePoolWithTable(t)
	rows := func(q interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}) (ns []int) {
		r, err := q.Query(ctx, `SELECT n FROM t ORDER BY n`)
		if err != nil {
			t.Fatal(err)
		}
		ns, err = pgx.CollectRows(r, pgx.RowTo[int])
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	later := func(tx pgx.Tx, n int) {
		if _, err := postgres.Later(tx).Exec(ctx, `INSERT INTO t VALUES ($1)`, n); err != nil {
			t.Fatal(err)
		}
	}

	tx, err := postgres.BeginWith(ctx, pool, &pgx.Batch{})
	if err != nil {
		t.Fatal(err)
	}
	later(tx, 1)
	later(tx, 2)
	if got := rows(tx); !slices.Equal(got, []int{1, 2}) { // the query carried them
		t.Fatalf("rows seen by the next query: %v, want [1 2]", got)
	}
	later(tx, 3)
	if tag, err := tx.Exec(ctx, `INSERT INTO t VALUES (4)`); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("exec after a held-back insert: %v, %v", tag, err)
	}
	later(tx, 5)
	// A batch carries them too, and its results are its own statements'.
	b := &pgx.Batch{}
	b.Queue(`SELECT count(*) FROM t`)
	br := tx.SendBatch(ctx, b)
	var n int
	if err := br.QueryRow().Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := br.Close(); err != nil || n != 5 {
		t.Fatalf("a batch after a held-back insert: first result %d (want 5: the batch's own count), %v", n, err)
	}
	later(tx, 6)
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 6 {
		t.Fatalf("a row query after a held-back insert: count %d, %v; want 6", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(pool); !slices.Equal(got, []int{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("after commit: %v, want 1 to 6", got)
	}

	// A held-back statement that fails fails the commit that carried it: nothing of the transaction stays.
	tx, err = postgres.BeginWith(ctx, pool, &pgx.Batch{})
	if err != nil {
		t.Fatal(err)
	}
	tx.Own(7)
	later(tx, 7)
	tx.Own(8)
	later(tx, 1)
	var hb *postgres.HeldBackError
	if err := tx.Commit(ctx); !errors.As(err, &hb) || hb.Owner != 8 || !strings.Contains(hb.Error(), "INSERT INTO t") {
		t.Fatalf("commit of a held-back duplicate key: %v, want a HeldBackError of owner 8 naming the statement", err)
	}
	// ... or the statement that carried it.
	tx, err = postgres.BeginWith(ctx, pool, &pgx.Batch{})
	if err != nil {
		t.Fatal(err)
	}
	later(tx, 2)
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (7)`); err == nil {
		t.Fatal("the statement after a failing held-back one succeeded")
	}
	_ = tx.Rollback(ctx)
	// ... or the query that carried it.
	tx, err = postgres.BeginWith(ctx, pool, &pgx.Batch{})
	if err != nil {
		t.Fatal(err)
	}
	tx.Own(3)
	later(tx, 2)
	if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&n); !errors.As(err, &hb) || hb.Owner != 3 {
		t.Fatalf("a row query after a failing held-back statement: %v, want a HeldBackError of owner 3", err)
	}
	_ = tx.Rollback(ctx)
	// A rollback drops what was held back.
	tx, err = postgres.BeginWith(ctx, pool, &pgx.Batch{})
	if err != nil {
		t.Fatal(err)
	}
	later(tx, 8)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rows(pool); !slices.Equal(got, []int{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("after the failed and rolled back transactions: %v, want 1 to 6", got)
	}

	// On a pgx transaction (no holding back) Later runs the statement at once.
	ptx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ptx.Rollback(ctx)
	if _, err := postgres.Later(ptx).Exec(ctx, `INSERT INTO t VALUES (1)`); err == nil {
		t.Fatal("Later on a pgx transaction did not run the statement at once")
	}
}

// roundTrips counts the requests a connection sends: each query, statement or batch is one round trip.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestBeginLaterSendsBeginWithTheFirstRoundTrip: a transaction begun with BeginLater whose statements are
// all held back is one round trip, and a transaction (a failing statement undoes the ones before it); one
// rolled back before anything went out costs no round trip and leaves its connection idle.
func TestBeginLaterSendsBeginWithTheFirstRoundTrip(t *testing.T) {
	ctx := context.Background()
	trips := &roundTrips{}
	pool := onePoolWithTable(t, trips)
	count := func() (n int) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	before := trips.n.Load()
	tx, err := postgres.BeginLater(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	tx.Later(`INSERT INTO t VALUES (1)`)
	tx.Later(`INSERT INTO t VALUES (2)`)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load() - before; n != 1 {
		t.Errorf("a transaction of held-back statements took %d round trips, want 1", n)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows committed, want 2", n)
	}

	// The held-back BEGIN makes them one transaction: the duplicate undoes the insert before it.
	tx, err = postgres.BeginLater(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	tx.Later(`INSERT INTO t VALUES (3)`)
	tx.Later(`INSERT INTO t VALUES (1)`)
	var hb *postgres.HeldBackError
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (4)`); !errors.As(err, &hb) || hb.Owner != -1 {
		t.Fatalf("a statement after a held-back duplicate: %v, want a HeldBackError of owner -1", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows after the failed transaction, want 2", n)
	}

	// Rolled back before its first round trip: nothing is sent, and the connection is not in a transaction.
	tx, err = postgres.BeginLater(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	tx.Later(`INSERT INTO t VALUES (5)`)
	before = trips.n.Load()
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load() - before; n != 0 {
		t.Errorf("rolling back an unsent transaction took %d round trips, want 0", n)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status := conn.Conn().PgConn().TxStatus(); status != 'I' {
		t.Errorf("the connection after the unsent rollback has transaction status %q, want idle", status)
	}
	conn.Release()
	if n := count(); n != 2 {
		t.Fatalf("%d rows after the unsent transaction, want 2", n)
	}
}

// TestLaterQueryReadsItsRowsWhenTheRoundTripReturns: a held-back statement's rows reach its reader with the
// round trip that carries it (here the COMMIT's, one round trip in all), and a statement that fails fails
// the commit as the statement of its owner.
func TestLaterQueryReadsItsRowsWhenTheRoundTripReturns(t *testing.T) {
	ctx := context.Background()
	trips := &roundTrips{}
	pool := onePoolWithTable(t, trips)
	laterQuery := func(tx *postgres.Tx, sql string, args ...any) *[]int {
		var got []int
		postgres.Later(tx).(interface {
			QueryLater(string, []any, func(pgx.Rows))
		}).QueryLater(sql, args, func(rows pgx.Rows) {
			for rows.Next() {
				var n int
				if err := rows.Scan(&n); err != nil {
					t.Error(err)
				}
				got = append(got, n)
			}
		})
		return &got
	}

	tx, err := postgres.BeginLater(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	got := laterQuery(tx, `INSERT INTO t VALUES ($1), ($2) RETURNING n`, 1, 2)
	if *got != nil {
		t.Fatalf("rows read before the round trip: %v", *got)
	}
	before := trips.n.Load()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(*got, []int{1, 2}) {
		t.Fatalf("rows read: %v, want [1 2]", *got)
	}
	if n := trips.n.Load() - before; n != 1 {
		t.Fatalf("a transaction of one held-back query took %d round trips, want 1", n)
	}

	// A query that carries it gives the reader its rows too.
	tx, err = postgres.BeginLater(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	got = laterQuery(tx, `INSERT INTO t VALUES (5) RETURNING n`)
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("a query carrying a held-back insert: count %d, %v; want 3", n, err)
	}
	if !slices.Equal(*got, []int{5}) {
		t.Fatalf("rows read by the query that carried the statement: %v, want [5]", *got)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	tx, err = postgres.BeginLater(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	tx.Own(4)
	tx.Later(`INSERT INTO t VALUES (3)`)
	got = laterQuery(tx, `INSERT INTO t VALUES (1) RETURNING n`)
	var hb *postgres.HeldBackError
	if err := tx.Commit(ctx); !errors.As(err, &hb) || hb.Owner != 4 || !strings.Contains(hb.SQL, "RETURNING") {
		t.Fatalf("commit of a held-back query that fails: %v, want a HeldBackError of owner 4 naming it", err)
	}
	if *got != nil {
		t.Fatalf("rows read of a statement that failed: %v", *got)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after the failed transaction: %d (%v), want 2", n, err)
	}
}
