package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/herdcm/herd/server/store"
)

// storeBase is -store: empty for sqlite in each server's directory, or a
// PostgreSQL URL (a scratch database) in which each server directory gets
// a schema of its own, herd_bench_<hash of the directory>, so that a
// restarted server, or the child process serving a directory, finds its
// store again and scenarios never share one. The schemas are left behind.
var storeBase string

// schemaDir is the child's internal -schema-dir: when set, the directory
// whose hash names its schema in place of its own -dir, so that the
// servers of one cluster share one schema (see cluster.go).
var schemaDir string

// storeFor returns the server.Options.Store for the server of dir.
func storeFor(ctx context.Context, dir string) (string, error) {
	if storeBase == "" {
		return "", nil
	}
	if !store.IsPostgres(storeBase) {
		return "", fmt.Errorf("-store %s: want a postgres:// URL", store.Redact(storeBase))
	}
	if schemaDir != "" {
		dir = schemaDir
	}
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	schema := "herd_bench_" + hex.EncodeToString(sum[:6])
	db, err := sql.Open("pgx", storeBase)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema); err != nil {
		return "", fmt.Errorf("making schema %s on %s: %w", schema, store.Redact(storeBase), err)
	}
	u, err := url.Parse(storeBase)
	if err != nil {
		return "", fmt.Errorf("-store %s is not a URL", store.Redact(storeBase))
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// storeSize is the bytes the store of dir takes: herd.db, or on
// PostgreSQL the tables of its schema with their indexes and TOAST.
func storeSize(ctx context.Context, dir string) (int64, error) {
	loc, err := storeFor(ctx, dir)
	if err != nil || loc == "" {
		return fileSize(filepath.Join(dir, "herd.db"))
	}
	db, err := sql.Open("pgx", loc)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.QueryRowContext(ctx, `SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'`).Scan(&n)
	return n, err
}
