package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/testkit"
)

// diffRepo makes a git repository holding a site at two commits, then
// leaves an uncommitted edit that breaks db-01's compile. It returns the
// site directory and the two commit ids.
func diffRepo(t *testing.T) (site, first, second string) {
	t.Helper()
	testkit.NeedTools(t, "git")
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		return testkit.Git(t, repo, args...)
	}
	site = filepath.Join(repo, "site")
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
	git("init", "-q", "-b", "main")
	write(map[string]string{
		"nodes.toml": `[[node]]
match = "web-*"
roles = ["web"]

[[node]]
match = "db-*"
when = "facts.mem > 1"
roles = ["db"]
`,
		"roles/web.toml": "[[package]]\nname = \"nginx\"\nensure = \"1.24\"\n\n[[file]]\npath = \"/etc/motd\"\nsource = \"motd\"\n",
		"roles/db.toml":  "[[package]]\nname = \"postgres\"\n",
		"files/motd":     "hello\n",
		"tests/t.toml": `[[test]]
node = "web-01"

[[test]]
node = "web-02"

[[test]]
node = "db-01"
facts = { mem = 2 }

[[test]]
node = "nobody"
error = "matches no rule"
`,
	})
	git("add", ".")
	git("commit", "-q", "-m", "one")
	first = git("rev-parse", "HEAD")
	// Moving the package down a line changes its source alone.
	write(map[string]string{
		"roles/web.toml": "\n[[package]]\nname = \"nginx\"\nensure = \"1.26\"\n\n[[file]]\npath = \"/etc/motd\"\nsource = \"motd\"\n",
		"files/motd":     "hello\nworld\n",
	})
	git("commit", "-q", "-am", "two")
	second = git("rev-parse", "HEAD")
	write(map[string]string{"roles/db.toml": "[[package]]\nname = \"postgres\"\nrequire = [\"package:nope\"]\n"})
	return site, first, second
}

