package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/devstack/pgembed"
	"github.com/choreo-dev/choreo/internal/postgres"
)

// Postgres returns a pool on a fresh, empty database; the pool is closed
// and the database dropped when the test ends.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := DatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// DurableServerURL starts a private, temporary Postgres cluster with its crash-safety defaults (fsync,
// synchronous_commit and full_page_writes on; the shared test cluster runs without them), loading the
// preload libraries, and returns its server URL; it stops when the test ends. For benchmarks of durable
// commits.
func DurableServerURL(t testing.TB, preload ...string) string {
	t.Helper()
	cluster, err := pgembed.Start(context.Background(), pgembed.Config{Durable: true, Preload: preload, Log: Logger(t)})
	if err != nil {
		t.Fatalf("testenv: durable cluster: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	return cluster.URL("postgres")
}

// DatabaseURL creates a fresh database like Postgres, but returns its URL,
// for code under test that opens its own pool.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	name := Name(t, "db")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := postgres.EnsureDatabase(ctx, server, name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(server, name); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return url
}

func dropDatabase(serverURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("connect to drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// ServerURL is the URL of the server's "postgres" database, for code that
// creates databases of its own (DATABASE_URL as given, when set).
func ServerURL(t testing.TB) string {
	t.Helper()
	if os.Getenv("DATABASE_URL") == "" && !shared.mainRunning.Load() {
		t.Fatal("testenv: the embedded Postgres is stopped by testenv.Main: add func TestMain(m *testing.M) { testenv.Main(m) } to this package")
	}
	shared.pgOnce.Do(shared.startPostgres)
	if shared.pgErr != nil {
		t.Fatalf("testenv: %v", shared.pgErr)
	}
	return shared.serverURL
}

func (e *env) startPostgres() {
	if url := os.Getenv("DATABASE_URL"); url != "" {
		e.serverURL = url
		announce("postgres=DATABASE_URL(%s)", postgres.Redact(url))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if e.postgresFromBackends(ctx) {
		return
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel)
	cluster, err := pgembed.Start(ctx, pgembed.Config{Log: log})
	if errors.Is(err, pgembed.ErrBinariesNotFound) {
		url, desc, ok, cerr := e.containerPostgres(ctx)
		if cerr != nil {
			e.pgErr = cerr
			return
		}
		if ok {
			e.serverURL = url
			announce("postgres=%s", desc)
			return
		}
	}
	if err != nil {
		e.pgErr = err
		return
	}
	e.cluster = cluster
	e.serverURL = cluster.URL("postgres")
	announce("postgres=embedded(%s)", cluster.BinDir())
}

// postgresFromBackends starts the Postgres container when the binary's backends are containers.
// It returns false when the embedded cluster is to be used: by choice, or because the container
// would not start (an error only if CHOREO_TESTCONTAINERS=1 demanded it).
func (e *env) postgresFromBackends(ctx context.Context) bool {
	b := e.backends()
	if b.err != nil {
		e.pgErr = b.err
		return true
	}
	if b.postgres != container {
		return false
	}
	url, err := e.startPostgresContainer(ctx)
	if err != nil {
		if requireContainers() {
			e.pgErr = err
			return true
		}
		announce("%v: falling back to embedded postgres", err)
		return false
	}
	e.serverURL = url
	announce("postgres=container(%s)", postgresImage)
	return true
}

// announce tells once per backend, on stderr, what the tests run against.
func announce(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
}
