package server

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/herdcm/herd/testkit"
)

// TestMain stops the PostgreSQL cluster testkit.Postgres may have started.
func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopPostgres()
	os.Exit(code)
}

// TestRefusesAnEmptiedPostgresStore: a PostgreSQL store whose schema was
// dropped and made again, beside an existing CA, is refused as an emptied
// sqlite file is (TestRefusesAnEmptiedStore), and the refusal names the
// store without its password.
func TestRefusesAnEmptiedPostgresStore(t *testing.T) {
	t.Parallel()
	site, dir := t.TempDir(), t.TempDir()
	writeFiles(t, site, testSite)
	ctx := context.Background()
	dsn := testkit.Postgres(t)
	// A password the test cluster does not ask for (trust), so that the
	// message can be checked for it.
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "hunter2-secret")
	dsn = u.String()
	opts := testOptions(t, site, dir)
	opts.Store = dsn
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/herd.db"); !os.IsNotExist(err) {
		t.Errorf("a server on PostgreSQL made a sqlite file too (stat: %v)", err)
	}
	schema := u.Query().Get("search_path")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf(`DROP SCHEMA %s CASCADE; CREATE SCHEMA %s`, schema, schema)); err != nil {
		t.Fatal(err)
	}
	if s, err := New(ctx, opts); err == nil {
		s.Close()
		t.Fatal("New on an emptied PostgreSQL store with an existing CA = nil error, want a refusal")
	} else if !strings.Contains(err.Error(), "empty") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("New on an emptied store = %v, want it to say the store is empty, without the password", err)
	}
	opts.AcceptEmptyStore = true
	s, err = New(ctx, opts)
	if err != nil {
		t.Fatalf("New with AcceptEmptyStore = %v", err)
	}
	s.Close()
}
