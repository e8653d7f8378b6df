package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/testkit"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopPostgres()
	os.Exit(code)
}

// kinds are the databases every store test runs on (eachStore).
var kinds = []string{"sqlite", "postgres"}

// eachStore runs fn once per database, as subtests named for it: every
// test that opens its store with openTest or testLoc runs on sqlite and
// on PostgreSQL alike.
func eachStore(t *testing.T, fn func(t *testing.T)) {
	t.Helper()
	for _, k := range kinds {
		t.Run(k, fn)
	}
}

// testKind is the database a test (or a subtest of it) runs on: the
// eachStore subtest in its name, sqlite outside eachStore.
func testKind(t testing.TB) string {
	parts := strings.Split(t.Name(), "/")
	if len(parts) > 1 && parts[1] == "postgres" {
		return "postgres"
	}
	return "sqlite"
}

// testLoc returns a new, empty store location of the test's kind: a file
// in a temporary directory, or a fresh PostgreSQL schema.
func testLoc(t testing.TB) string {
	t.Helper()
	if testKind(t) == "postgres" {
		return testkit.Postgres(t)
	}
	return filepath.Join(t.TempDir(), "herd.db")
}

func TestRebind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`a = ? AND b = ?`, `a = $1 AND b = $2`},
		{`a = ?1 OR b = ?1`, `a = $1 OR b = $1`},
		{`a = ?2 AND b = ?`, `a = $2 AND b = $3`},
		{`x = '?' AND y = ?`, `x = '?' AND y = $1`},
		{`"odd?" = ? AND z = 'it''s ?'`, `"odd?" = $1 AND z = 'it''s ?'`},
		{`IN (?` + strings.Repeat(",?", 11) + `)`, `IN ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`},
		{`unterminated 'x ?`, `unterminated 'x ?`},
	} {
		if got := rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"/var/lib/herd-server/herd.db", "/var/lib/herd-server/herd.db"},
		{"postgres://herd:s3cret@db.example.com:5432/herd?sslmode=verify-full", "postgres://herd:xxxxx@db.example.com:5432/herd?sslmode=verify-full"},
		{"postgresql://herd@db/herd?password=s3cret&sslpassword=s3cret", "postgresql://herd@db/herd?password=xxxxx&sslpassword=xxxxx"},
		{"POSTGRES://u:s3cret@h/d", "postgres://u:xxxxx@h/d"},
		{"postgres://u:s3cret@h/d?bad=%zz&password=s3cret", "postgres://u:xxxxx@h/d?password=xxxxx"},
		{"postgres://u:s3%zzcret@h/d", "postgres://(unparsable URL)"},
	} {
		got := Redact(tc.in)
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "s3") {
			t.Errorf("Redact(%q) = %q: the password shows", tc.in, got)
		}
	}
}

