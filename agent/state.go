package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the embedded store
)

// State is the agent's local state: one sqlite file (run history, the
// index of replaced file contents, the supervisor's records) beside a
// content directory holding those contents by digest.
type State struct {
	db  *sql.DB
	dir string
}

// migrations are applied in order; PRAGMA user_version records how many
// have run. Never edit one that has shipped: append.
var migrations = []string{
	`CREATE TABLE runs (
		id TEXT PRIMARY KEY,
		started INTEGER NOT NULL,        -- unix nanoseconds
		duration INTEGER NOT NULL,       -- nanoseconds
		node TEXT NOT NULL,
		version TEXT NOT NULL,
		catalog_digest TEXT NOT NULL,
		noop INTEGER NOT NULL,
		exit_code INTEGER NOT NULL,
		summary TEXT NOT NULL,           -- JSON Summary
		report TEXT NOT NULL             -- JSON Report
	);
	CREATE INDEX runs_started ON runs(started);
	CREATE TABLE backups (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		path TEXT NOT NULL,
		digest TEXT NOT NULL,
		size INTEGER NOT NULL,
		saved INTEGER NOT NULL           -- unix nanoseconds
	);
	CREATE INDEX backups_path ON backups(path, saved);
	CREATE TABLE services (
		name TEXT PRIMARY KEY,
		record TEXT NOT NULL             -- JSON, the supervisor's record
	);`,
	// What each service was last ensured with: the catalog's spec digest
	// beside the supervisor's, so that a later run (a new process) can tell
	// whether the running service is the one its catalog wants.
	`CREATE TABLE service_wants (
		name TEXT PRIMARY KEY,
		want_digest TEXT NOT NULL,
		sup_digest TEXT NOT NULL
	);`,
	// The daemon's: the last good catalog per node (its exact signed
	// bytes, verified again when loaded), the report spool (oldest first
	// by seq; a row leaves only when the server acknowledged it), and
	// small settings such as the facts digest the server last acknowledged.
	`CREATE TABLE catalog_cache (
		node TEXT PRIMARY KEY,
		etag TEXT NOT NULL,
		catalog BLOB NOT NULL,
		signature BLOB NOT NULL,
		received INTEGER NOT NULL        -- unix nanoseconds
	);
	CREATE TABLE report_spool (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		run_id TEXT NOT NULL UNIQUE,
		report BLOB NOT NULL,            -- a herdv1.Report, protobuf
		created INTEGER NOT NULL         -- unix nanoseconds
	);
	CREATE TABLE agent_settings (
		key TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);`,
}

// OpenState opens (creating when needed) the state in dir.
func OpenState(dir string) (*State, error) {
	if err := os.MkdirAll(filepath.Join(dir, "content"), 0o700); err != nil {
		return nil, fmt.Errorf("opening agent state: %w", err)
	}
	dsn := "file:" + filepath.Join(dir, "state.db") + "?_busy_timeout=10000&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening agent state: %w", err)
	}
	// One connection: the agent is the only writer, and sqlite serialises
	// writers anyway; this avoids SQLITE_BUSY between our own connections.
	db.SetMaxOpenConns(1)
	s := &State{db: db, dir: dir}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *State) migrate() error {
	var version int
	if err := s.db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("reading agent state version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("agent state %s is version %d, newer than this herd (%d): refusing to touch it", s.dir, version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := s.db.Begin()
		if err != nil {
			return fmt.Errorf("migrating agent state: %w", err)
		}
		if _, err := tx.Exec(migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrating agent state to version %d: %w", i+1, err)
		}
		if _, err := tx.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrating agent state to version %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrating agent state to version %d: %w", i+1, err)
		}
	}
	return nil
}

// Close closes the state.
func (s *State) Close() error { return s.db.Close() }

