package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSiteDaemon: the masterless daemon applies the site at once, again
// within moments of an edit of the site (its interval is an hour), logs a
// site that fails to compile without touching the host, and picks up the
// fix.
func TestSiteDaemon(t *testing.T) {
	t.Parallel()
	site := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(site, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	role := func(motd string) string {
		return "[[file]]\npath = \"/motd\"\ncontent = \"" + motd + "\\n\"\n"
	}
	write("nodes.toml", "[[node]]\nroles = [\"r\"]\n")
	write("roles/r.toml", role("first"))
	root := t.TempDir()
	type ran struct {
		r   *Report
		err error
	}
	runs := make(chan ran, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	hup := make(chan os.Signal, 1)
	go func() {
		done <- RunSiteDaemon(ctx, SiteDaemonOptions{
			ApplyOptions: ApplyOptions{Site: site, Root: root, Node: "n1", Log: testLog(t)},
			Interval:     time.Hour, Debounce: 20 * time.Millisecond, Hangup: hup,
			afterRun: func(r *Report, err error) { runs <- ran{r, err} },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunSiteDaemon = %v, want nil after cancel", err)
		}
	})
	next := func(what string) ran {
		t.Helper()
		select {
		case r := <-runs:
			return r
		case <-time.After(15 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
			return ran{}
		}
	}
	motd := func() string {
		b, _ := os.ReadFile(filepath.Join(root, "motd"))
		return string(b)
	}
	if r := next("the first run"); r.err != nil || motd() != "first\n" {
		t.Fatalf("first run: err %v, motd %q", r.err, motd())
	}

	// SIGHUP runs now: a hand edit is put back long before the hour.
	if err := os.WriteFile(filepath.Join(root, "motd"), []byte("by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	if r := next("a run on SIGHUP"); r.err != nil || motd() != "first\n" {
		t.Fatalf("run on SIGHUP: err %v, motd %q", r.err, motd())
	}

	write("roles/r.toml", role("second"))
	if r := next("a run after the site changed"); r.err != nil || motd() != "second\n" {
		t.Fatalf("run after the edit: err %v, motd %q", r.err, motd())
	}

	write("roles/r.toml", "[[file]]\npath = \n")
	r := next("a run of a broken site")
	if r.err == nil || motd() != "second\n" {
		t.Fatalf("run of a broken site: err %v, motd %q; want an error and the host left alone", r.err, motd())
	}

	// A new directory is watched too.
	write("roles/more/extra.toml", "")
	write("roles/r.toml", role("third"))
	for {
		r := next("a run after the fix")
		if r.err == nil && strings.Contains(motd(), "third") {
			break
		}
	}
	st, err := OpenState(DefaultStateDir(root).String())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if hist, err := st.Runs(context.Background(), 10); err != nil || len(hist) < 3 {
		t.Errorf("history = %d runs, %v; want every good run recorded", len(hist), err)
	}
}
