package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herdcm/herd/testkit"
)

func TestVersionChange(t *testing.T) {
	t.Parallel()
	root := "/srv/site"
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/srv/site/roles/web.toml", true},
		{"/srv/site/nodes.toml", true},
		{"/srv/site/files/a/b.txt", true},
		{"/srv/site/.git/HEAD", true},
		{"/srv/site/.git/packed-refs", true},
		{"/srv/site/.git/refs/heads/main", true},
		{"/srv/site/.git/refs/heads/feature/x", true},
		{"/srv/site/.git/refs/heads/main.lock", false},
		{"/srv/site/.git/index", false},
		{"/srv/site/.git/index.lock", false},
		{"/srv/site/.git/HEAD.lock", false},
		{"/srv/site/.git/ORIG_HEAD", false},
		{"/srv/site/.git/logs/HEAD", false},
		{"/srv/site/.git/objects/ab/cdef", false},
		{"/srv/site/.hidden/x.toml", false},
		{"/srv/other/roles/web.toml", false},
	} {
		if got := versionChange(root, tc.path); got != tc.want {
			t.Errorf("versionChange(%q, %q) = %v, want %v", root, tc.path, got, tc.want)
		}
	}
}

// TestReloadOfTheSameVersionCompilesNothing: a reload that finds the
// served version does not recompile the fleet.
func TestReloadOfTheSameVersionCompilesNothing(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	s.facts.put("a-01", cachedFacts{digest: "sha256:x"})
	ctx := context.Background()
	if err := s.reload(ctx); err != nil {
		t.Fatal(err)
	}
	before := metricValue(t, s.metrics.compiles)
	for range 3 {
		if err := s.reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if after := metricValue(t, s.metrics.compiles); after != before {
		t.Errorf("compiles after reloading the same version = %v, want %v", after, before)
	}
}

// TestGitBookkeepingDoesNotReload: in a git site, index.lock coming and
// going (what the server's own `git status` did) loads nothing, and one
// commit is one reload.
func TestGitBookkeepingDoesNotReload(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "git")
	site := t.TempDir()
	writeFiles(t, site, testSite)
	gitIn := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	git := func(args ...string) { t.Helper(); gitIn(site, args...) }
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "one")
	// Commits are made in a clone and fast-forwarded into the site by
	// one git process: written in the site and committed by two, a loaded
	// machine can put a debounce window between the file and the commit,
	// which is two loads, rightly.
	work := filepath.Join(t.TempDir(), "work")
	gitIn(filepath.Dir(work), "clone", "-q", site, work)
	opts := testOptions(t, site, t.TempDir())
	opts.Debounce = 200 * time.Millisecond
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	loads := func() float64 { return metricValue(t, s.metrics.siteLoads.WithLabelValues("ok")) }
	commit := func(msg string) string {
		t.Helper()
		writeFiles(t, work, map[string]string{"roles/r.toml": strings.Replace(testSite["roles/r.toml"], "hello", msg, 1)})
		gitIn(work, "commit", "-q", "-am", msg)
		git("fetch", "-q", work, "main")
		git("merge", "-q", "--ff-only", "FETCH_HEAD")
		out, err := exec.Command("git", "-C", site, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSpace(string(out))
		deadline := time.Now().Add(20 * time.Second)
		for s.defaultSite().version != want {
			if time.Now().After(deadline) {
				t.Fatalf("the commit %s was never served (serving %s)", want, s.defaultSite().version)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return want
	}
	commit("two")
	start := loads()
	// git's bookkeeping: a lock file made and removed, the index rewritten.
	lock := filepath.Join(site, ".git", "index.lock")
	for range 5 {
		if err := os.WriteFile(lock, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(lock); err != nil {
			t.Fatal(err)
		}
	}
	git("update-index", "--really-refresh")
	// Nothing can be awaited for "no reload happened": give the watcher
	// a few debounce windows to misbehave in.
	time.Sleep(5 * opts.Debounce)
	if got := loads() - start; got != 0 {
		t.Errorf("site loads after git bookkeeping alone = %v, want 0", got)
	}
	commit("three")
	if got := loads() - start; got != 1 {
		t.Errorf("site loads for one commit = %v, want 1", got)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", c.Desc())
	return 0
}
