package outbox

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
)

// writerSetting is the session setting that names the process a connection belongs to. The outbox trigger
// does not NOTIFY for a session whose process holds the active relay: that relay hears of the commit from
// LocalCommits instead.
const writerSetting = "choreo.outbox_writer"

// LocalCommits tells the relay of this process as soon as a transaction of this process that appended to
// the outbox commits, without going through Postgres. A NOTIFY takes a lock that every notifying
// transaction in the cluster holds through its WAL flush, so notifying writers commit one at a time; with
// LocalCommits only writers in other processes (other replicas of the service) notify.
//
// It watches the pool's statements with a pgx tracer: an append (AppendMessages) marks its connection, and
// when that connection leaves the transaction (commit, or an append outside a transaction) the relay is
// told. When every append of the transaction was held back on a postgres.Tx (postgres.Later, as
// FlushDeferred and a service's own appends do), those statements returned their ids, and the relay is
// handed the committed rows: it publishes them without reading them back if it can tell that no lower id
// is missing (see frontier), and reads otherwise. Otherwise it is woken to read. Configure it on the pool
// the service writes with and pass it to the relay with WithLocalCommits.
type LocalCommits struct {
	id        string
	wake      chan struct{}
	handed    chan []Record // committed transactions' rows, for the relay
	accepting atomic.Bool   // a relay of this process is active and takes them

	mu     sync.Mutex
	marked map[*pgconn.PgConn]*appends // connections whose open transaction appended to the outbox
}

// appends are what a transaction appended: how many statements, and the rows of those that returned them.
// Rows are not handed over from a transaction that rolled back to a savepoint (the rows it returned may be
// gone) or was prepared for two-phase commit (it has not committed yet).
type appends struct {
	statements, returned int
	rows                 []Record
	unsure               bool
}

// handOverQueue is how many committed transactions' rows wait for the relay before LocalCommits wakes it
// to read instead.
const handOverQueue = 256

// NewLocalCommits returns a LocalCommits with an id of its own.
func NewLocalCommits() *LocalCommits {
	return &LocalCommits{id: uuid.NewString(), wake: make(chan struct{}, 1), handed: make(chan []Record, handOverQueue),
		marked: map[*pgconn.PgConn]*appends{}}
}

// laterQueryer is postgres.Later's Execer on a postgres.Tx: it holds a statement back with a reader of
// its rows.
type laterQueryer interface {
	QueryLater(sql string, args []any, read func(pgx.Rows))
	Conn() *pgx.Conn
}

// localCommitsOf returns the LocalCommits that watches conn's statements, or nil.
func localCommitsOf(conn *pgx.Conn) *LocalCommits {
	l, _ := conn.PgConn().CustomData()[localCommitsKey].(*LocalCommits)
	return l
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
		conn.PgConn().CustomData()[localCommitsKey] = l // for AppendMessages: localCommitsOf
		_, err := conn.Exec(ctx, `SELECT set_config($1, $2, false)`, writerSetting, l.id)
		return err
	}
}

// localCommitsKey is the key under which a connection's custom data names the LocalCommits watching it.
const localCommitsKey = "choreo.outbox.local_commits"

// Woken receives a value after one or more local commits that appended to the outbox, and were not handed
// over (Handed).
func (l *LocalCommits) Woken() <-chan struct{} { return l.wake }

// Handed receives the rows of a local transaction that appended to the outbox, once it has committed,
// ordered by id, while a relay accepts them (Accept).
func (l *LocalCommits) Handed() <-chan []Record { return l.handed }

// Accept tells l whether a relay of this process takes rows from Handed: it hands none over otherwise, and
// wakes instead, so that rows wait in the outbox rather than in memory.
func (l *LocalCommits) Accept(on bool) { l.accepting.Store(on) }

// of returns conn's appends, recording them if there are none yet. l.mu is held.
func (l *LocalCommits) of(conn *pgx.Conn) *appends {
	a := l.marked[conn.PgConn()]
	if a == nil {
		a = &appends{}
		l.marked[conn.PgConn()] = a
	}
	return a
}

// mark records that conn's open transaction (or statement) appended to the outbox.
func (l *LocalCommits) mark(conn *pgx.Conn) {
	l.mu.Lock()
	l.of(conn).statements++
	l.mu.Unlock()
}

// unsure records that conn's open transaction rolled back to a savepoint or was prepared: its rows are
// read, not handed over.
func (l *LocalCommits) unsure(conn *pgx.Conn) {
	l.mu.Lock()
	l.of(conn).unsure = true
	l.mu.Unlock()
}

// undoesRows reports whether sql may undo rows a transaction returned, or leave them uncommitted when it
// ends: ROLLBACK TO SAVEPOINT, PREPARE TRANSACTION.
func undoesRows(sql string) bool {
	sql = strings.TrimSpace(sql)
	return hasPrefixFold(sql, "rollback to") || hasPrefixFold(sql, "prepare transaction")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// appended records the rows an append of msgs on conn returned: their ids, ascending, and creation times,
// one per message. Anything else leaves the append's rows unknown, and the relay reads them.
func (l *LocalCommits) appended(conn *pgx.Conn, msgs []kafka.Message, rows pgx.Rows) {
	recs := make([]Record, 0, len(msgs))
	for rows.Next() {
		var id int64
		var created time.Time
		if rows.Scan(&id, &created) != nil || len(recs) == len(msgs) || (len(recs) > 0 && id <= recs[len(recs)-1].ID) {
			return
		}
		m := msgs[len(recs)]
		recs = append(recs, Record{ID: id, CreatedAt: created, Message: kafka.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: m.Headers}})
	}
	if rows.Err() != nil || len(recs) != len(msgs) {
		return
	}
	l.mu.Lock()
	a := l.of(conn)
	a.returned++
	a.rows = append(a.rows, recs...)
	l.mu.Unlock()
}

// ended is told that a statement or batch on conn finished, successfully or not; once conn is out of any
// transaction, one that appended is over, and if it committed the relay is handed its rows, or woken.
func (l *LocalCommits) ended(conn *pgx.Conn, ok bool) {
	if conn.PgConn().TxStatus() != 'I' { // still in a transaction: nothing is visible to the relay yet
		return
	}
	l.mu.Lock()
	a := l.marked[conn.PgConn()]
	if a != nil {
		delete(l.marked, conn.PgConn())
	}
	l.mu.Unlock()
	if a == nil || !ok || a.statements == 0 {
		return
	}
	if a.returned == a.statements && !a.unsure && l.accepting.Load() {
		rows := a.rows
		slices.SortFunc(rows, func(x, y Record) int { return cmp.Compare(x.ID, y.ID) })
		select {
		case l.handed <- rows:
			return
		default: // the relay is behind or standing by: it reads them
		}
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// saw is told of each statement sent on conn.
func (l *LocalCommits) saw(conn *pgx.Conn, sql string) {
	if strings.HasPrefix(sql, appendPrefix) {
		l.mark(conn)
	} else if undoesRows(sql) {
		l.unsure(conn)
	}
}

// commitTracer is LocalCommits' view of the pool's statements.
type commitTracer struct {
	l    *LocalCommits
	next pgx.QueryTracer // the tracer configured before, or nil
}

func (t *commitTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	t.l.saw(conn, data.SQL)
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
	t.l.saw(conn, data.SQL)
}

func (t *commitTracer) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	if bt, ok := t.next.(pgx.BatchTracer); ok {
		bt.TraceBatchEnd(ctx, conn, data)
	}
	t.l.ended(conn, data.Err == nil)
}
