package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3" // the embedded store
)

// ErrClosed is returned, wrapped, by every write and check-in after Close.
var ErrClosed = errors.New("store is closed")

// Defaults for the zero Options.
const (
	DefaultBatchMax     = 512
	DefaultCheckinDelay = 100 * time.Millisecond
	DefaultBusyTimeout  = 10 * time.Second
)

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// Logger receives the store's own logs (failed or slow batches). Nil
	// discards them.
	Logger *slog.Logger
	// BatchMax is the most write requests one transaction takes
	// (DefaultBatchMax when 0).
	BatchMax int
	// BatchDelay is the group-commit window: how long the writer waits
	// for more requests to join a batch that is not full. The default, 0,
	// waits for nothing: a batch is whatever queued while the writer
	// committed the one before, which measured fastest under load (see
	// BENCH.md); a window trades each write's latency for fewer fsyncs
	// when writers are few.
	BatchDelay time.Duration
	// CheckinDelay is how long check-ins gather in memory before the
	// writer writes them when no other write carries them
	// (DefaultCheckinDelay when 0).
	CheckinDelay time.Duration
	// ReadConns is the number of read-only connections (default: the
	// larger of 4 and GOMAXPROCS).
	ReadConns int
	// BusyTimeout is how long a connection waits for a lock held by
	// another process, such as a backup or the sqlite3 shell (the store's
	// own connections never contend). DefaultBusyTimeout when 0. sqlite
	// only: PostgreSQL's lock waits are its own settings (lock_timeout
	// in the URL), and Open refuses it there.
	BusyTimeout time.Duration
}

// Store is the server's store: a sqlite file or a PostgreSQL database.
// It is safe for concurrent use; see the package documentation for how
// writes are batched.
type Store struct {
	log  *slog.Logger
	path string // the sqlite file, or the PostgreSQL URL
	name string // path as logs and errors may show it (Redact)
	d    dialect
	opts Options

	wdb  *sql.DB // the writer's handle: exactly one connection, conn
	conn *sql.Conn
	rdb  *readDB // read-only pool

	// mu guards closed and every send on reqs, so that Close can close
	// reqs once no sender is left.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer goroutine has returned

	touches touches
	stats   struct{ batches, requests, failed, checkins atomic.Int64 }

	// pgcfg is the PostgreSQL connection's settings, for the dedicated
	// connections of leases and notifications (cluster.go); nil on sqlite.
	pgcfg *pgx.ConnConfig
	// notifyDB sends notifications: not the writer (its batches would
	// delay them) nor the readers (read-only sessions refuse NOTIFY).
	notifyOnce sync.Once
	notifyDB   *sql.DB

	// created is whether Open found no schema: a new file, or one emptied
	// behind the server's back (see Created).
	created bool
}

// Open opens the store at path, creating it when needed, runs the schema
// migrations it lacks, and starts the writer. It refuses a schema newer
// than this build knows.
//
// path is a sqlite file, or a PostgreSQL database named by a postgres://
// or postgresql:// URL (IsPostgres) whose schema the store owns: the
// tables are made in the URL's search_path (by default public). Its
// password never appears in the store's errors or logs (Redact).
func Open(path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if IsPostgres(path) && opts.BusyTimeout != 0 {
		return nil, fmt.Errorf("opening store %s: BusyTimeout is sqlite's; on PostgreSQL set lock_timeout in the URL", Redact(path))
	}
	if opts.BatchMax <= 0 {
		opts.BatchMax = DefaultBatchMax
	}
	if opts.CheckinDelay <= 0 {
		opts.CheckinDelay = DefaultCheckinDelay
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	s := &Store{
		log:  opts.Logger.With("component", "store"),
		path: path,
		name: Redact(path),
		d:    sqliteDialect,
		opts: opts,
		reqs: make(chan *request, 4*opts.BatchMax),
		done: make(chan struct{}),
	}
	s.touches.init()
	open := s.open
	if IsPostgres(path) {
		s.d, open = pgDialect, s.openPostgres
	}
	if err := open(); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("opening store %s: %w", s.name, err)
	}
	go s.run()
	return s, nil
}

