package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// maxIdentifier is Postgres' NAMEDATALEN-1.
const maxIdentifier = 63

// EnsureDatabase creates database name on the server at serverURL unless it
// exists, and returns serverURL pointing at that database instead. Two
// processes may race to create it; both succeed.
func EnsureDatabase(ctx context.Context, serverURL, name string) (string, error) {
	dbURL, err := withDatabase(serverURL, name)
	if err != nil {
		return "", err
	}
	pool, err := Connect(ctx, serverURL)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("check whether database %s exists: %w", name, err)
	}
	if exists {
		return dbURL, nil
	}
	_, err = pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !createdByOther(err) {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return dbURL, nil
}

// createdByOther reports a CREATE DATABASE that lost a race: duplicate_database,
// or, when both ran at the same instant, a unique violation on pg_database.
func createdByOther(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505")
}

// withDatabase replaces the database (the path) of a postgres:// URL.
func withDatabase(serverURL, name string) (string, error) {
	if name == "" || len(name) > maxIdentifier {
		// Postgres would silently truncate a longer name.
		return "", fmt.Errorf("database name %q must be 1 to %d bytes", name, maxIdentifier)
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("database server %s is not a postgres:// URL", Redact(serverURL))
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}
