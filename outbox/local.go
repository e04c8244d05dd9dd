package outbox

import (
	"context"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// writerSetting is the session setting that names the process a connection belongs to. The outbox trigger
// does not NOTIFY for a session whose process holds the active relay: that relay hears of the commit from
// LocalCommits instead.
const writerSetting = "choreo.outbox_writer"

// LocalCommits wakes the relay of this process as soon as a transaction of this process that appended to
// the outbox commits, without going through Postgres. A NOTIFY takes a lock that every notifying
// transaction in the cluster holds through its WAL flush, so notifying writers commit one at a time; with
// LocalCommits only writers in other processes (other replicas of the service) notify.
//
// It watches the pool's statements with a pgx tracer: an append (AppendMessages) marks its connection, and
// when that connection leaves the transaction (commit, or an append outside a transaction) the relay is
// woken. Configure it on the pool the service writes with and pass it to the relay with WithLocalCommits.
type LocalCommits struct {
	id   string
	wake chan struct{}

	mu     sync.Mutex
	marked map[*pgconn.PgConn]struct{} // connections whose open transaction appended to the outbox
}

// NewLocalCommits returns a LocalCommits with an id of its own.
func NewLocalCommits() *LocalCommits {
	return &LocalCommits{id: uuid.NewString(), wake: make(chan struct{}, 1), marked: map[*pgconn.PgConn]struct{}{}}
}

// Configure makes the connections of a pool built from cfg report their outbox commits to l and tell the
// outbox trigger that they belong to this process. It sets cfg's query tracer (calling any tracer set
// before) and adds to its AfterConnect.
func (l *LocalCommits) Configure(cfg *pgxpool.Config) {
	cfg.ConnConfig.Tracer = &commitTracer{l: l, next: cfg.ConnConfig.Tracer}
	after := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if after != nil {
			if err := after(ctx, conn); err != nil {
				return err
			}
		}
		_, err := conn.Exec(ctx, `SELECT set_config($1, $2, false)`, writerSetting, l.id)
		return err
	}
}

// Woken receives a value after one or more local commits that appended to the outbox.
func (l *LocalCommits) Woken() <-chan struct{} { return l.wake }

// mark records that conn's open transaction (or statement) appended to the outbox.
func (l *LocalCommits) mark(conn *pgx.Conn) {
	l.mu.Lock()
	l.marked[conn.PgConn()] = struct{}{}
	l.mu.Unlock()
}

// ended is told that a statement or batch on conn finished, successfully or not; once conn is out of any
// transaction, one that appended is over, and the relay is woken if it committed.
func (l *LocalCommits) ended(conn *pgx.Conn, ok bool) {
	if conn.PgConn().TxStatus() != 'I' { // still in a transaction: nothing is visible to the relay yet
		return
	}
	l.mu.Lock()
	_, appended := l.marked[conn.PgConn()]
	if appended {
		delete(l.marked, conn.PgConn())
	}
	l.mu.Unlock()
	if appended && ok {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// commitTracer is LocalCommits' view of the pool's statements.
type commitTracer struct {
	l    *LocalCommits
	next pgx.QueryTracer // the tracer configured before, or nil
}

func (t *commitTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(data.SQL, appendPrefix) {
		t.l.mark(conn)
	}
	if t.next != nil {
		return t.next.TraceQueryStart(ctx, conn, data)
	}
	return ctx
}

func (t *commitTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if t.next != nil {
		t.next.TraceQueryEnd(ctx, conn, data)
	}
	t.l.ended(conn, data.Err == nil && data.CommandTag.String() != "ROLLBACK")
}

// Batches (pgx.Batch, and postgres.Tx's BeginWith and CommitWith) are watched alike.

func (t *commitTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		return bt.TraceBatchStart(ctx, conn, data)
	}
	return ctx
}

func (t *commitTracer) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchQuery(ctx, conn, data)
	}
	if strings.HasPrefix(data.SQL, appendPrefix) {
		t.l.mark(conn)
	}
}

func (t *commitTracer) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchEnd(ctx, conn, data)
	}
	t.l.ended(conn, data.Err == nil)
}
