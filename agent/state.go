package agent

import (
	"context"
	"crypto/ed25519"
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
	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/agent/supervise"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

// State is the agent's local state: one sqlite file (run history, the
// index of replaced file contents, the supervisor's records, the daemon's
// catalog cache, settings and report spool) beside a content directory
// holding those contents by digest. All the agent's SQL lives in this
// file.
type State struct {
	db        *sql.DB
	dir       string
	recovered string // what OpenState moved aside, if anything
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
//
// At open sqlite's quick_check reads the tables a run reads and writes
// besides the history (the spool, the catalog cache, the services, the
// backups index, the settings), and every page of the file when the last
// such full check is a day old (fullCheckEvery): the history grows to
// megabytes, and reading all of it on every herd apply would cost more
// than the run. A database that fails the check, or that exists with no
// bytes at all (a crash or a full disk caught it being created), is not
// worked around: it is moved aside to dir/corrupt and a fresh one takes its
// place, so that the agent keeps taking catalogs instead of failing every
// run on a local fault that looks like the server being down. Recovered
// says what was moved aside; the caller logs it as an error.
//
// The database and its WAL files are 0600.
func OpenState(dir string) (*State, error) {
	sd := StateDir(dir)
	if err := os.MkdirAll(sd.Content(), 0o700); err != nil {
		return nil, fmt.Errorf("opening agent state: %w", err)
	}
	s := &State{dir: dir}
	db, err := openDB(sd)
	full := false
	if err == nil {
		full, err = s.check(db, time.Now())
		if err != nil {
			db.Close()
		}
	}
	if err != nil {
		moved, merr := moveAside(sd)
		if merr != nil {
			return nil, fmt.Errorf("opening agent state: %w; moving it aside: %w", err, merr)
		}
		s.recovered = fmt.Sprintf("the agent state %s was unusable (%v): moved aside to %s, starting afresh (the report spool, run history and catalog cache are gone; the supervisor finds its services again from its side records in %s, or by their cgroups)", sd.DB(), err, moved, sd.ServiceRecords())
		if db, err = openDB(sd); err != nil {
			return nil, fmt.Errorf("opening agent state: %w", err)
		}
		full = true // a new, empty file
	}
	s.db = db
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	if full {
		// Best effort: without the mark, the next open checks it all again.
		_ = s.setSetting(context.Background(), fullCheckKey, time.Now().UTC().Format(time.RFC3339))
	}
	if err := s.tighten(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Recovered says what OpenState moved aside as corrupt; "" when nothing.
func (s *State) Recovered() string { return s.recovered }

// errEmptyDB marks a state database of zero bytes: sqlite would take it
// for a new one and silently lose the spool and the service records.
var errEmptyDB = errors.New("the file is empty")

// openDB opens the database, creating it 0600 first so that sqlite, which
// gives its WAL files the database's mode, never makes one readable by
// others. The spool and the run records are written with
// synchronous=FULL: a report is acknowledged to nobody, but it must not
// vanish in a power cut after the run said it was spooled.
func openDB(sd StateDir) (*sql.DB, error) {
	fi, err := os.Stat(sd.DB())
	switch {
	case errors.Is(err, os.ErrNotExist):
		f, err := os.OpenFile(sd.DB(), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", sd.DB(), err)
		}
		f.Close()
	case err != nil:
		return nil, err
	case fi.Size() == 0:
		return nil, errEmptyDB
	}
	dsn := "file:" + sd.DB() + "?_busy_timeout=10000&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate&_cache_size=-512"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, err
	}
	// One connection: the agent is the only writer, and sqlite serialises
	// writers anyway; this avoids SQLITE_BUSY between our own connections.
	db.SetMaxOpenConns(1)
	return db, nil
}

// fullCheckEvery is how often OpenState reads every page of the state,
// the history included; fullCheckKey is the setting that says when it last
// did.
const (
	fullCheckEvery = 24 * time.Hour
	fullCheckKey   = "full_check_at"
)

// runTables are the tables a run reads and writes besides the history,
// quick_checked at every open.
var runTables = []string{"agent_settings", "report_spool", "catalog_cache", "services", "service_wants", "backups"}

// check runs sqlite's quick_check at open, so that a garbled file is
// caught there and not at the first query that happens to touch it: over
// runTables, or over every page when the last full check is older than
// fullCheckEvery (or unknown, or in the future). full says which it ran.
func (s *State) check(db *sql.DB, now time.Time) (full bool, err error) {
	var at string
	if err := db.QueryRow(`SELECT value FROM agent_settings WHERE key = ?`, fullCheckKey).Scan(&at); err == nil {
		if t, err := time.Parse(time.RFC3339, at); err == nil && now.Sub(t) < fullCheckEvery && !t.After(now.Add(time.Minute)) {
			ok := true
			for _, table := range runTables {
				if err := quickCheck(db, `PRAGMA quick_check(`+table+`)`); err != nil {
					if strings.Contains(err.Error(), "no such table") {
						ok = false // an older schema: check it all
						break
					}
					return false, err
				}
			}
			if ok {
				return false, nil
			}
		}
	}
	// Anything else — no mark, a new or older schema, a file too garbled
	// to read the mark from — reads every page.
	return true, quickCheck(db, `PRAGMA quick_check`)
}

// quickCheck runs one quick_check pragma and turns what it finds into an
// error.
func quickCheck(db *sql.DB, pragma string) error {
	rows, err := db.Query(pragma)
	if err != nil {
		return err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			return err
		}
		if msg != "ok" {
			problems = append(problems, msg)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		if len(problems) > 3 {
			problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
		}
		return fmt.Errorf("quick_check: %s", strings.Join(problems, "; "))
	}
	return nil
}

// moveAside moves the database and its WAL files into the corrupt
// directory, under one timestamped name, and returns the database's new
// path.
func moveAside(sd StateDir) (string, error) {
	if err := os.MkdirAll(sd.CorruptDir(), 0o700); err != nil {
		return "", err
	}
	to := filepath.Join(sd.CorruptDir(), "state.db."+time.Now().UTC().Format("20060102T150405.000000000Z"))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		err := os.Rename(sd.DB()+suffix, to+suffix)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	return to, nil
}

// tighten makes the database and its WAL files 0600, whatever an older
// herd or a restore left: they hold catalogs and reports.
func (s *State) tighten() error {
	db := StateDir(s.dir).DB()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Chmod(db+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("opening agent state: %w", err)
		}
	}
	return nil
}

// sweepIncoming removes the temporary files a run killed in the middle of
// a write (SIGKILL, power cut) left in the content store and the file
// cache. Each run calls it under the run lock, when no other run can be
// writing one.
func (s *State) sweepIncoming() error {
	sd := StateDir(s.dir)
	var errs []error
	for _, dir := range []string{sd.Content(), sd.Files()} {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".incoming-") {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
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

// NodeApplied reports whether the state in dir records a run (not a
// noop) of node on this host: herd apply asks before it converges a real
// host as a node it never converged (a typo in --node would apply the
// site's catch-all roles). A state directory with no database yet has
// applied nothing, and is not created.
func NodeApplied(ctx context.Context, dir StateDir, node string) (bool, error) {
	if !fileExists(dir.DB()) {
		return false, nil
	}
	st, err := OpenState(dir.String())
	if err != nil {
		return false, err
	}
	defer st.Close()
	var n int
	if err := st.db.QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE node = ? AND noop = 0`, node).Scan(&n); err != nil {
		return false, fmt.Errorf("reading run history: %w", err)
	}
	return n > 0, nil
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
	tmp, err := os.CreateTemp(StateDir(s.dir).Content(), ".incoming-*")
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
	if err := os.Rename(tmp.Name(), filepath.Join(StateDir(s.dir).Content(), sum)); err != nil {
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
	f, err := os.Open(filepath.Join(StateDir(s.dir).Content(), sum))
	if err != nil {
		return nil, fmt.Errorf("opening saved content: %w", err)
	}
	return f, nil
}

// The daemon's tables: the catalog cache, settings and the report spool.

// saveCatalog keeps a verified catalog as this node's last good one.
func (s *State) saveCatalog(ctx context.Context, node, etag string, data, sig []byte) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO catalog_cache (node, etag, catalog, signature, received) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(node) DO UPDATE SET etag = excluded.etag, catalog = excluded.catalog, signature = excluded.signature, received = excluded.received`,
		node, etag, data, sig, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("caching catalog %s: %w", etag, err)
	}
	return nil
}

// loadCatalog returns the node's cached catalog, verified again with key
// (the state file may have been restored from elsewhere, or the node
// enrolled anew with another server); ok is false when there is none.
func (s *State) loadCatalog(ctx context.Context, key ed25519.PublicKey, node string) (cat *catalogs.Catalog, etag string, ok bool, err error) {
	var data, sig []byte
	err = s.db.QueryRowContext(ctx, `SELECT etag, catalog, signature FROM catalog_cache WHERE node = ?`, node).Scan(&etag, &data, &sig)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("reading the cached catalog: %w", err)
	}
	cat, err = acceptCatalog(key, node, etag, data, sig)
	if err != nil {
		return nil, "", false, fmt.Errorf("cached catalog %s: %w", etag, err)
	}
	return cat, etag, true, nil
}

// setting reads a small daemon setting; "" when unset.
func (s *State) setting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM agent_settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading setting %s: %w", key, err)
	}
	return v, nil
}

