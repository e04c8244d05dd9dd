package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
)

// errQueuedBehind is the reason an event is parked that did not fail itself: its key was parked before it.
var errQueuedBehind = errors.New("queued behind the parked events of its key")

// storedHeader is one Kafka header of a parked message, as JSON.
type storedHeader struct {
	K string `json:"k"`
	V []byte `json:"v"`
}

// recordParked writes the batch's parked messages to the parked table in one statement. A message parked
// before (redelivered because its offset commit was lost) is left where it is.
func (w *worker) recordParked(ctx context.Context, tx pgx.Tx, batch []routed) error {
	var keys, topics, headers, reasons []string
	var ids []uuid.UUID
	var partitions []int32
	var offsets []int64
	var raw [][]byte
	for _, r := range batch {
		if r.skipped != parked {
			continue
		}
		hs := make([]storedHeader, len(r.m.Headers))
		for i, h := range r.m.Headers {
			hs[i] = storedHeader{h.Key, h.Value}
		}
		h, err := json.Marshal(hs)
		if err != nil {
			return fmt.Errorf("park %s: encode headers: %w", r.id, err)
		}
		keys, ids, topics = append(keys, string(r.m.Key)), append(ids, r.id), append(topics, r.m.Topic)
		partitions, offsets = append(partitions, int32(r.m.Partition)), append(offsets, r.m.Offset)
		raw, headers, reasons = append(raw, r.m.Value), append(headers, string(h)), append(reasons, r.reason.Error())
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO parked (consumer, key, event_id, topic, partition, "offset", value, headers, reason)
		SELECT $1, k, id, t, p, o, v, h::jsonb, r
		FROM unnest($2::text[], $3::uuid[], $4::text[], $5::int[], $6::bigint[], $7::bytea[], $8::text[], $9::text[]) AS u(k, id, t, p, o, v, h, r)
		ON CONFLICT (consumer, event_id) DO NOTHING`,
		w.c.cfg.Group, keys, ids, topics, partitions, offsets, raw, headers, reasons)
	if err != nil {
		return fmt.Errorf("park %d events: %w", len(ids), err)
	}
	return nil
}

// ParkedKeys returns how many keys the consumer has parked now.
func (c *Consumer) ParkedKeys(ctx context.Context) (int, error) {
	var n int
	if err := c.pool.QueryRow(ctx, `SELECT count(DISTINCT key) FROM parked WHERE consumer = $1`, c.cfg.Group).Scan(&n); err != nil {
		return 0, fmt.Errorf("count parked keys of %s: %w", c.cfg.Group, err)
	}
	return n, nil
}

// Parked is one event a consumer group parked, with why.
type Parked struct {
	Key       string
	EventID   uuid.UUID
	EventType string
	Origin    string // topic/partition@offset it was consumed from
	Reason    string
	At        time.Time
}

// ListParked returns the events group has parked, by key and in the order they will be applied.
func ListParked(ctx context.Context, pool *pgxpool.Pool, group string) ([]Parked, error) {
	rows, err := pool.Query(ctx, `SELECT key, event_id, headers, topic || '/' || partition || '@' || "offset", reason, parked_at
		FROM parked WHERE consumer = $1 ORDER BY min(seq) OVER (PARTITION BY key), seq`, group)
	if err != nil {
		return nil, fmt.Errorf("list parked events of %s: %w", group, err)
	}
	var out []Parked
	var p Parked
	var headers []storedHeader
	_, err = pgx.ForEachRow(rows, []any{&p.Key, &p.EventID, &headers, &p.Origin, &p.Reason, &p.At}, func() error {
		p.EventType = ""
		for _, h := range headers {
			if h.K == events.HeaderType {
				p.EventType = string(h.V)
			}
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list parked events of %s: %w", group, err)
	}
	return out, nil
}

// Releaser applies parked events once their cause is fixed: through the handlers of Router, as the
// consumer of Group would, in the order they were parked.
type Releaser struct {
	Group  string
	Pool   *pgxpool.Pool // the consumer's database
	Router *Router       // the service's handlers
	Log    zerolog.Logger
}

// Released says what a release did with one key.
type Released struct {
	Key          string
	Applied      int   // events applied (or skipped as already applied, or dead-lettered for a permanent failure)
	DeadLettered int   // of Applied, how many failed permanently and went to the dead-letter topic
	Remaining    int   // events still parked: the first failed again
	Err          error // why the first remaining event failed
}

// Release applies the parked events of key in one transaction, in their original order. A transient
// failure stops it: the events applied so far stay applied, the failed one and those behind it stay parked
// (with the new reason). A permanent failure dead-letters that event and goes on. A release racing with the
// consumer is safe: the consumer parks the key's new events as long as any are parked, and the release
// locks the rows it applies.
func (rl Releaser) Release(ctx context.Context, key string) (Released, error) {
	for conflicts := 0; ; conflicts++ {
		res, err := rl.release(ctx, key)
		if err != nil && lockConflict(err) && conflicts < 10 {
			continue
		}
		return res, err
	}
}

// ReleaseAll releases every parked key, the key parked first first.
func (rl Releaser) ReleaseAll(ctx context.Context) ([]Released, error) {
	rows, err := rl.Pool.Query(ctx, `SELECT key FROM parked WHERE consumer = $1 GROUP BY key ORDER BY min(seq)`, rl.Group)
	if err != nil {
		return nil, fmt.Errorf("list parked keys of %s: %w", rl.Group, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list parked keys of %s: %w", rl.Group, err)
	}
	out := make([]Released, 0, len(keys))
	for _, k := range keys {
		res, err := rl.Release(ctx, k)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

func (rl Releaser) release(ctx context.Context, key string) (Released, error) {
	res := Released{Key: key}
	tx, err := rl.Pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `SELECT seq, event_id, topic, partition, "offset", value, headers
		FROM parked WHERE consumer = $1 AND key = $2 ORDER BY seq FOR UPDATE`, rl.Group, key)
	if err != nil {
		return res, fmt.Errorf("read parked events of %s: %w", key, err)
	}
	var seqs []int64
	var batch []routed
	var seq int64
	var id uuid.UUID
	var m kafka.Message
	var headers []storedHeader
	_, err = pgx.ForEachRow(rows, []any{&seq, &id, &m.Topic, &m.Partition, &m.Offset, &m.Value, &headers}, func() error {
		msg := m
		msg.Key = []byte(key)
		msg.Headers = nil
		for _, h := range headers {
			msg.Headers = append(msg.Headers, kafka.Header{Key: h.K, Value: h.V})
		}
		r := routed{m: msg, id: id}
		r.h, r.ev, r.poison = rl.Router.route(msg)
		if r.poison == nil && r.h == nil {
			r.skipped = ignored
		}
		seqs, batch = append(seqs, seq), append(batch, r)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("read parked events of %s: %w", key, err)
	}
	if len(batch) == 0 {
		return res, nil
	}
	var ids []uuid.UUID
	for _, r := range batch {
		ids = append(ids, r.id)
	}
	rows, err = tx.Query(ctx, `SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = ANY($2)`, rl.Group, ids)
	if err != nil {
		return res, fmt.Errorf("read inbox: %w", err)
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return res, fmt.Errorf("read inbox: %w", err)
	}
	for i := range batch {
		for _, k := range known {
			if batch[i].id == k && batch[i].skipped == handled {
				batch[i].skipped = duplicate
			}
		}
	}
	if sc := rl.Router.scope; sc != nil {
		var evs []Event
		for _, r := range batch {
			if r.poison == nil && r.skipped == handled {
				evs = append(evs, r.ev)
			}
		}
		if ctx, err = sc.Begin(ctx, tx, evs); err != nil {
			return res, fmt.Errorf("begin release of %s: %w", key, err)
		}
	}
	done := 0
	for ; done < len(batch); done++ {
		r := &batch[done]
		log := rl.Log.With().Str("key", key).Str("event_id", r.id.String()).Str("event_type", r.ev.Type).Logger()
		reason := r.poison
		if reason == nil && r.skipped == handled {
			reason, err = applyInSavepoint(log.WithContext(ctx), tx, r, call)
			if err != nil {
				return res, err
			}
			if reason != nil && !IsPermanent(reason) {
				res.Err = reason
				break
			}
		}
		if reason != nil {
			if err := appendDeadLetter(ctx, tx, r.m, rl.Group, reason); err != nil {
				return res, fmt.Errorf("dead-letter %s: %w", r.id, err)
			}
			log.Error().Err(reason).Msg("released event dead-lettered")
			res.DeadLettered++
		}
	}
	if sc := rl.Router.scope; sc != nil {
		if err := sc.Finish(ctx, tx); err != nil {
			return res, fmt.Errorf("finish release of %s: %w", key, err)
		}
	}
	if err := recordInbox(ctx, tx, rl.Group, batch[:done]); err != nil {
		return res, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM parked WHERE seq = ANY($1)`, seqs[:done]); err != nil {
		return res, fmt.Errorf("unpark %d events of %s: %w", done, key, err)
	}
	if res.Err != nil {
		if _, err := tx.Exec(ctx, `UPDATE parked SET reason = $2 WHERE seq = $1`, seqs[done], "released, failed again: "+res.Err.Error()); err != nil {
			return res, fmt.Errorf("record why %s failed again: %w", batch[done].id, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("commit release of %s: %w", key, err)
	}
	res.Applied, res.Remaining = done, len(batch)-done
	return res, nil
}

// applyInSavepoint runs r's handler in a savepoint of tx and returns the handler's failure (the savepoint
// rolled back), or an error when tx itself broke or lost a lock race.
func applyInSavepoint(ctx context.Context, tx pgx.Tx, r *routed, run func(context.Context, Handler, pgx.Tx, Event) error) (failure, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	herr := run(ctx, r.h, sp, r.ev)
	if herr == nil {
		if err := sp.Commit(ctx); err != nil {
			return nil, fmt.Errorf("release savepoint: %w", err)
		}
		return nil, nil
	}
	if err := sp.Rollback(ctx); err != nil {
		return nil, fmt.Errorf("roll back failed handler of %s: %w (handler: %v)", r.ev.ID, err, herr)
	}
	herr = fmt.Errorf("handle %s %s: %w", r.ev.Type, r.ev.ID, herr)
	if infrastructural(herr) || lockConflict(herr) {
		return nil, herr
	}
	return herr, nil
}
