package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/internal/postgres"
)

// Pending is a BatchScope for a step that waits for several events of a key (a Join) and is decided from
// what the database holds once they are all there. Its handlers record their event's part with writes
// held back (postgres.Later) and call MayBeDue (RecordPart does both for an upsert); just before the
// commit, Query reads, for every key the batch marked, those that are complete and undecided, in one
// round trip, and Decide acts on each, in the order the batch marked them, caused by the event that
// marked it last. Reading the row back after each
// part (an upsert's RETURNING) took a round trip per event, inside the service's one transaction at a
// time.
//
// Deciding from the database, not from which events the worker has seen, keeps it right when the events
// of a key were split across consumers by a rebalance, were redelivered, or came in any order.
//
// A decision that fails is its cause's failure: the batch is tried again with that event on its own, and
// once its attempts are used up (at once for a Permanent error) the event is parked or dead-lettered
// without being applied, so its key is not decided and the rest of the batch goes on. A failure of Query
// is the batch's, which is retried whole.
type Pending[R any] struct {
	Query  string         // $1 (text[]) is the batch's marked keys; one row, scanned by position, per complete key
	Key    func(R) string // a row's key
	Decide func(ctx context.Context, tx pgx.Tx, cause Event, row R) error
}

type pendingKey struct{}

// due is a key that may be complete, and the event of the batch that last marked it.
type due struct {
	key   string
	cause Event
}

// pendingSet is the batch's marked keys, in the order first marked.
type pendingSet struct {
	due   []due
	index map[string]int
}

// Begin starts the batch with no key marked.
func (p Pending[R]) Begin(ctx context.Context, _ pgx.Tx, _ []Event) (context.Context, error) {
	return context.WithValue(ctx, pendingKey{}, &pendingSet{index: map[string]int{}}), nil
}

// Finish decides the marked keys that are complete.
func (p Pending[R]) Finish(ctx context.Context, tx pgx.Tx) error {
	set, _ := ctx.Value(pendingKey{}).(*pendingSet)
	if set == nil || len(set.due) == 0 {
		return nil
	}
	keys := make([]string, len(set.due))
	for i, d := range set.due {
		keys[i] = d.key
	}
	rows, err := tx.Query(ctx, p.Query, keys)
	if err != nil {
		return fmt.Errorf("read which of %d keys are complete: %w", len(keys), err)
	}
	ready, err := pgx.CollectRows(rows, pgx.RowToStructByPos[R])
	if err != nil {
		return fmt.Errorf("read which of %d keys are complete: %w", len(keys), err)
	}
	byKey := make(map[string]R, len(ready))
	for _, r := range ready {
		byKey[p.Key(r)] = r
	}
	held, _ := tx.(*postgres.Tx)
	defer func() {
		if held != nil {
			held.Own(-1)
		}
	}()
	for _, d := range set.due {
		r, ok := byKey[d.key]
		if !ok {
			continue
		}
		if held != nil { // what the decision holds back fails as its cause's (postgres.HeldBackError)
			held.Own(d.cause.index)
		}
		if err := p.Decide(ctx, tx, d.cause, r); err != nil {
			return &causeFailed{index: d.cause.index, err: fmt.Errorf("decide %s: %w", d.key, err)}
		}
	}
	return nil
}

// RecordPart is a Pending handler's usual work: it holds back sql, which records ev's part of key (key is
// its first argument, $1, then args), for the batch's next round trip, and marks key (MayBeDue).
func RecordPart(ctx context.Context, tx pgx.Tx, ev Event, key, sql string, args ...any) error {
	if _, err := postgres.Later(tx).Exec(ctx, sql, append([]any{key}, args...)...); err != nil {
		return fmt.Errorf("record %s of %s: %w", ev.Type, key, err)
	}
	return MayBeDue(ctx, key, ev)
}

// errNoPending is what MayBeDue reports outside a batch of a Pending scope: a service that calls it must
// set one (Router.Scope), or nothing would ever be decided.
var errNoPending = Permanent(errors.New("consumer.MayBeDue outside a Pending scope: the service's router has none"))

// MayBeDue marks key as possibly complete for the batch's Pending, caused by ev. Called by a handler.
func MayBeDue(ctx context.Context, key string, ev Event) error {
	set, _ := ctx.Value(pendingKey{}).(*pendingSet)
	if set == nil {
		return errNoPending
	}
	if i, ok := set.index[key]; ok {
		set.due[i].cause = ev
		return nil
	}
	set.index[key] = len(set.due)
	set.due = append(set.due, due{key: key, cause: ev})
	return nil
}
