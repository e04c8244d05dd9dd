package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Tx is a pgx.Tx whose BEGIN goes out in one round trip with its first statements (BeginWith), and whose
// COMMIT may carry its last ones (CommitWith): a short transaction costs two round trips fewer than with
// pool.Begin, which waits for BEGIN, and Commit, which waits for COMMIT alone. pgx cannot adopt a
// transaction begun in a batch, hence this type; it commits or rolls back on its pooled connection and
// then releases it. Savepoints (Begin) work; LargeObjects does not. Statements whose result the caller
// does not need can be held back (Later) to travel with the next statement, query or COMMIT.
type Tx struct {
	conn       *pgxpool.Conn
	closed     bool
	savepoints int
	later      pgx.Batch // statements held back for the next round trip (Later)
	owners     []int     // of each held-back statement (Own)
	owner      int
	sent       int  // held-back statements of the round trip in flight that succeeded
	unsent     bool // begun by BeginLater and nothing sent yet: there is nothing to roll back
}

// HeldBackError is the failure of a statement held back by Later, reported by the statement or commit
// that carried it, with the owner the statement was held back for (Own).
type HeldBackError struct {
	Owner int
	SQL   string
	Err   error
}

func (e *HeldBackError) Error() string {
	sql, _, _ := strings.Cut(strings.TrimSpace(e.SQL), "\n")
	return fmt.Sprintf("held-back statement %q: %v", sql, e.Err)
}
func (e *HeldBackError) Unwrap() error { return e.Err }

var _ pgx.Tx = (*Tx)(nil)

// BeginWith acquires a connection and sends BEGIN and first's statements in one round trip, running their
// callbacks (pgx.QueuedQuery.Query, Exec, QueryRow). On an error nothing is left open.
func BeginWith(ctx context.Context, pool *pgxpool.Pool, first *pgx.Batch) (*Tx, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection: %w", err)
	}
	tx := &Tx{conn: conn}
	b := &pgx.Batch{}
	b.Queue("begin")
	b.QueuedQueries = append(b.QueuedQueries, first.QueuedQueries...)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return tx, nil
}

// BeginLater acquires a connection and holds BEGIN back (Later): it goes out with the transaction's first
// statement, query or COMMIT, so a transaction whose statements are all held back costs one round trip.
// Statements held back before Own is called are owned by -1.
func BeginLater(ctx context.Context, pool *pgxpool.Pool) (*Tx, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection: %w", err)
	}
	tx := &Tx{conn: conn, owner: -1, unsent: true}
	tx.Later("begin")
	return tx, nil
}

// CommitWith sends last's statements and COMMIT in one round trip, running their callbacks, and releases
// the connection. Should a statement fail, the transaction is rolled back and the error returned.
func (t *Tx) CommitWith(ctx context.Context, last *pgx.Batch) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	held, owners := t.takeLater()
	b := &pgx.Batch{QueuedQueries: append(held, last.QueuedQueries...)}
	b.Queue("commit").Exec(func(tag pgconn.CommandTag) error {
		if tag.String() == "ROLLBACK" {
			return pgx.ErrTxCommitRollback
		}
		return nil
	})
	if err := t.heldBack(t.conn.SendBatch(ctx, b).Close(), held, owners); err != nil {
		if t.conn.Conn().PgConn().TxStatus() == 'I' { // the commit itself failed: nothing is open
			t.closed = true
			t.conn.Release()
			return err
		}
		_ = t.Rollback(context.WithoutCancel(ctx))
		return err
	}
	t.closed = true
	t.conn.Release()
	return nil
}

func (t *Tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if t.closed {
		return nil, pgx.ErrTxClosed
	}
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	t.savepoints++
	sp := &savepointTx{Tx: t, name: fmt.Sprintf("sp_%d", t.savepoints)}
	if _, err := t.conn.Exec(ctx, "SAVEPOINT "+sp.name); err != nil {
		return nil, err
	}
	return sp, nil
}

