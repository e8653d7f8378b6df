package testkit

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// PostgresEnv names a PostgreSQL URL whose role may create databases.
// When it is set, Postgres uses that server (one new database per test
// binary, dropped by StopPostgres) instead of starting its own.
const PostgresEnv = "HERD_TEST_POSTGRES"

// pg is the test binary's one PostgreSQL: a database on the server
// PostgresEnv names, or on a private cluster this binary started.
var pg struct {
	once sync.Once
	err  error
	skip string // why there is none, when no PostgreSQL is to be had

	base  *url.URL // the test database
	admin *sql.DB  // connected to it, to make schemas
	n     int64
	mu    sync.Mutex

	// A private cluster: its directory and its postmaster.
	dir    string
	proc   *exec.Cmd
	exited chan struct{}
	// An external server: where to drop the test database from.
	server *url.URL
	dbName string
}

// Postgres returns the URL of a new, empty PostgreSQL schema for one
// test: the URL's search_path names it, so that a store opened on the URL
// makes its tables there. Every call gets its own schema, in one database
// per test binary:
//   - on the server $HERD_TEST_POSTGRES names (a role with CREATEDB);
//   - else on a private cluster the first call starts with initdb from
//     Debian's postgresql package: in a directory from os.MkdirTemp, run
//     as the unprivileged user nobody when the test runs as root, on a
//     unix socket in that directory and no TCP port. It stops with
//     StopPostgres (call it from TestMain after m.Run), or, should the
//     test binary die first, on the parent-death signal.
//
// Without either it skips the test, saying so; under CI=true it fails
// instead: CI installs PostgreSQL and must never skip these tests.
func Postgres(tb testing.TB) string {
	tb.Helper()
	pg.once.Do(startPostgres)
	if pg.skip != "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s, and CI must run this test: .ci/run installs postgresql", pg.skip)
		}
		tb.Skipf("%s; CI runs this test", pg.skip)
	}
	if pg.err != nil {
		tb.Fatalf("starting PostgreSQL for the tests: %v", pg.err)
	}
	pg.mu.Lock()
	pg.n++
	schema := fmt.Sprintf("t%d_%s", pg.n, randomHex(4))
	pg.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := pg.admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		tb.Fatalf("making a PostgreSQL schema for the test: %v", err)
	}
	u := *pg.base
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// StopPostgres stops the private cluster Postgres started, or drops the
// database it made on $HERD_TEST_POSTGRES's server, and removes its
// directory. A package whose tests call Postgres calls it from TestMain
// after m.Run; calling it when Postgres never ran does nothing.
func StopPostgres() {
	if pg.admin != nil {
		pg.admin.Close()
	}
	if pg.server != nil && pg.dbName != "" {
		if db, err := sql.Open("pgx", pg.server.String()); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pg.dbName+` WITH (FORCE)`); err != nil {
				fmt.Fprintf(os.Stderr, "testkit: dropping the test database %s: %v\n", pg.dbName, err)
			}
			cancel()
			db.Close()
		}
	}
	if pg.proc != nil {
		// SIGINT is PostgreSQL's fast shutdown: clients are cut off and
		// nothing is left for a crash recovery.
		_ = pg.proc.Process.Signal(syscall.SIGINT)
		select {
		case <-pg.exited:
		case <-time.After(time.Minute):
			_ = pg.proc.Process.Kill()
			<-pg.exited
		}
		pg.proc = nil
	}
	if pg.dir != "" {
		os.RemoveAll(pg.dir)
		pg.dir = ""
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startPostgres sets pg up once per test binary.
func startPostgres() {
	if env := os.Getenv(PostgresEnv); env != "" {
		pg.err = useServer(env)
	} else if initdb := findInitdb(); initdb == "" {
		pg.skip = "PostgreSQL is not installed on this machine (no initdb on PATH or in /usr/lib/postgresql/*/bin) and " + PostgresEnv + " is not set"
		return
	} else {
		pg.err = startCluster(initdb)
	}
	if pg.err != nil {
		return
	}
	pg.admin, pg.err = sql.Open("pgx", pg.base.String())
	if pg.err == nil {
		pg.err = pg.admin.Ping()
	}
}

// useServer makes the test binary's database on the server at env.
func useServer(env string) error {
	u, err := url.Parse(env)
	if err != nil {
		return fmt.Errorf("%s is not a URL", PostgresEnv)
	}
	db, err := sql.Open("pgx", env)
	if err != nil {
		return err
	}
	defer db.Close()
	name := "herd_test_" + strconv.Itoa(os.Getpid()) + "_" + randomHex(4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// template0 and the C collation: the same database wherever the
	// server's defaults point.
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name+` TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`); err != nil {
		return fmt.Errorf("creating a database on %s's server: %w", PostgresEnv, err)
	}
	pg.server, pg.dbName = u, name
	base := *u
	base.Path = "/" + name
	pg.base = &base
	return nil
}

// findInitdb finds initdb on PATH or in Debian's versioned directories,
// the newest version first.
func findInitdb() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return p
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(found, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[i]))))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[j]))))
		return a > b
	})
	if len(found) == 0 {
		return ""
	}
	return found[0]
}

