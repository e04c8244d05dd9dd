package projection

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/retry"
)

// RebuildOptions tune Rebuild.
type RebuildOptions struct {
	// Verify compares the rebuilt copy with the live one instead of swapping it in, then drops it.
	Verify bool
	// Progress, if set, is called after every batch.
	Progress func(Progress)
}

// Progress is how far a rebuild is.
type Progress struct {
	Projection string
	Phase      string // "catching up", "indexing", then "swapping" or "comparing"
	Applied    int64  // events applied to the new copy
	Total      int64  // events to apply as far as known; grows while new events arrive
	Elapsed    time.Duration
}

// Rate is the events applied a second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Applied) / p.Elapsed.Seconds()
}

// ETA is the time left at the rate so far (0 when unknown).
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r <= 0 || p.Total <= p.Applied {
		return 0
	}
	return time.Duration(float64(p.Total-p.Applied) / r * float64(time.Second))
}

// Result is what a rebuild did.
type Result struct {
	Progress
	Swapped     bool         // the new copy is live
	Differences []Difference // Verify: the first MaxDifferences rows that differ
	Different   int          // Verify: how many rows differ in all
}

// Difference is one row that the live and the rebuilt copy disagree on; "" for a row one of them lacks.
type Difference struct {
	Table   string
	Key     string
	Live    string // the live row as JSON
	Rebuilt string // the rebuilt row as JSON
}

// MaxDifferences is how many differences Verify returns in full.
const MaxDifferences = 20

// swapWait bounds how long Verify waits for the live copy to reach the rebuilt copy's positions.
const swapWait = 2 * time.Minute

// Rebuild builds a new copy of the projection in a shadow schema from the first offset of every partition,
// while the live copy keeps serving and being kept, until it has caught up with the topics' ends; then, in
// one transaction that holds the live copy's positions, it applies what the live copy has and it has not
// yet, and swaps the schemas (or, with opts.Verify, compares them). A live Runner continues from the new
// copy's positions. Only one Rebuild of a projection runs at a time (ErrBusy).
func (r *Runner) Rebuild(ctx context.Context, opts RebuildOptions) (Result, error) {
	live := r.proj.Name()
	shadow := live + "__next"
	if opts.Verify {
		shadow = live + "__verify"
	}
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("rebuild %s: %w", live, err)
	}
	defer conn.Release()
	var mine bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('choreo.projection'), hashtext($1))`, live).Scan(&mine); err != nil {
		return Result{}, fmt.Errorf("rebuild %s: lock: %w", live, err)
	}
	if !mine {
		return Result{}, fmt.Errorf("rebuild %s: %w", live, ErrBusy)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('choreo.projection'), hashtext($1))`, live)

	if err := createSchema(ctx, r.pool, r.proj, shadow); err != nil {
		return Result{}, err
	}
	res, err := r.build(ctx, shadow, opts)
	if !res.Swapped {
		if _, derr := r.pool.Exec(context.WithoutCancel(ctx), `DROP SCHEMA IF EXISTS `+pgx.Identifier{shadow}.Sanitize()+` CASCADE`); derr != nil && err == nil {
			err = fmt.Errorf("drop %s: %w", shadow, derr)
		}
	}
	return res, err
}

// createSchema (re)creates schema empty, with proj's tables and its positions.
func createSchema(ctx context.Context, pool *pgxpool.Pool, proj Projection, schema string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("create %s: begin: %w", schema, err)
	}
	defer tx.Rollback(ctx)
	id := pgx.Identifier{schema}.Sanitize()
	for _, sql := range []string{`DROP SCHEMA IF EXISTS ` + id + ` CASCADE`, `CREATE SCHEMA ` + id} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create %s: %w", schema, err)
		}
	}
	if err := setSearchPath(ctx, tx, schema); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, proj.Schema()+";\n"+positionsDDL); err != nil {
		return fmt.Errorf("create the tables of %s: %w", schema, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("create %s: commit: %w", schema, err)
	}
	return nil
}

