package inventory

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/postgres"
)

// Stock moves are deferred to the end of a batch. A product's row is shared by every order that buys it,
// and a hot product is in most batches: if every handler locked and updated it, each batch would hold that
// lock from its first reservation to its commit, and the workers of all partitions would queue behind one
// another. Instead handlers decide against the stock they read (without a lock) less what the batch already
// holds, and the batch applies its net moves in one statement at the end, after locking its products in
// sku order (so batches never deadlock), and commits: the lock is held for the end of the transaction only.
// Should the stock have changed under the batch so that a decision no longer holds, the batch fails with a
// serialization failure and is retried at once, on fresh stock.

// move is the net change of one product's counters.
type move struct{ stock, reserved, sold int }

// moves are the stock moves a batch has decided and not yet applied, by sku.
type moves map[string]*move

func (m moves) add(lines []events.PricedLine, stock, reserved, sold int) {
	for _, l := range lines {
		mv := m[l.SKU]
		if mv == nil {
			mv = &move{}
			m[l.SKU] = mv
		}
		mv.stock += stock * l.Quantity
		mv.reserved += reserved * l.Quantity
		mv.sold += sold * l.Quantity
	}
}

// held is how much of sku's stock the batch has already taken (positive) or given back (negative).
func (m moves) held(sku string) int {
	if mv := m[sku]; mv != nil {
		return -mv.stock
	}
	return 0
}

// apply locks the products in sku order, checks the moves still fit, and applies them in one statement.
func (m moves) apply(ctx context.Context, tx pgx.Tx) error {
	if len(m) == 0 {
		return nil
	}
	skus := slices.Sorted(maps.Keys(m))
	rows, err := tx.Query(ctx, `SELECT sku, stock, reserved FROM products WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, skus)
	if err != nil {
		return fmt.Errorf("lock %d products: %w", len(skus), err)
	}
	type counters struct {
		SKU             string
		Stock, Reserved int
	}
	current, err := pgx.CollectRows(rows, pgx.RowToStructByPos[counters])
	if err != nil {
		return fmt.Errorf("lock %d products: %w", len(skus), err)
	}
	for _, c := range current {
		if mv := m[c.SKU]; c.Stock+mv.stock < 0 || c.Reserved+mv.reserved < 0 {
			// Changed under the batch (say an operator lowered the stock): decide again on fresh values.
			return &pgconn.PgError{Code: "40001", Message: fmt.Sprintf("stock of %s changed while the batch reserved it", c.SKU)}
		}
	}
	ds, dr, do := make([]int32, len(skus)), make([]int32, len(skus)), make([]int32, len(skus))
	for i, sku := range skus {
		mv := m[sku]
		ds[i], dr[i], do[i] = int32(mv.stock), int32(mv.reserved), int32(mv.sold)
	}
	_, err = postgres.Later(tx).Exec(ctx, `UPDATE products p SET stock = p.stock + d.s, reserved = p.reserved + d.r, sold = p.sold + d.o, updated_at = now()
		FROM unnest($1::text[], $2::int[], $3::int[], $4::int[]) AS d(sku, s, r, o) WHERE p.sku = d.sku`, skus, ds, dr, do)
	if err != nil {
		return fmt.Errorf("move stock of %d products: %w", len(skus), err)
	}
	return nil
}

type movesKey struct{}

// stockBatch is the inventory's consumer.BatchScope: a batch's handlers add to one set of moves, applied
// when the batch finishes.
type stockBatch struct{}

func (stockBatch) Begin(ctx context.Context, _ pgx.Tx, _ []consumer.Event) (context.Context, error) {
	return context.WithValue(ctx, movesKey{}, moves{}), nil
}

func (stockBatch) Finish(ctx context.Context, tx pgx.Tx) error {
	m, _ := ctx.Value(movesKey{}).(moves)
	return m.apply(ctx, tx)
}

// withMoves runs fn with the batch's moves; outside a batch (a handler called on its own) with moves of
// its own, applied when fn succeeded.
func withMoves(ctx context.Context, tx pgx.Tx, fn func(moves) error) error {
	if m, ok := ctx.Value(movesKey{}).(moves); ok {
		return fn(m)
	}
	m := moves{}
	if err := fn(m); err != nil {
		return err
	}
	return m.apply(ctx, tx)
}