func (s *State) setSetting(ctx context.Context, key, value string) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO agent_settings (key, value) VALUES (?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("saving setting %s: %w", key, err)
	}
	return nil
}

// SpooledReport is a report waiting for the server's acknowledgement.
type SpooledReport struct {
	RunID   string    `json:"run_id"`
	Created time.Time `json:"created"`
	Size    int       `json:"size"` // bytes on the wire
}

// SpooledReports lists the reports waiting to be sent, oldest first.
func (s *State) SpooledReports(ctx context.Context) ([]SpooledReport, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT run_id, created, length(report) FROM report_spool ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("listing spooled reports: %w", err)
	}
	defer rows.Close()
	var out []SpooledReport
	for rows.Next() {
		var r SpooledReport
		var created int64
		if err := rows.Scan(&r.RunID, &created, &r.Size); err != nil {
			return nil, fmt.Errorf("listing spooled reports: %w", err)
		}
		r.Created = time.Unix(0, created)
		out = append(out, r)
	}
	return out, rows.Err()
}

// spoolReport keeps a report until the server acknowledges it, dropping
// the oldest beyond maxSpooled; it returns how many it dropped.
func (s *State) spoolReport(ctx context.Context, r *herdv1.Report) (dropped int64, err error) {
	b, err := proto.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO report_spool (run_id, report, created) VALUES (?, ?, ?)`, r.RunId, b, time.Now().UnixNano()); err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM report_spool WHERE seq <= (SELECT seq FROM report_spool ORDER BY seq DESC LIMIT 1 OFFSET ?)`, maxSpooled)
	if err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	dropped, _ = res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("spooling report %s: %w", r.RunId, err)
	}
	return dropped, nil
}

