package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/testkit"
)

// branchRepo makes a site repository with the branches production
// (checked out) and staging, whose greeting differs; web-01's /etc/motd
// names its environment and the greeting. It returns the site and
// staging's commit.
func branchRepo(t *testing.T) (site, staging string) {
	t.Helper()
	testkit.NeedTools(t, "git")
	site = t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		return testkit.Git(t, site, args...)
	}
	write := func(files map[string]string) {
		t.Helper()
		for rel, data := range files {
			p := filepath.Join(site, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	git("init", "-q", "-b", "production")
	write(map[string]string{
		// herd.toml names an environment: a branch's name wins over it.
		"herd.toml":        "environment = \"production\"\n",
		"nodes.toml":       "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml":  "[[file]]\npath = \"/etc/motd\"\ncontent = \"{{ .environment }} {{ .params.greeting }}\\n\"\n",
		"data/common.toml": "greeting = \"hello\"\n",
		"tests/t.toml":     "[[test]]\nnode = \"web-01\"\n",
	})
	git("add", ".")
	git("commit", "-q", "-m", "one")
	git("checkout", "-q", "-b", "staging")
	write(map[string]string{"data/common.toml": "greeting = \"bonjour\"\n"})
	git("commit", "-q", "-am", "staging's greeting")
	staging = git("rev-parse", "HEAD")
	git("checkout", "-q", "production")
	return site, staging
}

// TestCheckAndDiffByBranch: herd check --branch loads the branch as
// committed, as its environment; herd diff --branch compiles both sides
// as the branch's environment, from its tip, and --against compares two
// branches each as its own environment.
func TestCheckAndDiffByBranch(t *testing.T) {
	t.Parallel()
	site, staging := branchRepo(t)

	out, stderr, code := herd(t, "", "check", "--site", site, "--branch", "staging")
	if code != 0 || !strings.Contains(out, " at "+staging) || !strings.Contains(stderr, `herd.toml says environment = "production"; the branch staging is compiled as environment "staging"`) {
		t.Errorf("herd check --branch staging = %d:\n%s%s\nwant 0, the site at %s, and a note that the branch's name wins", code, out, stderr, staging)
	}
	if _, stderr, code := herd(t, "", "check", "--site", site, "--branch", "nope"); code != nodecmd.ExitError || !strings.Contains(stderr, "nope") {
		t.Errorf("herd check --branch nope = %d, %q; want %d naming the branch", code, stderr, nodecmd.ExitError)
	}

	// Promoting staging to production: the environment and the greeting
	// change.
	out, stderr, code = herd(t, "", "diff", "--site", site, "--branch", "staging", "--against", "production", "--node", "web-01")
	if code != 0 || !strings.Contains(out, "-production hello") || !strings.Contains(out, "+staging bonjour") {
		t.Errorf("herd diff --branch staging --against production = %d:\n%s%s\nwant the motd going from \"production hello\" to \"staging bonjour\"", code, out, stderr)
	}
	// Staging's tip to the work tree (production's checkout), both as
	// staging: only the greeting changes, the environment stays.
	out, stderr, code = herd(t, "", "diff", "--site", site, "--branch", "staging", "--node", "web-01")
	if code != 0 || !strings.Contains(out, "-staging bonjour") || !strings.Contains(out, "+staging hello") {
		t.Errorf("herd diff --branch staging = %d:\n%s%s\nwant the motd going from \"staging bonjour\" to \"staging hello\"", code, out, stderr)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"diff", "--site", site, "--against", "production"}, "--against needs --branch"},
		{[]string{"diff", "--site", site, "--branch", "staging", "--against", "production", "--from", "HEAD"}, "have no meaning with it"},
	} {
		if _, stderr, code := herd(t, "", tt.args...); code != nodecmd.ExitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("herd %q = %d, %q; want %d and %q", tt.args, code, stderr, nodecmd.ExitUsage, tt.want)
		}
	}
}
