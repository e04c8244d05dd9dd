package postgres_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/devstack/pgembed"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestConnect(t *testing.T) {
	t.Parallel()
	pool, err := postgres.Connect(t.Context(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer pool.Close()
	var one int
	if err := pool.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}

func TestConnectGivesUpWhenContextEnds(t *testing.T) {
	t.Parallel()
	port := testenv.FreePort(t)
	url := "postgres://app:s3cret@127.0.0.1:" + strconv.Itoa(port) + "/orders?sslmode=disable"
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := postgres.Connect(ctx, url)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(port) + "/orders"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestConnectFailsFastOnMissingDatabase(t *testing.T) {
	t.Parallel()
	server := testenv.ServerURL(t)
	missing := strings.Replace(server, "/postgres?", "/"+testenv.Name(t, "missing")+"?", 1)
	if missing == server {
		t.Skip("DATABASE_URL does not name the postgres database")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := postgres.Connect(ctx, missing)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v, want database does not exist", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("Connect kept retrying a missing database for %v", waited)
	}
}

// A service may start before its database server: Connect waits for it.
func TestConnectWaitsForServerToStart(t *testing.T) {
	t.Parallel()
	port := testenv.FreePort(t)
	connected := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	go func() {
		pool, err := postgres.Connect(ctx, "postgres://postgres@127.0.0.1:"+strconv.Itoa(port)+"/postgres?sslmode=disable")
		if err == nil {
			pool.Close()
		}
		connected <- err
	}()

	cluster, err := pgembed.Start(ctx, pgembed.Config{Port: port, Log: zerolog.Nop()})
	if errors.Is(err, pgembed.ErrBinariesNotFound) {
		cancel()
		<-connected
		t.Skip("needs PostgreSQL server binaries to start a server late:", err)
	}
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	defer cluster.Stop(context.Background())
	if err := <-connected; err != nil {
		t.Fatalf("Connect: %v", err)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/orders?sslmode=disable", "postgres://app:xxxxx@db:5432/orders?sslmode=disable"},
		{"postgresql://app@db/orders", "postgresql://app@db/orders"},
		{"postgres://db/orders?password=s3cret&sslmode=disable", "postgres://db/orders?password=xxxxx&sslmode=disable"},
		{"host=db user=app password=s3cret dbname=orders", "host=db user=app password=xxxxx dbname=orders"},
		{"host=db password='s3 cret' dbname=orders", "host=db password=xxxxx dbname=orders"},
		{"host=db sslpassword=s3cret", "host=db sslpassword=xxxxx"},
		{"postgres://db/orders?sslpassword=s3cret", "postgres://db/orders?sslpassword=xxxxx"},
		{"postgres://app:s3cret@db:port/orders", "postgres://app:xxxxx@db:port/orders"},
	}
	for _, tt := range tests {
		if got := postgres.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