// oldestSpooled returns the oldest waiting report; ok is false when none.
func (s *State) oldestSpooled(ctx context.Context) (runID string, b []byte, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT run_id, report FROM report_spool ORDER BY seq LIMIT 1`).Scan(&runID, &b)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("reading the report spool: %w", err)
	}
	return runID, b, true, nil
}

// spooled is one waiting report, as stored.
type spooled struct {
	runID  string
	report []byte
}

// spooledBatch returns the oldest waiting reports, at most n of them and
// about maxBytes: always the oldest one, however large, then those that
// fit.
func (s *State) spooledBatch(ctx context.Context, n, maxBytes int) ([]spooled, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT run_id, report FROM report_spool ORDER BY seq LIMIT ?`, n)
	if err != nil {
		return nil, fmt.Errorf("reading the report spool: %w", err)
	}
	defer rows.Close()
	var out []spooled
	size := 0
	for rows.Next() {
		var e spooled
		if err := rows.Scan(&e.runID, &e.report); err != nil {
			return nil, fmt.Errorf("reading the report spool: %w", err)
		}
		if len(out) > 0 && size+len(e.report) > maxBytes {
			break
		}
		size += len(e.report)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the report spool: %w", err)
	}
	return out, nil
}

// unspoolAll removes the reports of runIDs in one transaction: one sync
// for a batch the server acknowledged.
func (s *State) unspoolAll(ctx context.Context, runIDs []string) error {
	if len(runIDs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("unspooling %d reports: %w", len(runIDs), err)
	}
	defer tx.Rollback()
	for _, id := range runIDs {
		if _, err := tx.ExecContext(ctx, `DELETE FROM report_spool WHERE run_id = ?`, id); err != nil {
			return fmt.Errorf("unspooling report %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("unspooling %d reports: %w", len(runIDs), err)
	}
	return nil
}

// respool replaces a spooled report, keeping its place in the order.
func (s *State) respool(ctx context.Context, runID string, r *herdv1.Report) error {
	b, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("respooling report %s: %w", runID, err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE report_spool SET report = ? WHERE run_id = ?`, b, runID); err != nil {
		return fmt.Errorf("respooling report %s: %w", runID, err)
	}
	return nil
}

func (s *State) unspool(ctx context.Context, runID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM report_spool WHERE run_id = ?`, runID); err != nil {
		return fmt.Errorf("unspooling report %s: %w", runID, err)
	}
	return nil
}

// The supervisor's tables: its records, and what each service was
// ensured with.

// ServiceStore returns the supervisor's record store, kept in this state.
// A record written (sqlite, WAL, synchronous=FULL) survives the agent
// crashing; after a power loss the processes it names are gone anyway and
// the boot id tells the supervisor so. The supervisor keeps a copy of each
// record beside the database too (StateDir.ServiceRecords), read should
// this state be moved aside as corrupt.
func (s *State) ServiceStore() supervise.Store { return serviceStore{s.db} }

type serviceStore struct{ db *sql.DB }

func (ss serviceStore) Load(ctx context.Context) ([]supervise.Record, error) {
	rows, err := ss.db.QueryContext(ctx, `SELECT name, record FROM services ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("loading service records: %w", err)
	}
	defer rows.Close()
	var out []supervise.Record
	for rows.Next() {
		var name, rec string
		if err := rows.Scan(&name, &rec); err != nil {
			return nil, fmt.Errorf("loading service records: %w", err)
		}
		var r supervise.Record
		if err := json.Unmarshal([]byte(rec), &r); err != nil {
			return nil, fmt.Errorf("loading the record of service %s: %w", name, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading service records: %w", err)
	}
	return out, nil
}

func (ss serviceStore) Save(ctx context.Context, r supervise.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("saving the record of service %s: %w", r.Name, err)
	}
	if _, err := ss.db.ExecContext(ctx, `INSERT INTO services (name, record) VALUES (?, ?)
		ON CONFLICT(name) DO UPDATE SET record = excluded.record`, r.Name, string(b)); err != nil {
		return fmt.Errorf("saving the record of service %s: %w", r.Name, err)
	}
	return nil
}

func (ss serviceStore) Delete(ctx context.Context, name string) error {
	if _, err := ss.db.ExecContext(ctx, `DELETE FROM services WHERE name = ?`, name); err != nil {
		return fmt.Errorf("deleting the record of service %s: %w", name, err)
	}
	return nil
}

// serviceWants returns what each service was last ensured with: name →
// {catalog spec digest, supervisor spec digest}.
func (s *State) serviceWants(ctx context.Context) (map[string][2]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, want_digest, sup_digest FROM service_wants`)
	if err != nil {
		return nil, fmt.Errorf("reading service wants: %w", err)
	}
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var name, want, got string
		if err := rows.Scan(&name, &want, &got); err != nil {
			return nil, fmt.Errorf("reading service wants: %w", err)
		}
		out[name] = [2]string{want, got}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading service wants: %w", err)
	}
	return out, nil
}

// saveServiceWant records what service name was ensured with.
func (s *State) saveServiceWant(ctx context.Context, name string, w [2]string) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO service_wants (name, want_digest, sup_digest) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET want_digest = excluded.want_digest, sup_digest = excluded.sup_digest`,
		name, w[0], w[1]); err != nil {
		return fmt.Errorf("recording service %s: %w", name, err)
	}
	return nil
}

// deleteServiceWant forgets what service name was ensured with.
func (s *State) deleteServiceWant(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM service_wants WHERE name = ?`, name); err != nil {
		return fmt.Errorf("forgetting service %s: %w", name, err)
	}
	return nil
}