// build catches shadow up with the topics, then swaps or compares it.
func (r *Runner) build(ctx context.Context, shadow string, opts RebuildOptions) (Result, error) {
	parts, err := r.partitions(ctx)
	if err != nil {
		return Result{}, err
	}
	start, pos, end := positions{}, positions{}, positions{}
	prog := Progress{Projection: r.proj.Name(), Phase: "catching up"}
	for p, info := range parts {
		start[p], pos[p], end[p] = info.Start, info.Start, info.End
		prog.Total += info.End - info.Start
	}
	began := time.Now()
	report := func() {
		prog.Elapsed = time.Since(began)
		if opts.Progress != nil {
			opts.Progress(prog)
		}
	}
	if _, err := r.pool.Exec(ctx, `INSERT INTO public.projection_replays (projection, shadow, started_at, updated_at, total) VALUES ($1, $2, now(), now(), $3)
ON CONFLICT (projection) DO UPDATE SET shadow = $2, started_at = now(), updated_at = now(), finished_at = NULL, applied = 0, total = $3, rate = 0`,
		r.proj.Name(), shadow, prog.Total); err != nil {
		return Result{}, fmt.Errorf("record the replay of %s: %w", r.proj.Name(), err)
	}
	report()

	s := openStream(ctx, r.streamConfig(), pos)
	defer func() { s.Close() }()
	for {
		if behind(pos, end) == 0 {
			// Caught up with the ends seen so far: look again, and stop when what is left fits a batch.
			if parts, err = r.partitions(ctx); err != nil {
				return Result{}, err
			}
			for p, info := range parts {
				if _, known := start[p]; !known { // a partition added meanwhile
					start[p], pos[p] = info.Start, info.Start
					s.Close()
					s = openStream(ctx, r.streamConfig(), pos)
				}
				prog.Total += info.End - end[p]
				end[p] = info.End
			}
			if behind(pos, end) <= int64(r.cfg.BatchEvents) {
				break
			}
		}
		msgs, err := s.next(ctx, r.cfg.BatchEvents, time.Second)
		if err != nil {
			return Result{}, err
		}
		if len(msgs) == 0 {
			continue
		}
		if err := r.applyShadow(ctx, shadow, msgs, pos, &prog, time.Since(began)); err != nil {
			return Result{}, err
		}
		report()
	}
	s.Close()
	prog.Phase = "indexing"
	report()
	if err := indexes(ctx, r.pool, r.proj, shadow); err != nil {
		return Result{}, err
	}

	prog.Phase = map[bool]string{false: "swapping", true: "comparing"}[opts.Verify]
	report()
	deadline := time.Now().Add(swapWait)
	for {
		res, again, err := r.finish(ctx, shadow, start, pos, &prog, opts.Verify)
		if err != nil || !again {
			prog.Elapsed = time.Since(began)
			res.Progress = prog
			return res, err
		}
		if time.Now().After(deadline) {
			return Result{}, fmt.Errorf("verify %s: the live copy did not reach the rebuilt copy's positions within %s; is it running?", r.proj.Name(), swapWait)
		}
		if !retry.Sleep(ctx, 200*time.Millisecond) {
			return Result{}, ctx.Err()
		}
	}
}

// applyShadow applies msgs to shadow in their own transaction and records the progress beside them.
func (r *Runner) applyShadow(ctx context.Context, shadow string, msgs []kafka.Message, pos positions, prog *Progress, elapsed time.Duration) error {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	// A half-built copy is worth nothing after a crash (the next replay starts over), so its batches skip
	// the wait for the WAL flush; the swap commits durably.
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return fmt.Errorf("relax durability of %s: %w", shadow, err)
	}
	moved, err := r.apply(ctx, tx, shadow, msgs, false)
	if err != nil {
		return err
	}
	applied := prog.Applied + int64(len(msgs))
	if _, err := tx.Exec(ctx, `UPDATE public.projection_replays SET applied = $2, total = $3, rate = $4, updated_at = now() WHERE projection = $1`,
		r.proj.Name(), applied, prog.Total, float64(applied)/max(elapsed.Seconds(), 1e-3)); err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit batch of %s: %w", shadow, err)
	}
	maps.Copy(pos, moved)
	prog.Applied = applied
	return nil
}

// behind is how many events lie between pos and end.
func behind(pos, end positions) int64 {
	var n int64
	for p, e := range end {
		n += max(0, e-pos[p])
	}
	return n
}