// TestPGMigrations: every migration has a PostgreSQL form that runs, the
// version is recorded, and a newer schema is refused and left alone, as
// TestMigrations checks of sqlite.
func TestPGMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testkit.Postgres(t)
	s, err := Open(dsn, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open on a fresh schema: %v", err)
	}
	if !s.Created() {
		t.Error("Created() of a fresh schema = false, want true")
	}
	if got := pgVersion(t, dsn); got != len(migrations) {
		t.Errorf("herd_schema after Open = %d, want %d", got, len(migrations))
	}
	if err := s.SaveFacts(ctx, "web-01", "sha256:f1", []byte(`{"os":{}}`), at(0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dsn, Options{})
	if s.Created() {
		t.Error("Created() of a migrated schema = true, want false")
	}
	if d, _, _, ok, err := s.Facts(ctx, "web-01"); err != nil || !ok || d != "sha256:f1" {
		t.Errorf("Facts after reopen = %q, %v, %v", d, ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db := pgDB(t, dsn)
	if _, err := db.Exec(`UPDATE herd_schema SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dsn, Options{Logger: testLogger(t)}); err == nil {
		s.Close()
		t.Fatal("Open on a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open on a newer schema = %v, want it to say newer", err)
	}
	if got := pgVersion(t, dsn); got != 99 {
		t.Errorf("herd_schema after refusing = %d, want 99", got)
	}
}

// TestPGSchemaDropped: a schema dropped behind the server's back reads as
// a new store (Created), which the server refuses beside an existing CA.
func TestPGSchemaDropped(t *testing.T) {
	t.Parallel()
	dsn := testkit.Postgres(t)
	s := openAt(t, dsn, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	schema := searchPath(t, dsn)
	db := pgDB(t, dsn)
	if _, err := db.Exec(fmt.Sprintf(`DROP SCHEMA %s CASCADE; CREATE SCHEMA %s`, schema, schema)); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dsn, Options{})
	if !s.Created() {
		t.Error("Created() after the schema was dropped = false, want true")
	}
}

// TestPGReadersReadOnly: as sqlite's readers are opened mode=ro, the
// PostgreSQL readers' sessions cannot write.
func TestPGReadersReadOnly(t *testing.T) {
	t.Parallel()
	s := openAt(t, testkit.Postgres(t), Options{})
	if _, err := s.rdb.Exec(`DELETE FROM nodes`); err == nil {
		t.Error("a reader connection could write")
	}
	if n, err := s.Size(); err != nil || n <= 0 {
		t.Errorf("Size() = %d, %v; want the database's size", n, err)
	}
	// sqlite's busy timeout means nothing there: refused, not ignored.
	if s, err := Open(testkit.Postgres(t), Options{BusyTimeout: time.Second}); err == nil {
		s.Close()
		t.Error("Open(postgres, BusyTimeout) = nil error, want a refusal")
	}
}

// TestPGOpenErrorHidesPassword: a store that cannot connect says where it
// tried, but never the password.
func TestPGOpenErrorHidesPassword(t *testing.T) {
	t.Parallel()
	dsn := testkit.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("nobody-here", "hunter2-secret")
	q := u.Query()
	q.Set("connect_timeout", "5")
	u.RawQuery = q.Encode()
	_, err = Open(u.String(), Options{Logger: testLogger(t)})
	if err == nil {
		t.Fatal("Open as a role that does not exist succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "xxxxx") {
		t.Errorf("Open error = %v, want the redacted URL in it", err)
	}
	// A URL that does not parse: nothing of it past the scheme shows.
	if _, err := Open("postgres://herd:hunter2-secret@db:99999999/herd", Options{}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open of a bad URL = %v, want an error without the password", err)
	}
}

// TestCertsValidIsUnique: a second current certificate of a name (two
// servers on one PostgreSQL store racing) violates certs_valid, which
// isUnique recognises in both databases: PutCert then says ErrExists.
func TestCertsValidIsUnique(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		s := openTest(t)
		insert := func(name, serial string) error {
			return s.write(context.Background(), func(w *wtx) error {
				_, err := w.exec(`INSERT INTO certs (name, serial, der, admin, not_after, issued) VALUES (?, ?, ?, 0, 0, 0)`, name, serial, []byte{0})
				return err
			})
		}
		if err := insert("n", "s1"); err != nil {
			t.Fatal(err)
		}
		if err := insert("n", "s2"); !isUnique(err, "certs_valid", "certs.name") {
			t.Errorf("second current certificate = %v, want certs_valid violated", err)
		}
		if err := insert("m", "s1"); err == nil || isUnique(err, "certs_valid", "certs.name") {
			t.Errorf("a serial stored twice = %v, want a violation of another index", err)
		}
	})
}

func pgDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func pgVersion(t *testing.T, dsn string) int {
	t.Helper()
	var v int
	if err := pgDB(t, dsn).QueryRow(`SELECT version FROM herd_schema`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func searchPath(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	sp := u.Query().Get("search_path")
	if sp == "" {
		t.Fatalf("%s names no search_path", Redact(dsn))
	}
	return sp
}

// TestPGSingleUseTokenOnceAcrossStores: two stores on one PostgreSQL
// database (two servers) use one single-use token at the same moment:
// the second store's use lands between the first's read and its write
// (inside accept), and only one of them gets the token.
func TestPGSingleUseTokenOnceAcrossStores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testkit.Postgres(t)
	a, b := openAt(t, dsn, Options{}), openAt(t, dsn, Options{})
	tok := ca.Token{Hash: "h1", SingleUse: true, Expires: at(3600), Created: at(0)}
	if err := a.PutToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	var bOK bool
	_, aOK, err := a.UseToken(ctx, "h1", at(1), func(ca.Token) bool {
		var err error
		if _, bOK, err = b.UseToken(ctx, "h1", at(2), yes); err != nil {
			t.Errorf("the other store's UseToken: %v", err)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if aOK == bOK {
		t.Errorf("UseToken of one single-use token on two stores: %v and %v, want exactly one", aOK, bOK)
	}
}

// TestEventTextAnyBytes: a command's output may hold a NUL byte, invalid
// UTF-8 and backslashes; the report is stored on both databases and its
// events come back in order, byte for byte (they are one binary value),
// with their changes or none. Its text columns take the same on both
// (on PostgreSQL, whose text takes neither NUL nor invalid UTF-8, those
// become U+FFFD).
func TestEventTextAnyBytes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		odd := "a\x00b \\x41 \\\\ \xff\xfe end"
		var events []Event
		for i := range 40 {
			e := Event{ID: fmt.Sprintf("exec:e%02d", i), Type: "exec", Status: "failed", Error: "exit status 1", Output: odd, Duration: time.Duration(i)}
			if i%2 == 0 {
				e.ChangesJSON = []byte(`[{"attr":"x","to":"a\\nb"}]`)
			}
			events = append(events, e)
		}
		r := Report{RunID: "r1", Version: odd, Started: at(1), Received: at(1), Summary: Summary{Resources: 40, Failed: 40}, Events: events}
		if _, err := s.SaveReport(ctx, "web-01", r); err != nil {
			t.Fatalf("SaveReport with odd output = %v", err)
		}
		got, ok, err := s.ReportByRun(ctx, "web-01", "r1")
		if err != nil || !ok {
			t.Fatalf("ReportByRun = %v, %v", ok, err)
		}
		want, wantVersion := odd, odd
		if testKind(t) == "postgres" {
			wantVersion = "a\uFFFDb \\x41 \\\\ \uFFFD end"
		}
		if got.Version != wantVersion {
			t.Errorf("version = %q, want %q", got.Version, wantVersion)
		}
		if len(got.Events) != len(events) {
			t.Fatalf("%d events back, want %d", len(got.Events), len(events))
		}
		for i, e := range got.Events {
			if e.ID != events[i].ID || e.Output != want || string(e.ChangesJSON) != string(events[i].ChangesJSON) || e.Duration != events[i].Duration {
				t.Errorf("event %d = %+v, want %+v with output %q", i, e, events[i], want)
			}
		}
	})
}

// TestPGWriterReconnects: the writer's connection ended from outside (a
// database restart, an administrator) fails the batch that meets it, and
// the next write goes through on a new connection.
func TestPGWriterReconnects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testkit.Postgres(t)
	s := openAt(t, dsn, Options{})
	var pid int
	if err := s.write(ctx, func(w *wtx) error { return w.queryRow(`SELECT pg_backend_pid()`).Scan(&pid) }); err != nil {
		t.Fatal(err)
	}
	var ended bool
	if err := pgDB(t, dsn).QueryRow(`SELECT pg_terminate_backend($1)`, pid).Scan(&ended); err != nil || !ended {
		t.Fatalf("ending the writer's backend %d: %v, %v", pid, ended, err)
	}
	// The first write may meet the dead connection; the one after it
	// must not.
	_ = s.SetCompileError(ctx, "n", "v1", "first")
	if err := s.SetCompileError(ctx, "n", "v1", "second"); err != nil {
		t.Fatalf("a write after the writer's connection was ended = %v, want it through a new one", err)
	}
	if n, ok, err := s.Node(ctx, "n"); err != nil || !ok || n.CompileError != "second" {
		t.Errorf("Node = %+v, %v, %v", n, ok, err)
	}
}

// TestPGSchemaTranslation: every migration's PostgreSQL form keeps none
// of sqlite's types (INTEGER is 32 bits there: a time in nanoseconds
// would overflow later, not fail now) and compares all text byte by byte.
func TestPGSchemaTranslation(t *testing.T) {
	t.Parallel()
	for n := 1; n <= len(migrations); n++ {
		pg := pgSchema(n)
		for _, bad := range []string{"INTEGER", "BLOB", "WITHOUT ROWID", "AUTOINCREMENT", "PRAGMA"} {
			if strings.Contains(pg, bad) {
				t.Errorf("migration %d's PostgreSQL form holds %s:\n%s", n, bad, pg)
			}
		}
		if texts, collated := strings.Count(pg, " TEXT"), strings.Count(pg, ` TEXT COLLATE "C"`); texts != collated {
			t.Errorf("migration %d's PostgreSQL form: %d TEXT columns, %d of them COLLATE \"C\":\n%s", n, texts, collated, pg)
		}
	}
	// A statement that ends in TEXT, as a later ALTER TABLE may (pgSchema
	// adds the newline).
	got := pgTypes.Replace("ALTER TABLE rollouts ADD COLUMN environment TEXT\n")
	if want := "ALTER TABLE rollouts ADD COLUMN environment TEXT COLLATE \"C\"\n"; got != want {
		t.Errorf("translated %q, want %q", got, want)
	}
}
