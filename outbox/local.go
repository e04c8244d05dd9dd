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

// commitTracer is LocalCommits' view of the pool's statements.
type commitTracer struct {
	l    *LocalCommits
	next pgx.QueryTracer // the tracer configured before, or nil
}

func (t *commitTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(data.SQL, appendPrefix) {
		t.l.mu.Lock()
		t.l.marked[conn.PgConn()] = struct{}{}
		t.l.mu.Unlock()
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
	if conn.PgConn().TxStatus() != 'I' { // still in a transaction: nothing is visible to the relay yet
		return
	}
	t.l.mu.Lock()
	_, appended := t.l.marked[conn.PgConn()]
	if appended {
		delete(t.l.marked, conn.PgConn())
	}
	t.l.mu.Unlock()
	if appended && data.Err == nil && data.CommandTag.String() != "ROLLBACK" {
		select {
		case t.l.wake <- struct{}{}:
		default:
		}
	}
}
