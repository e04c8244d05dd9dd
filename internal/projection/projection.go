// Package projection keeps read models from Kafka topics with their positions stored beside their rows.
//
// A Projection owns a Postgres schema. A Runner reads every partition of its topics with partition readers
// at explicit offsets (no consumer group) and applies the events in batches, set-wise, in one transaction
// per batch that also moves the projection's positions (table _positions in the same schema): a batch is
// applied exactly once, without an inbox, and the projection knows where it stands.
//
// Rebuild builds a fresh copy in a shadow schema from the earliest offsets while the live copy keeps
// serving, catches up with the live copy and swaps the two schemas in one transaction: readers see the old
// copy or the new one, never a partial one. The live Runner notices that its positions moved and continues
// from the new copy's. Verify builds the shadow the same way and compares it with the live copy instead.
package projection

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/internal/postgres"
)

// Projection is a read model kept from topics.
type Projection interface {
	// Name is the schema of the live copy, and what `choreo replay` calls it.
	Name() string
	// Topics are the topics it is kept from, without namespace.
	Topics() []string
	// Schema is the DDL of its tables, unqualified: it runs with search_path set to the schema being built.
	Schema() string
	// Apply applies a batch of events to the tables in tx, whose search_path is the target schema. Events
	// of one partition come in offset order; across partitions and topics in any order, and an event may
	// come twice (producers publish at least once), so Apply must converge whatever the order. It should
	// work set-wise: batches hold thousands of events.
	Apply(ctx context.Context, tx pgx.Tx, evs []consumer.Event) error
	// Tables are the tables Verify compares, each with its key.
	Tables() []Table
}

// Indexer is a Projection with secondary indexes that a rebuild creates only once its copy has caught up,
// before the swap: one index build beats keeping them row by row through a bulk load.
type Indexer interface {
	// Indexes is their DDL, unqualified, run with search_path set to the schema.
	Indexes() string
}

// indexes runs proj's deferred index DDL, if any, in schema.
func indexes(ctx context.Context, pool *pgxpool.Pool, proj Projection, schema string) error {
	ix, ok := proj.(Indexer)
	if !ok {
		return nil
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("index %s: begin: %w", schema, err)
	}
	defer tx.Rollback(ctx)
	if err := setSearchPath(ctx, tx, schema); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, ix.Indexes()); err != nil {
		return fmt.Errorf("index %s: %w", schema, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("index %s: commit: %w", schema, err)
	}
	return nil
}

// Table is one table of a projection and its key columns (comma-separated), for Verify.
type Table struct {
	Name string
	Key  string
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations are the tables the runtime keeps beside the projections (projection_replays, in public).
func Migrations() fs.FS { return postgres.MigrationsDir(migrationFiles) }

// Migrate runs Migrations in pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	if err := postgres.Migrate(ctx, pool, "projection", Migrations()); err != nil {
		return fmt.Errorf("migrate projection runtime: %w", err)
	}
	return nil
}

// positionsDDL is the table every projection schema holds its positions in.
const positionsDDL = `CREATE TABLE IF NOT EXISTS _positions (
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL, -- the offset of the next event to apply
    PRIMARY KEY (topic, partition)
)`

// partition is one partition of one topic.
type partition struct {
	topic string
	id    int
}

// positions are the next offsets to apply, by partition.
type positions map[partition]int64

// setSearchPath points tx's unqualified names at schema until tx ends, then at public (where the service's
// outbox is, for dead letters).
func setSearchPath(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, searchPathSQL, searchPath(schema)); err != nil {
		return fmt.Errorf("use schema %s: %w", schema, err)
	}
	return nil
}

const searchPathSQL = `SELECT set_config('search_path', $1, true)`

func searchPath(schema string) string { return pgx.Identifier{schema}.Sanitize() + ", public" }

// schemaExists reports whether schema exists and holds a projection (its _positions table).
func schemaExists(ctx context.Context, q rowQuerier, schema string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{schema, "_positions"}.Sanitize()).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look for schema %s: %w", schema, err)
	}
	return ok, nil
}

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// loadPositions reads schema's positions; lock takes their rows (and blocks a swap) until tx ends.
func loadPositions(ctx context.Context, tx pgx.Tx, schema string, lock bool) (positions, error) {
	rows, _ := tx.Query(ctx, positionsSQL(schema, lock))
	return scanPositions(rows, schema)
}

func positionsSQL(schema string, lock bool) string {
	sql := `SELECT topic, partition, next_offset FROM ` + pgx.Identifier{schema, "_positions"}.Sanitize()
	if lock {
		sql += ` FOR UPDATE`
	}
	return sql
}

func scanPositions(rows pgx.Rows, schema string) (positions, error) {
	pos := positions{}
	var (
		p   partition
		off int64
	)
	_, err := pgx.ForEachRow(rows, []any{&p.topic, &p.id, &off}, func() error { pos[p] = off; return nil })
	if err != nil {
		return nil, fmt.Errorf("read positions of %s: %w", schema, err)
	}
	return pos, nil
}

// savePositions writes the positions that changed to the _positions table of tx's search_path.
func savePositions(ctx context.Context, tx pgx.Tx, moved positions) error {
	if len(moved) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, savePositionsSQL, positionArgs(moved)...); err != nil {
		return fmt.Errorf("save positions: %w", err)
	}
	return nil
}

const savePositionsSQL = `INSERT INTO _positions (topic, partition, next_offset)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset`

func positionArgs(moved positions) []any {
	topics, ids, offs := make([]string, 0, len(moved)), make([]int32, 0, len(moved)), make([]int64, 0, len(moved))
	for p, off := range moved {
		topics, ids, offs = append(topics, p.topic), append(ids, int32(p.id)), append(offs, off)
	}
	return []any{topics, ids, offs}
}

// ErrBusy means another Rebuild or Verify of the same projection is running.
var ErrBusy = errors.New("another replay of this projection is running")

// Replay is the latest replay of a projection, as it records itself.
type Replay struct {
	Projection string
	Applied    int64
	Total      int64
	Rate       float64 // events a second
	Running    bool    // not finished, and recorded within the last minute
}

// Replays reads the latest replay of every projection of pool's database.
func Replays(ctx context.Context, pool *pgxpool.Pool) ([]Replay, error) {
	rows, _ := pool.Query(ctx, `SELECT projection, applied, total, rate,
       finished_at IS NULL AND updated_at > now() - interval '1 minute'
FROM public.projection_replays ORDER BY projection`)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Replay, error) {
		var r Replay
		return r, row.Scan(&r.Projection, &r.Applied, &r.Total, &r.Rate, &r.Running)
	})
	if err != nil {
		return nil, fmt.Errorf("read replays: %w", err)
	}
	return out, nil
}