// pgOpenTimeout bounds connecting to PostgreSQL and migrating its schema
// at Open: a database that does not answer fails the start.
const pgOpenTimeout = time.Minute

// openPostgres connects the writer and the readers to the database at
// s.path and migrates its schema. The readers' sessions are read-only
// (default_transaction_read_only), as sqlite's mode=ro readers are.
func (s *Store) openPostgres() error {
	ctx, cancel := context.WithTimeout(context.Background(), pgOpenTimeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(s.path)
	if err != nil {
		// CheckLocation's message: pgx's own may quote a URL that does
		// not parse, password and all.
		return CheckLocation(s.path)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	// The writer and the readers by name in pg_stat_activity, unless
	// the URL names them.
	named := cfg.RuntimeParams["application_name"] != ""
	rcfg := cfg.Copy()
	s.pgcfg = cfg.Copy()
	if !named {
		cfg.RuntimeParams["application_name"] = "herd-writer"
	}
	s.wdb = stdlib.OpenDB(*cfg)
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	if s.conn, err = s.wdb.Conn(ctx); err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	version, err := schemaVersion(ctx, s.conn, s.d)
	if err != nil {
		return err
	}
	s.created = version == 0
	if err := migrate(ctx, s.conn, s.d); err != nil {
		return err
	}
	if !named {
		rcfg.RuntimeParams["application_name"] = "herd-reader"
	}
	rcfg.RuntimeParams["default_transaction_read_only"] = "on"
	rdb := stdlib.OpenDB(*rcfg)
	rdb.SetMaxOpenConns(s.opts.ReadConns)
	rdb.SetMaxIdleConns(s.opts.ReadConns)
	s.rdb = &readDB{DB: rdb, d: s.d}
	if err := s.rdb.PingContext(ctx); err != nil {
		return fmt.Errorf("opening read-only connections: %w", err)
	}
	return nil
}

func (s *Store) open() error {
	if err := restrictFiles(s.path); err != nil {
		return err
	}
	busy := strconv.FormatInt(s.opts.BusyTimeout.Milliseconds(), 10)
	// The file: URI form lets sqlite take mode=ro; escaping the path keeps
	// a '?' or '%' in a directory name from being read as a parameter.
	uri := "file:" + (&url.URL{Path: s.path}).EscapedPath()
	var err error
	s.wdb, err = sql.Open("sqlite3", uri+"?_busy_timeout="+busy+"&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate")
	if err != nil {
		return err
	}
	// One connection, pinned: the writer goroutine owns it and runs its
	// own BEGIN IMMEDIATE / COMMIT on it.
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	ctx := context.Background()
	if s.conn, err = s.wdb.Conn(ctx); err != nil {
		return err
	}
	var mode string
	if err := s.conn.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("reading journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, not wal (is the file on a filesystem without shared memory?)", mode)
	}
	// After a checkpoint, keep the WAL file from staying as large as the
	// biggest burst it ever held.
	if _, err := s.conn.ExecContext(ctx, `PRAGMA journal_size_limit = 67108864`); err != nil {
		return fmt.Errorf("limiting the wal: %w", err)
	}
	// A garbled page would otherwise surface only as writes that fail
	// for ever while the server says it is healthy.
	if err := quickCheck(ctx, s.conn); err != nil {
		return err
	}
	var version int
	if err := s.conn.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	s.created = version == 0
	if err := migrate(ctx, s.conn, s.d); err != nil {
		return err
	}
	// Readers open only now: the file, its WAL and its schema exist.
	rdb, err := sql.Open("sqlite3", uri+"?mode=ro&_busy_timeout="+busy)
	if err != nil {
		return err
	}
	s.rdb = &readDB{DB: rdb, d: s.d}
	s.rdb.SetMaxOpenConns(s.opts.ReadConns)
	s.rdb.SetMaxIdleConns(s.opts.ReadConns)
	if err := s.rdb.PingContext(ctx); err != nil {
		return fmt.Errorf("opening read-only connections: %w", err)
	}
	return nil
}

// Created reports whether Open found no schema in the file: a new store,
// or one that was truncated or replaced by an empty file. On PostgreSQL
// it reports whether the database (its search_path) held no herd_schema
// table: a new database, or one dropped and made again. The server
// refuses to start on such a store when its CA already exists, because
// the revocations and name history it held would be gone.
func (s *Store) Created() bool { return s.created }

// restrictFiles makes the database file 0600 before sqlite opens it:
// sqlite creates it 0644 and gives its -wal and -shm files the mode of
// the database, and the store holds facts, reports and certificates.
// Existing files are tightened too, and none of them may be a symlink.
func restrictFiles(path string) error {
	for i, p := range []string{path, path + "-wal", path + "-shm"} {
		flags := os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
		if i == 0 {
			flags |= os.O_CREATE
		}
		f, err := os.OpenFile(p, flags, 0o600)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("opening %s: %w", p, err)
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("%s is not a regular file", p)
		}
		if err == nil && fi.Mode().Perm() != 0o600 {
			err = f.Chmod(0o600)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("restricting %s to 0600: %w", p, err)
		}
	}
	return nil
}

