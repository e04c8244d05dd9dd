package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"regexp"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

// migrationLock is the pg_advisory_lock key held while any component
// migrates, so processes starting together apply each migration once.
const migrationLock = int64(0x63686f72656f) // "choreo"

var componentName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Migrate applies the numbered migrations (001_name.sql, 002_...) at the
// root of migrations that the database has not seen yet. Each component
// (outbox, inbox, a service) records its progress in its own version table,
// schema_version_<component>, so several share one database.
func Migrate(ctx context.Context, pool *pgxpool.Pool, component string, migrations fs.FS) error {
	if !componentName.MatchString(component) {
		return fmt.Errorf("migrate: component name %q must match %s", component, componentName)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: acquire connection: %w", component, err)
	}
	defer conn.Release()
	// tern runs RESET ALL after each migration, which also undoes what the pool's AfterConnect set for the
	// session (outbox.LocalCommits tags its connections so): the connection is closed, not handed back.
	defer conn.Conn().Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migrate %s: take migration lock: %w", component, err)
	}
	defer func() {
		// A connection still holding the lock must not go back to the pool.
		if _, unlockErr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock); unlockErr != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	m, err := migrate.NewMigrator(ctx, conn.Conn(), "schema_version_"+component)
	if err != nil {
		return fmt.Errorf("migrate %s: prepare version table: %w", component, err)
	}
	if err := m.LoadMigrations(migrations); err != nil {
		return fmt.Errorf("migrate %s: load migrations: %w", component, err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	return nil
}

// MigrationsDir returns the migrations/ directory of files, a package's embedded
// `//go:embed migrations/*.sql`, ready for Migrate; nil when files is nil.
func MigrationsDir(files fs.FS) fs.FS {
	if files == nil {
		return nil
	}
	sub, _ := fs.Sub(files, "migrations") // fails only for an invalid path, and this one is valid
	return sub
}
