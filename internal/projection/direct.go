package projection

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/consumer"
)

// Create creates proj's live copy empty, replacing any, for tests and tools that feed it events by hand.
func Create(ctx context.Context, pool *pgxpool.Pool, proj Projection) error {
	if err := createSchema(ctx, pool, proj, proj.Name()); err != nil {
		return err
	}
	return indexes(ctx, pool, proj, proj.Name())
}

// ApplyEvents applies evs to proj's live copy as one batch, in one transaction, without moving its positions.
func ApplyEvents(ctx context.Context, pool *pgxpool.Pool, proj Projection, evs []consumer.Event) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := setSearchPath(ctx, tx, proj.Name()); err != nil {
		return err
	}
	if err := proj.Apply(ctx, tx, evs); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