// quickCheck runs PRAGMA quick_check and turns any finding into an error
// that lists the first few.
func quickCheck(ctx context.Context, conn *sql.Conn) error {
	rows, err := conn.QueryContext(ctx, `PRAGMA quick_check(10)`)
	if err != nil {
		return fmt.Errorf("checking the database: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("checking the database: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("checking the database: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("the database is damaged (restore it from a backup): %s", strings.Join(problems, "; "))
	}
	return nil
}

// CheckWrite commits a tiny write through the writer and returns its
// error: /healthz fails while the store cannot write (a full disk, a
// damaged page), instead of saying ok while every report is refused.
func (s *Store) CheckWrite(ctx context.Context) error {
	err := s.write(ctx, func(w *wtx) error {
		_, err := w.exec(`INSERT INTO health (id, checked) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET checked = excluded.checked`, time.Now().UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("writing to the store: %w", err)
	}
	return nil
}

// Close stops taking writes, lets the writer finish every request already
// queued and flush pending check-ins, and closes the file. Calls after the
// first return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	return s.closeDBs()
}

func (s *Store) closeDBs() error {
	var errs []error
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.conn != nil {
		// A last checkpoint leaves the data in the main file, so that a
		// copy of it alone is complete; best effort.
		if !s.d.pg {
			if _, err := s.conn.ExecContext(context.Background(), `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				s.log.Warn("checkpointing on close", "err", err)
			}
		}
		errs = append(errs, s.conn.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	s.notifyOnce.Do(func() {}) // none opened after this
	if s.notifyDB != nil {
		errs = append(errs, s.notifyDB.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing store %s: %w", s.name, err)
	}
	return nil
}

// Size returns the bytes the store's files take on disk (the database and
// its WAL), for metrics. On PostgreSQL it is the size of the whole
// database (pg_database_size), which is the store's own when it has the
// database to itself.
func (s *Store) Size() (int64, error) {
	if s.d.pg {
		var n int64
		if err := s.rdb.QueryRow(`SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
			return 0, fmt.Errorf("measuring store: %w", err)
		}
		return n, nil
	}
	var total int64
	for _, p := range []string{s.path, s.path + "-wal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("measuring store: %w", err)
		}
		total += fi.Size()
	}
	return total, nil
}

// ns stores a time as unix nanoseconds, the zero time as 0.
func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNS is the inverse of ns.
func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// limitOr returns limit, or def when limit is not positive.
func limitOr(limit, def int) int {
	if limit <= 0 {
		return def
	}
	return limit
}
