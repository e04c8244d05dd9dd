package pgembed

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func startCluster(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func stop(t *testing.T, c *Cluster) {
	t.Helper()
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func queryString(t *testing.T, c *Cluster, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to %s: %v", c.URL("postgres"), err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// searchableDir is a directory the postgres user can reach when we run as
// root (t.TempDir's parent is private to root).
func searchableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgembed-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestTemporaryCluster(t *testing.T) {
	t.Parallel()
	c := startCluster(t, Config{Log: testLogger(t)})

	settings := map[string]string{
		"SHOW listen_addresses":        "127.0.0.1",
		"SHOW max_connections":         "200",
		"SHOW autovacuum_naptime":      "5s",
		"SHOW fsync":                   "off",
		"SHOW synchronous_commit":      "off",
		"SHOW full_page_writes":        "off",
		"SHOW server_encoding":         "UTF8",
		"SHOW unix_socket_directories": c.runDir,
		"SELECT current_user":          "postgres",
	}
	for sql, want := range settings {
		if got := queryString(t, c, sql); got != want {
			t.Errorf("%s = %q, want %q", sql, got, want)
		}
	}
	if !strings.HasPrefix(c.URL("orders"), "postgres://postgres@127.0.0.1:") || !strings.HasSuffix(c.URL("orders"), "/orders?sslmode=disable") {
		t.Errorf("URL = %s", c.URL("orders"))
	}

	stop(t, c)
	if _, err := os.Stat(c.runDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary directory %s still there after Stop (err %v)", c.runDir, err)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port())), time.Second); err == nil {
		conn.Close()
		t.Errorf("port %d still accepts connections after Stop", c.Port())
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestPersistentClusterKeepsData(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableDir(t), "pg")
	ctx := context.Background()

	first := startCluster(t, Config{DataDir: dir, Durable: true, Log: testLogger(t)})
	if got := queryString(t, first, "SHOW fsync"); got != "on" {
		t.Errorf("durable cluster has fsync = %s", got)
	}
	conn, err := pgx.Connect(ctx, first.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	stop(t, first)

	second := startCluster(t, Config{DataDir: dir, Log: testLogger(t)})
	if got := queryString(t, second, "SELECT v FROM kept"); got != "still here" {
		t.Errorf("after restart kept.v = %q", got)
	}
	if got := queryString(t, second, "SHOW fsync"); got != "off" {
		t.Errorf("non-durable restart has fsync = %s", got)
	}
	stop(t, second)
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		t.Errorf("persistent data directory lost after Stop: %v", err)
	}
}

func TestStartFailureShowsServerLog(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	_, err = Start(context.Background(), Config{Port: port, Log: testLogger(t)})
	if err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
	for _, want := range []string{"pg_ctl start", "server log:", "already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}
