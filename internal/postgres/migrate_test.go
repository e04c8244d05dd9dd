package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

var outboxMigrations = fstest.MapFS{
	"001_create_outbox.sql":  {Data: []byte("CREATE TABLE outbox (id bigserial PRIMARY KEY, payload jsonb NOT NULL);")},
	"002_add_created_at.sql": {Data: []byte("ALTER TABLE outbox ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();\nINSERT INTO outbox (payload) VALUES ('{\"seed\": true}');")},
	"README.md":              {Data: []byte("not a migration")},
	"shared/not_at_root.sql": {Data: []byte("-- only usable as a template, never run")},
	"003_index_created.sql":  {Data: []byte("CREATE INDEX outbox_created_at ON outbox (created_at);")},
}

var inboxMigrations = fstest.MapFS{
	"001_create_inbox.sql": {Data: []byte("CREATE TABLE inbox (message_id text PRIMARY KEY);")},
}

func version(t *testing.T, pool *pgxpool.Pool, component string) int {
	t.Helper()
	var v int
	if err := pool.QueryRow(t.Context(), "SELECT version FROM schema_version_"+component).Scan(&v); err != nil {
		t.Fatalf("read version of %s: %v", component, err)
	}
	return v
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	for i := range 2 {
		if err := postgres.Migrate(t.Context(), pool, "outbox", outboxMigrations); err != nil {
			t.Fatalf("Migrate run %d: %v", i+1, err)
		}
	}
	if v := version(t, pool, "outbox"); v != 3 {
		t.Errorf("version = %d, want 3", v)
	}
	if n := count(t, pool, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("seed row inserted %d times, want once", n)
	}
}

func TestMigrateAppliesOnlyNewMigrations(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	first := fstest.MapFS{"001_create_outbox.sql": outboxMigrations["001_create_outbox.sql"]}
	if err := postgres.Migrate(t.Context(), pool, "outbox", first); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Migrate(t.Context(), pool, "outbox", outboxMigrations); err != nil {
		t.Fatalf("Migrate with two new files: %v", err)
	}
	if v := version(t, pool, "outbox"); v != 3 {
		t.Errorf("version = %d, want 3", v)
	}
}

func TestComponentsCoexistInOneDatabase(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	for component, fsys := range map[string]fstest.MapFS{"outbox": outboxMigrations, "inbox": inboxMigrations} {
		if err := postgres.Migrate(t.Context(), pool, component, fsys); err != nil {
			t.Fatalf("Migrate %s: %v", component, err)
		}
	}
	if v := version(t, pool, "outbox"); v != 3 {
		t.Errorf("outbox version = %d, want 3", v)
	}
	if v := version(t, pool, "inbox"); v != 1 {
		t.Errorf("inbox version = %d, want 1", v)
	}
	if n := count(t, pool, "SELECT count(*) FROM pg_tables WHERE tablename IN ('outbox', 'inbox')"); n != 2 {
		t.Errorf("%d of the tables outbox, inbox exist", n)
	}
}

func TestConcurrentMigrateSucceeds(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	const processes = 6
	errs := make([]error, processes)
	var wg sync.WaitGroup
	for i := range processes {
		wg.Go(func() {
			// A pool each, as separate processes would have.
			pool, err := postgres.Connect(t.Context(), url)
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			component := []string{"outbox", "inbox"}[i%2]
			fsys := map[string]fstest.MapFS{"outbox": outboxMigrations, "inbox": inboxMigrations}[component]
			errs[i] = postgres.Migrate(t.Context(), pool, component, fsys)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	check, err := postgres.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	if n := count(t, check, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("seed row inserted %d times, want once", n)
	}
	if v := version(t, check, "inbox"); v != 1 {
		t.Errorf("inbox version = %d, want 1", v)
	}
}

func TestMigrateErrors(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	tests := []struct {
		name, component string
		fsys            fstest.MapFS
		want            string
	}{
		{"unsafe component name", "outbox; DROP TABLE x", inboxMigrations, "component name"},
		{"no migrations", "empty", fstest.MapFS{"README.md": {Data: []byte("x")}}, "load migrations"},
		{"gap in numbering", "gappy", fstest.MapFS{"001_a.sql": {Data: []byte("SELECT 1")}, "003_c.sql": {Data: []byte("SELECT 1")}}, "Missing migration 2"},
		{"failing SQL", "broken", fstest.MapFS{
			"001_ok.sql":     {Data: []byte("CREATE TABLE broken_ok (id int);")},
			"002_broken.sql": {Data: []byte("CREATE TABLE broken_bad (id int); SELECT no_such_column FROM broken_bad;")},
		}, "migrate broken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := postgres.Migrate(t.Context(), pool, tt.component, tt.fsys)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	// The failed step rolled back; the good one before it stays applied.
	if v := version(t, pool, "broken"); v != 1 {
		t.Errorf("broken version = %d, want 1", v)
	}
	if n := count(t, pool, "SELECT count(*) FROM pg_tables WHERE tablename = 'broken_bad'"); n != 0 {
		t.Errorf("table from the failed migration exists")
	}
	// The lock was released: another migration still runs.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := postgres.Migrate(ctx, pool, "inbox", inboxMigrations); err != nil {
		t.Errorf("Migrate after failures: %v", err)
	}
}

// TestMigrateKeepsThePoolsSessionSettings: tern resets the session after each migration; the pool's
// connections must still carry what AfterConnect set (outbox.LocalCommits tags its writers so).
func TestMigrateKeepsThePoolsSessionSettings(t *testing.T) {
	t.Parallel()
	pool, err := postgres.Connect(t.Context(), testenv.DatabaseURL(t), func(c *pgxpool.Config) {
		c.MaxConns = 1
		c.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, `SELECT set_config('choreo.test_tag', 'tagged', false)`)
			return err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := postgres.Migrate(t.Context(), pool, "outbox", outboxMigrations); err != nil {
		t.Fatal(err)
	}
	var tag string
	if err := pool.QueryRow(t.Context(), `SELECT current_setting('choreo.test_tag', true)`).Scan(&tag); err != nil || tag != "tagged" {
		t.Fatalf("session setting after Migrate: %q, %v; want tagged", tag, err)
	}
}
