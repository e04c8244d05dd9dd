package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

func dropOnCleanup(t *testing.T, server, name string) {
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
}

func TestEnsureDatabase(t *testing.T) {
	t.Parallel()
	server := testenv.ServerURL(t)
	tests := []struct {
		name    string
		db      string
		callers int
	}{
		{"new database", testenv.Name(t, "orders"), 1},
		{"name that needs quoting", "Mixed-Case." + testenv.Name(t, "x"), 1},
		{"concurrent creators all succeed", testenv.Name(t, "raced"), 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dropOnCleanup(t, server, tt.db)
			urls := make([]string, tt.callers+1)
			errs := make([]error, tt.callers+1)
			var wg sync.WaitGroup
			for i := range tt.callers {
				wg.Go(func() { urls[i], errs[i] = postgres.EnsureDatabase(t.Context(), server, tt.db) })
			}
			wg.Wait()
			// Once it exists, ensuring it again changes nothing.
			urls[tt.callers], errs[tt.callers] = postgres.EnsureDatabase(t.Context(), server, tt.db)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("EnsureDatabase call %d: %v", i, err)
				}
				if urls[i] != urls[0] {
					t.Errorf("call %d returned %s, call 0 %s", i, urls[i], urls[0])
				}
			}
			conn, err := pgx.Connect(t.Context(), urls[0])
			if err != nil {
				t.Fatalf("connect to returned URL %s: %v", urls[0], err)
			}
			defer conn.Close(context.Background())
			var got string
			if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&got); err != nil || got != tt.db {
				t.Errorf("current_database = %q (%v), want %q", got, err, tt.db)
			}
		})
	}
}

func TestEnsureDatabaseKeepsURLParameters(t *testing.T) {
	t.Parallel()
	server := testenv.ServerURL(t)
	name := testenv.Name(t, "kept")
	dropOnCleanup(t, server, name)
	url, err := postgres.EnsureDatabase(t.Context(), server, name)
	if err != nil {
		t.Fatal(err)
	}
	serverBase, _, _ := strings.Cut(server, "?")
	base, query, _ := strings.Cut(url, "?")
	if !strings.HasSuffix(base, "/"+name) || !strings.HasPrefix(base, serverBase[:strings.LastIndex(serverBase, "/")]) {
		t.Errorf("URL %s is not %s with database %s", url, server, name)
	}
	if _, serverQuery, _ := strings.Cut(server, "?"); query != serverQuery {
		t.Errorf("query %q, want the server's %q", query, serverQuery)
	}
}

func TestEnsureDatabaseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, server, db string }{
		{"keyword/value server", "host=db password=s3cret", "orders"},
		{"name Postgres would truncate", "postgres://app:s3cret@127.0.0.1:1/postgres", strings.Repeat("d", 64)},
		{"empty name", "postgres://app:s3cret@127.0.0.1:1/postgres", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := postgres.EnsureDatabase(t.Context(), tt.server, tt.db)
			if err == nil || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("err = %v, want an error without the password", err)
			}
		})
	}
}
