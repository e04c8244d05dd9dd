package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Pending is a BatchScope for a step that waits for several events of a key (a Join) and is decided from
// what the database holds once they are all there. Its handlers record their event's part with writes
// held back (postgres.Later) and call MayBeDue; just before the commit, Decide gets every key the batch
// marked, with the event that last marked it, reads which of them are complete in one query, and acts on
// those. That is one round trip per batch where reading the row back after each part (an upsert's
// RETURNING) took one per event, inside the service's one transaction at a time.
//
// Deciding from the database, not from which events the worker has seen, keeps it right when the events
// of a key were split across consumers by a rebalance, were redelivered, or came in any order.
//
// Decide runs after the handlers, like every BatchScope's Finish: an error fails the whole batch, which is
// retried (a lost connection, a lock conflict), and is nobody's to dead-letter. So Decide must not fail
// for one key's data: it decides such a key the way the step fails (and the saga compensates) instead.
type Pending struct {
	Decide func(ctx context.Context, tx pgx.Tx, due []Due) error
}

// Due is a key that may be complete, and the event of the batch that last marked it: the cause of what
// deciding it emits.
type Due struct {
	Key   string
	Cause Event
}

type pendingKey struct{}

// pendingSet is the batch's marked keys, in the order first marked.
type pendingSet struct {
	due   []Due
	index map[string]int
}

// Begin starts the batch with no key marked.
func (p Pending) Begin(ctx context.Context, _ pgx.Tx, _ []Event) (context.Context, error) {
	return context.WithValue(ctx, pendingKey{}, &pendingSet{index: map[string]int{}}), nil
}

// Finish decides the marked keys, if any.
func (p Pending) Finish(ctx context.Context, tx pgx.Tx) error {
	set, _ := ctx.Value(pendingKey{}).(*pendingSet)
	if set == nil || len(set.due) == 0 {
		return nil
	}
	return p.Decide(ctx, tx, set.due)
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
		set.due[i].Cause = ev
		return nil
	}
	set.index[key] = len(set.due)
	set.due = append(set.due, Due{Key: key, Cause: ev})
	return nil
}

// DecideComplete returns a Pending's Decide for the usual case: query, whose only parameter ($1, text[])
// is the batch's marked keys, returns a row (scanned into R by position) for each of them that is
// complete and undecided; decide then runs for each such row, in the order the batch marked the keys,
// with the event that marked it last.
func DecideComplete[R any](query string, keyOf func(R) string, decide func(ctx context.Context, tx pgx.Tx, cause Event, row R) error) func(context.Context, pgx.Tx, []Due) error {
	return func(ctx context.Context, tx pgx.Tx, due []Due) error {
		keys := make([]string, len(due))
		for i, d := range due {
			keys[i] = d.Key
		}
		rows, err := tx.Query(ctx, query, keys)
		if err != nil {
			return fmt.Errorf("read which of %d keys are complete: %w", len(keys), err)
		}
		ready, err := pgx.CollectRows(rows, pgx.RowToStructByPos[R])
		if err != nil {
			return fmt.Errorf("read which of %d keys are complete: %w", len(keys), err)
		}
		byKey := make(map[string]R, len(ready))
		for _, r := range ready {
			byKey[keyOf(r)] = r
		}
		for _, d := range due {
			if r, ok := byKey[d.Key]; ok {
				if err := decide(ctx, tx, d.Cause, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
}