func TestDiffCommand(t *testing.T) {
	t.Parallel()
	site, first, second := diffRepo(t)
	factsDir := t.TempDir()
	for name, f := range map[string]string{"web-03.json": `{"os": {"family": "debian"}}`, "db-02.json": `{"mem": 4}`, "README": "not facts"} {
		if err := os.WriteFile(filepath.Join(factsDir, name), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Two commits, with the test nodes and the facts directory's.
	out, stderr, code := herd(t, "", "diff", "--site", site, "--from", "HEAD~1", "--to", "HEAD", "--facts", factsDir)
	if code != 0 {
		t.Fatalf("herd diff exited %d:\n%s%s", code, out, stderr)
	}
	for _, want := range []string{
		"HEAD~1 (" + first[:12] + ") → HEAD (" + second[:12] + ")",
		"3 nodes: web-01, web-02, web-03\n  ~ file:/etc/motd\n      digest:\n        --- a/etc/motd\n",
		"        +world\n",
		"  ~ package:nginx  ensure: 1.24 → 1.26\n",
		"2 nodes unchanged: db-01, db-02",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("herd diff output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "nobody") || strings.Contains(out, "roles/web.toml") {
		t.Errorf("herd diff shows a test expecting an error, or a source move:\n%s", out)
	}

	// HEAD → the work tree: db-01's compile breaks there, and is listed.
	out, stderr, code = herd(t, "", "diff", "--site", site)
	if code != 0 {
		t.Fatalf("herd diff exited %d:\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out, "1 node failed to compile:\n  db-01: at "+second[:12]+"+dirty.") || !strings.Contains(out, `package:nope`) {
		t.Errorf("herd diff does not list db-01's failure at the work tree:\n%s", out)
	}
	// The failure opens from where herd ran, like every diagnostic.
	if !strings.Contains(out, ": "+site+"/roles/db.toml:3:") {
		t.Errorf("herd diff's compile failure does not name %s/roles/db.toml:3:\n%s", site, out)
	}
	if _, _, code := herd(t, "", "diff", "--site", site, "--exit-code"); code != nodecmd.ExitError {
		t.Errorf("herd diff --exit-code with a failing node exited %d, want %d", code, nodecmd.ExitError)
	}

	// No change: --exit-code gives 0.
	out, _, code = herd(t, "", "diff", "--site", site, "--from", "HEAD", "--to", "main", "--exit-code", "--all")
	if code != 0 || !strings.Contains(out, "no catalog changes (3 nodes compiled)") {
		t.Errorf("herd diff HEAD..main --exit-code = %d:\n%s", code, out)
	}
	// A change: --exit-code gives 1.
	if _, _, code := herd(t, "", "diff", "--site", site, "--from", first, "--to", second, "--node", "web-02", "--exit-code"); code != nodecmd.ExitError {
		t.Errorf("herd diff --exit-code with a change exited %d, want %d", code, nodecmd.ExitError)
	}

	// JSON: every node, by name.
	out, stderr, code = herd(t, "", "diff", "--site", site, "--from", "HEAD~1", "--to", "HEAD", "--json", "--node", "web-01")
	if code != 0 {
		t.Fatalf("herd diff --json exited %d:\n%s%s", code, out, stderr)
	}
	var doc struct {
		From, To string
		Nodes    map[string]catalogs.Change
		Failed   map[string]string
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("herd diff --json: %v:\n%s", err, out)
	}
	ch, ok := doc.Nodes["web-01"]
	if doc.From != first || doc.To != second || len(doc.Nodes) != 1 || !ok || len(ch.Changed) != 2 || ch.Changed[1].ID != "package:nginx" || ch.Changed[1].Attrs[0].To != "1.26" {
		t.Errorf("herd diff --json = %+v, want web-01 alone with its two changes from %s to %s", doc, first, second)
	}
}

func TestDiffCommandUsage(t *testing.T) {
	t.Parallel()
	site, _, _ := diffRepo(t)
	badFacts := t.TempDir()
	if err := os.Symlink("/etc/hostname", filepath.Join(badFacts, "web-09.json")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"diff"}, nodecmd.ExitUsage, "--site is required"},
		{[]string{"diff", "--site", site, "--node", "web-01", "--all"}, nodecmd.ExitUsage, "exclude each other"},
		{[]string{"diff", "--site", site, "--node", "web-99"}, nodecmd.ExitUsage, "--node web-99: no site test and no --facts file names it"},
		{[]string{"diff", "--site", site, "--node", "../x"}, nodecmd.ExitUsage, "--node:"},
		{[]string{"diff", "--site", site, "--from", "nope"}, nodecmd.ExitError, `revision "nope": no such commit`},
		{[]string{"diff", "--site", site, "--from", "--upload-pack=x"}, nodecmd.ExitError, "want a commit, branch or tag"},
		{[]string{"diff", "--site", site, "--facts", badFacts}, nodecmd.ExitError, "web-09.json: not a regular file"},
		{[]string{"diff", "--site", t.TempDir()}, nodecmd.ExitError, "not in a git work tree"},
	}
	for _, tt := range tests {
		_, stderr, code := herd(t, "", tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("herd %v = %d, %q; want %d and %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}

	// A side that does not load is the site's error, with its positions,
	// whichever side it is.
	if err := os.WriteFile(filepath.Join(site, "herd.toml"), []byte("[[rollout.stage]]\nname = \"c\"\npercent = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := herd(t, "", "diff", "--site", site)
	if code != nodecmd.ExitError || !strings.Contains(stderr, site+"/herd.toml:3:1: percent 0") {
		t.Errorf("herd diff with a broken work tree = %d, %q; want %d and the diagnostic", code, stderr, nodecmd.ExitError)
	}
	_, stderr, code = herd(t, "", "diff", "--site", site, "--from", "HEAD", "--to", "HEAD~1")
	if code != 0 {
		t.Errorf("herd diff of two good commits beside a broken work tree = %d, %q; want 0", code, stderr)
	}
	testkit.Git(t, site, "add", ".")
	testkit.Git(t, site, "commit", "-q", "-m", "broken")
	_, stderr, code = herd(t, "", "diff", "--site", site, "--from", "HEAD", "--to", "HEAD~1")
	if code != nodecmd.ExitError || !strings.Contains(stderr, "at HEAD: 1 error in site "+site+":\n"+site+"/herd.toml:3:1: percent 0") {
		t.Errorf("herd diff from a broken commit = %d, %q; want %d and the diagnostic at HEAD", code, stderr, nodecmd.ExitError)
	}
}