// Commit commits and releases the connection; a transaction that had failed reports
// pgx.ErrTxCommitRollback, as pgx's own does.
func (t *Tx) Commit(ctx context.Context) error { return t.CommitWith(ctx, &pgx.Batch{}) }

// Rollback rolls back and releases the connection; after Commit it does nothing and reports
// pgx.ErrTxClosed.
func (t *Tx) Rollback(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	unsent := t.unsent
	t.takeLater()
	defer t.conn.Release()
	if unsent { // BEGIN never went out
		return nil
	}
	_, err := t.conn.Exec(ctx, "rollback")
	return err
}

// Later holds sql back until the transaction's next round trip: it goes out with the next statement, or
// at the latest with COMMIT, whose error then reports its failure. For a statement whose result the
// caller does not need, such as a write at the end of a unit of work: it costs no round trip of its own.
func (t *Tx) Later(sql string, args ...any) {
	t.later.Queue(sql, args...).Exec(func(pgconn.CommandTag) error { t.sent++; return nil })
	t.owners = append(t.owners, t.owner)
}

// LaterQuery holds sql back like Later, for a statement whose rows the caller wants without waiting for
// them: read is given them once the round trip that carries the statement returns (at the latest the
// COMMIT's), before the results of the statements after it. The statement's failure is reported as
// Later's is; read cannot fail it, since by then the round trip may have committed it.
func (t *Tx) LaterQuery(sql string, args []any, read func(pgx.Rows)) {
	t.later.Queue(sql, args...).Query(func(rows pgx.Rows) error {
		read(rows)
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		t.sent++
		return nil
	})
	t.owners = append(t.owners, t.owner)
}

// Own makes owner the owner of the statements held back from now on: should one fail, the statement or
// commit that carried it reports a *HeldBackError naming owner. A consumer passes the index of the event
// whose handler runs, so that the failure is the handler's, wherever it surfaces.
func (t *Tx) Own(owner int) { t.owner = owner }

// takeLater returns the statements held back, and their owners, and forgets them.
func (t *Tx) takeLater() ([]*pgx.QueuedQuery, []int) {
	q, o := t.later.QueuedQueries, t.owners
	t.later, t.owners, t.sent, t.unsent = pgx.Batch{}, nil, 0, false
	return q, o
}

// heldBack reports err, the outcome of a round trip that carried the held-back statements held (owned by
// owners), as a *HeldBackError if one of those failed (they come first, so the first that did not succeed).
func (t *Tx) heldBack(err error, held []*pgx.QueuedQuery, owners []int) error {
	return blameHeld(err, held, owners, t.sent)
}

// blameHeld returns err as the failure of held[failed] (owned by owners[failed]) if failed is one of
// them, else as it is. A batch that could not be prepared or encoded ran nothing: the statement that
// failed is the one pgx names, found by its SQL.
func blameHeld(err error, held []*pgx.QueuedQuery, owners []int, failed int) error {
	if err == nil {
		return nil
	}
	var pre pgx.ErrPreprocessingBatch
	if errors.As(err, &pre) {
		failed = slices.IndexFunc(held, func(q *pgx.QueuedQuery) bool { return q.SQL == pre.SQL() })
	}
	if failed < 0 || failed >= len(held) {
		return err
	}
	return &HeldBackError{Owner: owners[failed], SQL: held[failed].SQL, Err: err}
}

// flush sends the statements held back, if any, before a statement whose result the caller waits for.
func (t *Tx) flush(ctx context.Context) error {
	if t.later.Len() == 0 {
		return nil
	}
	held, owners := t.takeLater()
	return t.heldBack(t.conn.SendBatch(ctx, &pgx.Batch{QueuedQueries: held}).Close(), held, owners)
}

func (t *Tx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.flush(ctx); err != nil {
		return 0, err
	}
	return t.conn.CopyFrom(ctx, table, columns, src)
}

