package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStoragePerNode measures what a node costs on disk after 30 days of
// 30-minute runs that change nothing (1,440 reports), beside its node
// row, one set of facts and one catalog, and holds it under 2 MB. It is a
// size bound, not a timing: the figures go to BENCH.md.
func TestStoragePerNode(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 14,400 reports")
	}
	t.Parallel()
	const (
		nodes    = 10
		runs     = 30 * 24 * 2
		maxBytes = 2 << 20
	)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herd.db")
	s := openAt(t, path, Options{})
	empty := vacuumedSize(t, s, path)

	facts := []byte(`{` + strings.Repeat(`"some_fact":"a value of about this length",`, 180) + `"end":1}`)                                                           // ~8 KB
	catalog := []byte(`{"resources":[` + strings.Repeat(`{"id":"file:/etc/app/x.conf","attrs":{"mode":"0644","content":"sha256:0123456789abcdef"}},`, 400) + `{}]}`) // ~36 KB
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	name := func(i int) string { return fmt.Sprintf("web-%04d.prod.example.com", i) }
	for i := range nodes {
		node := name(i)
		fj := append(facts, byte(' '+i)) // every node's facts differ
		sum := sha256.Sum256(fj)
		must(t, s.SaveFacts(ctx, node, "sha256:"+hex.EncodeToString(sum[:]), fj, start))
		cj := append(catalog, byte(' '+i))
		sum = sha256.Sum256(cj)
		must(t, s.SaveCatalog(ctx, node, "sha256:"+hex.EncodeToString(sum[:]), strings.Repeat("c", 40), cj, make([]byte, 64)))
	}
	base := vacuumedSize(t, s, path)

	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			node := name(i)
			for run := range runs {
				at := start.Add(time.Duration(run) * 30 * time.Minute)
				if err := s.Checkin(ctx, node, at, "1.4.2", at.Add(30*time.Minute)); err != nil {
					t.Error(err)
					return
				}
				r := noChangeReport(int64(i)<<32 | int64(run))
				r.RunID = fmt.Sprintf("%024x", sha256.Sum256([]byte(r.RunID)))[:24] // random-looking, as the agent's
				r.Started, r.Received = at, at.Add(time.Second)
				if _, err := s.SaveReport(ctx, node, r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	full := vacuumedSize(t, s, path)

	reportsPerNode := (full - base) / nodes
	totalPerNode := (full - empty) / nodes
	t.Logf("storage per node, %d no-change runs: reports %d bytes (%.0f bytes/run), with facts and catalog %d bytes (empty store %d bytes)",
		runs, reportsPerNode, float64(reportsPerNode)/runs, totalPerNode, empty)
	if totalPerNode >= maxBytes {
		t.Errorf("a node takes %d bytes for %d no-change runs, want under %d", totalPerNode, runs, maxBytes)
	}
}

// vacuumedSize flushes s, vacuums the file through a connection of its
// own, and returns the file's size.
func vacuumedSize(t *testing.T, s *Store, path string) int64 {
	t.Helper()
	must(t, s.Flush(context.Background()))
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`VACUUM`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
