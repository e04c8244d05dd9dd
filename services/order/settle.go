package order

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/retry"
)

// settleOn returns a handler that moves the event's order from PENDING to status.
func (s *Service) settleOn(status, reason string) consumer.Handler {
	return func(ctx context.Context, tx pgx.Tx, ev consumer.Event) error {
		id, err := uuid.Parse(ev.Subject)
		if err != nil {
			return consumer.Permanent(fmt.Errorf("subject %q is not an order id", ev.Subject))
		}
		settled, err := s.settle(ctx, tx, id, status, reason, &ev.Envelope)
		if settled != nil {
			consumer.AfterCommit(ctx, func() { s.metrics.observe(*settled) })
		}
		return err
	}
}

// settlement is an order that settle moved out of PENDING, for the saga metrics once it is committed.
type settlement struct {
	status, reason string
	took           time.Duration // from order.placed to the outcome event
}

// settle moves order id from PENDING to status and emits the outcome event. An order already settled is
// left as it is (nil settlement): the first outcome wins (a late shipment.scheduled after an expiry
// changes nothing; the other services compensate on order.cancelled).
func (s *Service) settle(ctx context.Context, tx pgx.Tx, id uuid.UUID, status, reason string, cause *events.Envelope) (*settlement, error) {
	var current, correlation string
	var placedAt time.Time
	err := tx.QueryRow(ctx, `SELECT status, correlation_id, created_at FROM orders WHERE id = $1 FOR UPDATE`, id).Scan(&current, &correlation, &placedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, consumer.Permanent(fmt.Errorf("order %s does not exist", id))
	}
	if err != nil {
		return nil, fmt.Errorf("lock order %s: %w", id, err)
	}
	if current != Pending {
		return nil, nil
	}
	if _, err := postgres.Later(tx).Exec(ctx, `UPDATE orders SET status = $2, reason = $3, updated_at = now() WHERE id = $1`, id, status, reason); err != nil {
		return nil, fmt.Errorf("settle order %s: %w", id, err)
	}
	var outcome events.Payload = events.OrderConfirmed{OrderID: id.String()}
	if status == Cancelled {
		outcome = events.OrderCancelled{OrderID: id.String(), Reason: reason}
	}
	if cause == nil { // the deadline passed: no event caused this
		err = s.emit.EmitInSaga(ctx, tx, id.String(), correlation, outcome)
	} else {
		err = s.emit.Emit(ctx, tx, *cause, outcome)
	}
	if err != nil {
		return nil, err
	}
	// The order was placed at its transaction's start (created_at), which is order.placed's time too.
	return &settlement{status: status, reason: reason, took: time.Since(placedAt)}, nil
}

// expireLoop cancels pending orders whose deadline passed. It sleeps until the next deadline, which the
// orders placed in this process move earlier without a query (see deadlines).
func (s *Service) expireLoop(ctx context.Context) {
	var pruned time.Time
	for attempt := 0; ctx.Err() == nil; {
		if time.Since(pruned) > time.Hour {
			if err := s.pruneIdempotencyKeys(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("prune idempotency keys")
			}
			pruned = time.Now() // also after a failure: the next try is an hour away, not a tight loop
		}
		s.deadlines.forget() // before the sweep: an order placed from now on either is in it or is announced
		next, err := s.expireDue(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn().Err(err).Msg("expire overdue orders; retrying")
			retry.Sleep(ctx, retry.Backoff(attempt, 100*time.Millisecond, 10*time.Second))
			attempt++
			continue
		}
		attempt = 0
		s.sleepUntil(ctx, s.deadlines.plan(next))
	}
}

// sleepUntil returns when next (zero: none known) has come, at the latest in a minute, or ctx ends. An order
// placed meanwhile with an earlier deadline moves next; later ones, the common case, cost nothing.
func (s *Service) sleepUntil(ctx context.Context, next time.Time) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		wait := time.Minute
		if !next.IsZero() {
			// Not below 100ms: an overdue order a consumer batch holds locked stays "next" until that
			// batch commits, and the sweeper must not spin on it meanwhile.
			wait = min(wait, max(time.Until(next)+10*time.Millisecond, 100*time.Millisecond))
		}
		t.Reset(wait)
		select {
		case <-t.C:
			return
		case <-s.deadlines.moved:
			next = s.deadlines.plan(time.Time{})
		case <-ctx.Done():
			return
		}
	}
}

// deadlines is the next deadline the sweeper plans to wake at, which orders placed in this process move
// earlier: the sweeper need not query after every order, whose deadline is almost always later.
type deadlines struct {
	mu      sync.Mutex
	planned time.Time     // zero: none known, so every deadline announced is earlier
	moved   chan struct{} // signalled when an announced deadline moved planned
}

func newDeadlines() *deadlines { return &deadlines{moved: make(chan struct{}, 1)} }

// announce notes the deadline of an order just committed.
func (d *deadlines) announce(at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.planned.IsZero() && !at.Before(d.planned) {
		return
	}
	d.planned = at
	select {
	case d.moved <- struct{}{}:
	default:
	}
}

// forget drops the plan before a sweep, whose result replaces it (plan).
func (d *deadlines) forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.planned = time.Time{}
}

// plan moves the plan to next if that is earlier (zero: none), and returns it: the earliest of next and
// every deadline announced since forget.
func (d *deadlines) plan(next time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !next.IsZero() && (d.planned.IsZero() || next.Before(d.planned)) {
		d.planned = next
	}
	return d.planned
}

// pruneIdempotencyKeys forgets Idempotency-Keys older than the configured TTL.
func (s *Service) pruneIdempotencyKeys(ctx context.Context) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)`, s.cfg.IdempotencyTTL.Seconds())
	if err != nil {
		return fmt.Errorf("delete expired idempotency keys: %w", err)
	}
	if n := tag.RowsAffected(); n > 0 {
		s.log.Info().Int64("keys", n).Msg("forgot expired idempotency keys")
	}
	return nil
}

// expireDue cancels a batch of overdue pending orders and returns the next deadline still ahead (zero if none).
func (s *Service) expireDue(ctx context.Context) (time.Time, error) {
	for {
		n, err := s.expireBatch(ctx)
		if err != nil {
			return time.Time{}, err
		}
		if n < 100 {
			break
		}
	}
	var next *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(deadline) FROM orders WHERE status = 'PENDING'`).Scan(&next); err != nil {
		return time.Time{}, fmt.Errorf("next deadline: %w", err)
	}
	if next == nil {
		return time.Time{}, nil
	}
	return *next, nil
}

func (s *Service) expireBatch(ctx context.Context) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	// SKIP LOCKED: several instances sweep without waiting on each other or on a handler settling the order.
	rows, err := tx.Query(ctx, `SELECT id FROM orders WHERE status = 'PENDING' AND deadline <= $1 ORDER BY deadline LIMIT 100 FOR UPDATE SKIP LOCKED`, s.clock())
	if err != nil {
		return 0, fmt.Errorf("find overdue orders: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return 0, fmt.Errorf("find overdue orders: %w", err)
	}
	settled := make([]settlement, 0, len(ids))
	for _, id := range ids {
		st, err := s.settle(ctx, tx, id, Cancelled, events.ReasonExpired, nil)
		if err != nil {
			return 0, err
		}
		if st != nil {
			settled = append(settled, *st)
		}
		s.log.Info().Str("order_id", id.String()).Msg("order expired")
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit expiries: %w", err)
	}
	for _, st := range settled {
		s.metrics.observe(st)
	}
	return len(ids), nil
}