// SendBatch sends the statements held back first, in the same round trip, and reads their results before
// it returns: the results left are b's.
func (t *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.later.Len() == 0 {
		return t.conn.SendBatch(ctx, b)
	}
	held, owners := t.takeLater()
	br := t.conn.SendBatch(ctx, &pgx.Batch{QueuedQueries: append(held, b.QueuedQueries...)})
	for i, q := range held {
		var err error
		if q.Fn != nil { // Later's and LaterQuery's readers
			err = q.Fn(br)
		} else {
			_, err = br.Exec()
		}
		if err != nil {
			_ = br.Close()
			return errBatch{blameHeld(err, held, owners, i)}
		}
	}
	return br
}

// errBatch is the results of a batch that could not be sent.
type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }

func (t *Tx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }

func (t *Tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.conn.Conn().Prepare(ctx, name, sql)
}

func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.later.Len() > 0 { // one round trip for the held-back statements and this one
		var tag pgconn.CommandTag
		held, owners := t.takeLater()
		b := &pgx.Batch{QueuedQueries: held}
		b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
		return tag, t.heldBack(t.conn.SendBatch(ctx, b).Close(), held, owners)
	}
	return t.conn.Exec(ctx, sql, args...)
}

// Query sends the statements held back and sql in one round trip.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.later.Len() == 0 {
		return t.conn.Query(ctx, sql, args...)
	}
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	br := t.SendBatch(ctx, b) // reads the held-back statements' results
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if t.later.Len() == 0 {
		return t.conn.QueryRow(ctx, sql, args...)
	}
	rows, err := t.Query(ctx, sql, args...)
	if err != nil {
		return errRow{err}
	}
	return batchRow{rows}
}

// batchRows are the rows of the last query of a batch: closing them (as reading past the last row does)
// closes the batch.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if r.br != nil {
		if err := r.br.Close(); err != nil && r.err == nil {
			r.err = err
		}
		r.br = nil
	}
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// batchRow is the single row of batchRows, as pgx.Conn.QueryRow returns one.
type batchRow struct{ rows pgx.Rows }

func (r batchRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}

// errRow is a row whose query could not be sent.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// Execer runs a statement, as pgx.Tx and pgxpool.Pool do.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Later returns an Execer for statements of tx whose results the caller does not need: on a *Tx they are
// held back for its next round trip (Tx.Later) and report an empty command tag; on any other transaction
// they run at once.
func Later(tx pgx.Tx) Execer {
	if t, ok := tx.(*Tx); ok {
		return laterExecer{t}
	}
	return tx
}

type laterExecer struct{ t *Tx }

func (l laterExecer) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	l.t.Later(sql, args...)
	return pgconn.CommandTag{}, nil
}

// QueryLater holds sql back with a reader of its rows (Tx.LaterQuery). Only a held-back Execer has it, so
// a caller can tell that its statement will not run at once.
func (l laterExecer) QueryLater(sql string, args []any, read func(pgx.Rows)) {
	l.t.LaterQuery(sql, args, read)
}

// Conn is the connection the statements go out on.
func (l laterExecer) Conn() *pgx.Conn { return l.t.Conn() }

func (t *Tx) Conn() *pgx.Conn { return t.conn.Conn() }

// savepointTx is a savepoint of a Tx: Commit releases it, Rollback rolls back to it.
type savepointTx struct {
	*Tx
	name   string
	closed bool
}

func (s *savepointTx) Commit(ctx context.Context) error { return s.end(ctx, "RELEASE SAVEPOINT ") }

func (s *savepointTx) Rollback(ctx context.Context) error {
	return s.end(ctx, "ROLLBACK TO SAVEPOINT ")
}

// end releases or rolls back to the savepoint, once.
func (s *savepointTx) end(ctx context.Context, sql string) error {
	if s.closed {
		return pgx.ErrTxClosed
	}
	s.closed = true
	_, err := s.conn.Exec(ctx, sql+s.name)
	return err
}