// KeepBackups is how many backups of each path the agent keeps: a run
// that replaces a file saves its old content, and the oldest beyond this
// many are deleted after each run, contents included (a sensitive
// file's old content, a secret, is purged by the same rule).
const KeepBackups = 10

// TrimBackups keeps only the newest keep backups of each path, and deletes
// the saved contents no kept backup names.
func (s *State) TrimBackups(ctx context.Context, keep int) error {
	if keep <= 0 {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, digest FROM (
		SELECT id, digest, ROW_NUMBER() OVER (PARTITION BY path ORDER BY saved DESC, id DESC) AS n FROM backups
	) WHERE n > ?`, keep)
	if err != nil {
		return fmt.Errorf("trimming backups: %w", err)
	}
	var ids []int64
	digests := map[string]bool{}
	for rows.Next() {
		var id int64
		var d string
		if err := rows.Scan(&id, &d); err != nil {
			rows.Close()
			return fmt.Errorf("trimming backups: %w", err)
		}
		ids = append(ids, id)
		digests[d] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("trimming backups: %w", err)
	}
	for _, id := range ids {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM backups WHERE id = ?`, id); err != nil {
			return fmt.Errorf("trimming backups: %w", err)
		}
	}
	for d := range digests {
		var left int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM backups WHERE digest = ?`, d).Scan(&left); err != nil {
			return fmt.Errorf("trimming backups: %w", err)
		}
		sum, ok := strings.CutPrefix(d, "sha256:")
		if left > 0 || !ok || !isHex(sum) {
			continue
		}
		if err := os.Remove(filepath.Join(StateDir(s.dir).Content(), sum)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("trimming backups: %w", err)
		}
	}
	return nil
}

// isHex reports whether s is a lowercase hex digest: the only names the
// content directory holds, so that a damaged row never names another file.
func isHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// TrimRuns keeps only the newest keep runs of the history.
func (s *State) TrimRuns(ctx context.Context, keep int) error {
	if keep <= 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY started DESC LIMIT -1 OFFSET ?)`, keep)
	if err != nil {
		return fmt.Errorf("trimming the run history: %w", err)
	}
	return nil
}