// finish holds the live copy's positions, brings shadow to them and swaps the schemas, or compares them.
// again means: Verify found the live copy behind shadow somewhere; try again once it has moved on.
func (r *Runner) finish(ctx context.Context, shadow string, start, pos positions, prog *Progress, verify bool) (res Result, again bool, err error) {
	live := r.proj.Name()
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return res, false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	exists, err := schemaExists(ctx, tx, live)
	if err != nil {
		return res, false, err
	}
	target := maps.Clone(start)
	if exists {
		// Readers are not blocked; the live runner's next batch waits until the swap is done.
		if _, err := tx.Exec(ctx, `LOCK TABLE `+pgx.Identifier{live, "_positions"}.Sanitize()+` IN EXCLUSIVE MODE`); err != nil {
			return res, false, fmt.Errorf("hold the positions of %s: %w", live, err)
		}
		held, err := loadPositions(ctx, tx, live, false)
		if err != nil {
			return res, false, err
		}
		maps.Copy(target, held)
	} else if verify {
		return res, false, fmt.Errorf("verify %s: there is no live copy to compare with", live)
	}
	if verify {
		for p, off := range pos {
			if off > target[p] {
				return res, true, nil
			}
		}
	}
	for p, off := range target {
		if off <= pos[p] {
			continue
		}
		msgs, err := r.readRange(ctx, p, pos[p], off)
		if err != nil {
			return res, false, err
		}
		moved, err := r.apply(ctx, tx, shadow, msgs, false)
		if err != nil {
			return res, false, err
		}
		maps.Copy(pos, moved)
		prog.Applied += int64(len(msgs))
		prog.Total += int64(len(msgs))
	}
	if verify {
		res.Differences, res.Different, err = compare(ctx, tx, r.proj.Tables(), live, shadow)
		return res, false, err
	}
	old := pgx.Identifier{live + "__old"}.Sanitize()
	var ddl []string
	if exists {
		ddl = append(ddl, `ALTER SCHEMA `+pgx.Identifier{live}.Sanitize()+` RENAME TO `+old)
	}
	ddl = append(ddl, `ALTER SCHEMA `+pgx.Identifier{shadow}.Sanitize()+` RENAME TO `+pgx.Identifier{live}.Sanitize())
	if exists {
		ddl = append(ddl, `DROP SCHEMA `+old+` CASCADE`)
	}
	for _, sql := range ddl {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return res, false, fmt.Errorf("swap %s in as %s: %w", shadow, live, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE public.projection_replays SET applied = $2, total = $2, finished_at = now(), updated_at = now() WHERE projection = $1`,
		live, prog.Applied); err != nil {
		return res, false, fmt.Errorf("record the end of the replay: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return res, false, fmt.Errorf("swap %s in as %s: commit: %w", shadow, live, err)
	}
	res.Swapped = true
	return res, false, nil
}

// readRange reads partition p's events from offset from up to (not including) to.
func (r *Runner) readRange(ctx context.Context, p partition, from, to int64) ([]kafka.Message, error) {
	in, err := kafkaadmin.Admin{Brokers: r.cfg.Brokers, Conn: r.cfg.Conn}.Inspector()
	if err != nil {
		return nil, err
	}
	defer in.Close()
	var out []kafka.Message
	for from < to {
		msgs, _, err := in.Read(ctx, p.topic, p.id, from, int(to-from), 16<<20)
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			return nil, fmt.Errorf("read %s/%d: nothing at %d, below the live copy's position %d", p.topic, p.id, from, to)
		}
		for _, m := range msgs {
			if m.Offset < to {
				out = append(out, m)
			}
		}
		from = msgs[len(msgs)-1].Offset + 1
	}
	return out, nil
}

// compare lists the rows of tables that differ between schemas a (live) and b (rebuilt).
func compare(ctx context.Context, tx pgx.Tx, tables []Table, a, b string) ([]Difference, int, error) {
	var (
		diffs []Difference
		count int
	)
	for _, t := range tables {
		keys := strings.Split(t.Key, ",")
		on, key := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			k = pgx.Identifier{strings.TrimSpace(k)}.Sanitize()
			on[i] = "l." + k + " = s." + k
			key[i] = "coalesce(l." + k + ", s." + k + ")::text"
		}
		first := pgx.Identifier{strings.TrimSpace(keys[0])}.Sanitize()
		sql := fmt.Sprintf(`SELECT concat_ws(', ', %s),
       CASE WHEN l.%[2]s IS NULL THEN '' ELSE to_jsonb(l)::text END,
       CASE WHEN s.%[2]s IS NULL THEN '' ELSE to_jsonb(s)::text END
FROM %[3]s l FULL JOIN %[4]s s ON %[5]s
WHERE l.%[2]s IS NULL OR s.%[2]s IS NULL OR to_jsonb(l) <> to_jsonb(s)
ORDER BY 1`, strings.Join(key, ", "), first, pgx.Identifier{a, t.Name}.Sanitize(), pgx.Identifier{b, t.Name}.Sanitize(), strings.Join(on, " AND "))
		rows, _ := tx.Query(ctx, sql)
		var d Difference
		_, err := pgx.ForEachRow(rows, []any{&d.Key, &d.Live, &d.Rebuilt}, func() error {
			count++
			if len(diffs) < MaxDifferences {
				d.Table = t.Name
				diffs = append(diffs, d)
			}
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("compare %s: %w", t.Name, err)
		}
	}
	return diffs, count, nil
}