// reachable reports whether every user may enter dir and its parents.
func reachable(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// startCluster runs initdb and the postmaster in a new directory.
func startCluster(initdb string) error {
	// The socket's path must fit a sockaddr_un (107 bytes), and nobody
	// must be able to reach the directory: else /tmp.
	parent := os.TempDir()
	if len(parent) > 60 || (os.Geteuid() == 0 && !reachable(parent)) {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "herd-pg-")
	if err != nil {
		return err
	}
	pg.dir = dir
	// PostgreSQL refuses to run as root: as root, the cluster belongs to
	// nobody.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return fmt.Errorf("running PostgreSQL as an unprivileged user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(initdb, "-D", data, "-U", "herd", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	postgres := filepath.Join(filepath.Dir(initdb), "postgres")
	// A unix socket in the directory and no TCP: no port to pick or
	// collide on. Durability is not what these tests measure: fsync off
	// spares the disk the other tests share.
	proc := exec.Command(postgres, "-D", data, "-k", dir, "-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=400", "-c", "shared_buffers=32MB")
	proc.Dir = dir
	// The parent-death signal stops the postmaster when the test binary
	// dies without StopPostgres (a panic, a timeout).
	proc.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
	stderr, err := proc.StderrPipe()
	if err != nil {
		return err
	}
	started := make(chan error, 1)
	pg.exited = make(chan struct{})
	go func() {
		// The parent-death signal is sent when the thread that started
		// the child ends, not the process: this goroutine keeps its
		// thread until the postmaster exits.
		runtime.LockOSThread()
		defer close(pg.exited)
		if err := proc.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = proc.Wait()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	pg.proc = proc
	// The postmaster says when it takes connections; wait for that line,
	// and keep reading its log so that it never blocks on a full pipe.
	ready := make(chan struct{})
	var logTail []string
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logTail = append(logTail, line)
			if len(logTail) > 20 {
				logTail = logTail[1:]
			}
			logMu.Unlock()
			if strings.Contains(line, "ready to accept connections") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-pg.exited:
		logMu.Lock()
		defer logMu.Unlock()
		return fmt.Errorf("postgres exited at start: %s", strings.Join(logTail, "\n"))
	case <-time.After(2 * time.Minute):
		return errors.New("postgres did not become ready in 2 minutes")
	}
	base := &url.URL{Scheme: "postgres", User: url.User("herd"), Path: "/postgres",
		RawQuery: url.Values{"host": {dir}, "sslmode": {"disable"}}.Encode()}
	db, err := sql.Open("pgx", base.String())
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE DATABASE herd_test`); err != nil {
		return fmt.Errorf("creating the test database: %w", err)
	}
	base.Path = "/herd_test"
	pg.base = base
	return nil
}
