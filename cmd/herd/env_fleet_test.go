package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestEnvironmentCommands drives a server serving two branches with the
// CLI: herd rollout status shows each environment's newest rollout,
// --environment picks one, herd nodes selects by environment, and a
// branch whose newest commit does not load makes herd status say so and
// exit 1 while its last version stays served.
func TestEnvironmentCommands(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "git")
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":       "[[node]]\nroles = [\"base\"]\n\n[[node]]\nmatch = [\"node-1\"]\nenvironment = \"staging\"\nroles = []\n",
		"roles/base.toml":  "[[file]]\npath = \"/etc/motd\"\ncontent = \"{{ .node }} {{ .environment }}\\n\"\n",
		"data/common.toml": "greeting = \"v1\"\n",
	})
	stagingTree := filepath.Join(t.TempDir(), "staging")
	git := func(dir string, args ...string) {
		t.Helper()
		testkit.Git(t, dir, args...)
	}
	git(site, "init", "-q", "-b", "production")
	git(site, "add", ".")
	git(site, "commit", "-q", "-m", "one")
	git(site, "worktree", "add", "-q", "-b", "staging", stagingTree)

	f := fleet.NewFleetWith(t, site, 2, fleet.Options{Environments: []string{"production", "staging"}})
	f.AwaitConverged(60*time.Second, nil)
	conn := []string{"--server", f.Addr(), "--admin-dir", f.AdminDir("ops")}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return herd(t, "", append(args, conn...)...)
	}

	out, stderr, code := run("rollout", "status")
	if code != 0 || !strings.Contains(out, "environment production\n") || !strings.Contains(out, "environment staging\n") {
		t.Errorf("herd rollout status: exit %d, %s\n%s\nwant each environment's rollout", code, stderr, out)
	}
	out, _, code = run("rollout", "status", "--environment", "staging", "--json")
	var js struct {
		Rollout struct {
			Environment string `json:"environment"`
		} `json:"rollout"`
		Nodes []struct {
			Node string `json:"node"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || code != 0 || js.Rollout.Environment != "staging" {
		t.Errorf("herd rollout status --environment staging --json: exit %d, %v:\n%s", code, err, out)
	}
	if _, stderr, code := run("rollout", "pause", "--environment", "qa"); code == 0 || !strings.Contains(stderr, `environment "qa" is not served (served: production, staging)`) {
		t.Errorf("herd rollout pause --environment qa: exit %d, %q; want an error naming what is served", code, stderr)
	}
	out, _, code = run("nodes", "--where", `environment == "staging"`)
	if code != 0 || !strings.Contains(out, "node-1") || strings.Contains(out, "node-2") {
		t.Errorf("herd nodes --where environment == staging: exit %d:\n%s", code, out)
	}

	// A broken commit on staging: the last version stays served, and
	// herd status says which environment does not load.
	served := f.Approved()["node-1"]
	if err := os.WriteFile(filepath.Join(stagingTree, "nodes.toml"), []byte("[[node]]\nroles = [\"nope\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(stagingTree, "commit", "-q", "-am", "broken")
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := f.Admin.SiteStatus(context.Background(), &herdv1.SiteStatusRequest{})
		if err == nil && len(st.Environments) == 2 && st.Environments[1].LoadError != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("staging's broken commit never showed in the site status: %v, %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, stderr, code = run("status")
	if code != 1 || !strings.Contains(stderr, "the newest version of staging does not load") ||
		!strings.Contains(out, "environments:") || !strings.Contains(out, `does not load: `) {
		t.Errorf("herd status with staging broken: exit %d, %q:\n%s", code, stderr, out)
	}
	if got := f.Approved()["node-1"]; got != served {
		t.Errorf("node-1's catalog changed to %s when staging's newest commit failed to load (was %s)", got, served)
	}
}