// NewRunID returns a random run id.
func NewRunID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// RecordRun stores a run's report in the history.
func (s *State) RecordRun(ctx context.Context, r *Report) error {
	summary, err := json.Marshal(r.Summary)
	if err != nil {
		return fmt.Errorf("recording run: %w", err)
	}
	report, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("recording run: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO runs (id, started, duration, node, version, catalog_digest, noop, exit_code, summary, report)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.RunID, r.Started.UnixNano(), int64(r.Duration), r.Node, r.Version, r.CatalogDigest, r.Noop, r.ExitCode(), string(summary), string(report))
	if err != nil {
		return fmt.Errorf("recording run %s: %w", r.RunID, err)
	}
	return nil
}

// RunSummary is one row of the run history.
type RunSummary struct {
	ID       string        `json:"id"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Version  string        `json:"version"`
	Noop     bool          `json:"noop"`
	ExitCode int           `json:"exit_code"`
	Summary  Summary       `json:"summary"`
}

// Runs returns the most recent runs, newest first.
func (s *State) Runs(ctx context.Context, limit int) ([]RunSummary, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, started, duration, version, noop, exit_code, summary FROM runs ORDER BY started DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("reading run history: %w", err)
	}
	defer rows.Close()
	var out []RunSummary
	for rows.Next() {
		var r RunSummary
		var started, dur int64
		var summary string
		if err := rows.Scan(&r.ID, &started, &dur, &r.Version, &r.Noop, &r.ExitCode, &summary); err != nil {
			return nil, fmt.Errorf("reading run history: %w", err)
		}
		r.Started, r.Duration = time.Unix(0, started), time.Duration(dur)
		if err := json.Unmarshal([]byte(summary), &r.Summary); err != nil {
			return nil, fmt.Errorf("reading run history: run %s: %w", r.ID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Backup is a file content a run replaced or removed.
type Backup struct {
	ID     int64     `json:"id"`
	Path   string    `json:"path"`
	Digest string    `json:"digest"`
	Size   int64     `json:"size"`
	Saved  time.Time `json:"saved"`
}

// Save stores r's content before a run replaces the file at path (it is
// the resources.ContentStore of a run). The content is written to the
// content directory by digest, fsynced, and indexed.
func (s *State) Save(ctx context.Context, path string, r io.Reader) (string, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "content"), ".incoming-*")
	if err != nil {
		return "", fmt.Errorf("backing up %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("backing up %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, "content", sum)); err != nil {
		return "", fmt.Errorf("backing up %s: %w", path, err)
	}
	digest := "sha256:" + sum
	if _, err := s.db.ExecContext(ctx, `INSERT INTO backups (path, digest, size, saved) VALUES (?, ?, ?, ?)`, path, digest, n, time.Now().UnixNano()); err != nil {
		return "", fmt.Errorf("backing up %s: %w", path, err)
	}
	return digest, nil
}

// Backups lists saved contents, newest first; path filters when not "".
func (s *State) Backups(ctx context.Context, path string) ([]Backup, error) {
	q := `SELECT id, path, digest, size, saved FROM backups`
	var args []any
	if path != "" {
		q += ` WHERE path = ?`
		args = append(args, path)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY saved DESC, id DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing backups: %w", err)
	}
	defer rows.Close()
	var out []Backup
	for rows.Next() {
		var b Backup
		var saved int64
		if err := rows.Scan(&b.ID, &b.Path, &b.Digest, &b.Size, &saved); err != nil {
			return nil, fmt.Errorf("listing backups: %w", err)
		}
		b.Saved = time.Unix(0, saved)
		out = append(out, b)
	}
	return out, rows.Err()
}

// Backup returns the backup with the given id.
func (s *State) Backup(ctx context.Context, id int64) (Backup, error) {
	var b Backup
	var saved int64
	err := s.db.QueryRowContext(ctx, `SELECT id, path, digest, size, saved FROM backups WHERE id = ?`, id).Scan(&b.ID, &b.Path, &b.Digest, &b.Size, &saved)
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("no backup %d (see herd backups)", id)
	}
	if err != nil {
		return b, fmt.Errorf("reading backup %d: %w", id, err)
	}
	b.Saved = time.Unix(0, saved)
	return b, nil
}

// OpenContent opens a saved content by digest.
func (s *State) OpenContent(digest string) (io.ReadCloser, error) {
	sum, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("bad digest %q", digest)
	}
	f, err := os.Open(filepath.Join(s.dir, "content", sum))
	if err != nil {
		return nil, fmt.Errorf("opening saved content: %w", err)
	}
	return f, nil
}
