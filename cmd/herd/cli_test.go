package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/testkit"
)

const (
	exampleSite  = "../../examples/site"
	exampleFacts = exampleSite + "/tests/facts/debian12.json"
)

// herd runs the CLI in process and returns its output and exit status.
func herd(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestCompileMatchesLibrary(t *testing.T) {
	t.Parallel()
	out, stderr, code := herd(t, "", "compile", "--site", exampleSite, "--node", "web-01", "--facts", exampleFacts, "--canonical")
	if code != 0 {
		t.Fatalf("herd compile exited %d: %s", code, stderr)
	}
	s, err := catalogs.Load(context.Background(), exampleSite, catalogs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(exampleFacts)
	f, _ := facts.FromJSON(b)
	cat, err := s.Compile("web-01", f)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := cat.Encode()
	if out != string(want) {
		t.Errorf("herd compile --canonical printed\n%s\nwant\n%s", out, want)
	}
	digest, _, _ := herd(t, "", "compile", "--site", exampleSite, "--node", "web-01", "--facts", exampleFacts, "--digest")
	if strings.TrimSpace(digest) != catalogs.Digest(want) {
		t.Errorf("--digest = %q, want %q", digest, catalogs.Digest(want))
	}
	// Facts on stdin give the same catalog.
	stdinOut, _, code := herd(t, string(b), "compile", "--site", exampleSite, "--node", "web-01", "--facts", "-", "--canonical")
	if code != 0 || stdinOut != out {
		t.Errorf("facts from stdin: exit %d, output differs from --facts FILE", code)
	}
	// The default output is the same catalog, indented.
	pretty, _, _ := herd(t, "", "compile", "--site", exampleSite, "--node", "web-01", "--facts", exampleFacts)
	var a, c any
	if err := json.Unmarshal([]byte(pretty), &a); err != nil {
		t.Fatalf("default output is not JSON: %v", err)
	}
	_ = json.Unmarshal(want, &c)
	if !jsonEqual(a, c) {
		t.Error("indented output is not the same catalog as --canonical")
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestCompileErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	dir := testkit.WriteSite(t, map[string]string{
		"nodes.toml":     "[[node]]\nroles = [\"web\"]\n",
		"roles/web.toml": "[[file]]\npath = \"/etc/motd\"\ncontnet = \"x\"\n\n[[package]]\nname = \"nginx\"\nensure = 3\n",
	})
	_, stderr, code := herd(t, "", "compile", "--site", dir, "--node", "web-01", "--facts", exampleFacts)
	if code != nodecmd.ExitError {
		t.Fatalf("exit %d, want %d", code, nodecmd.ExitError)
	}
	for _, want := range []string{
		"2 errors in site " + dir,
		dir + "/roles/web.toml:3:1: unknown attribute \"contnet\"",
		dir + "/roles/web.toml:7:1: ensure: want a string, got integer",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"compile", "--site", exampleSite},
		{"compile", "--nope"},
		{"check"},
		{"lookup", "--site", exampleSite, "--node", "web-01"},
	} {
		_, stderr, code := herd(t, "", args...)
		if code != nodecmd.ExitUsage && !(args[0] == "lookup" && code == nodecmd.ExitError) {
			t.Errorf("herd %v exited %d, want %d (stderr %q)", args, code, nodecmd.ExitUsage, stderr)
		}
		if !strings.Contains(stderr, "herd") {
			t.Errorf("herd %v printed no message", args)
		}
	}
}

func TestCheckExampleSite(t *testing.T) {
	t.Parallel()
	out, stderr, code := herd(t, "", "check", "--site", exampleSite)
	if code != 0 {
		t.Fatalf("herd check exited %d:\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out, "0 failed") || strings.Contains(out, "FAIL") {
		t.Errorf("herd check output:\n%s", out)
	}
	// The example gates and their tests run, and the example's nodes pass
	// them.
	if !strings.Contains(out, "policy gate loaded") || !regexp.MustCompile(`(?m)^policy tests: [1-9][0-9]* passed, 0 failed$`).MatchString(out) {
		t.Errorf("herd check ran no policy gate or tests:\n%s", out)
	}
}

func TestCheckReportsFailures(t *testing.T) {
	t.Parallel()
	dir := testkit.WriteSite(t, map[string]string{
		"nodes.toml":     "[[node]]\nmatch = \"web-*\"\nroles = [\"web\"]\n",
		"roles/web.toml": "[[package]]\nname = \"nginx\"\n",
		"tests/web.toml": `[[test]]
node = "web-01"
  [[test.expect]]
  resource = "package:nginx"
  attrs = { ensure = "latest" }
  [[test.expect]]
  resource = "service:nginx"
[[test]]
node = "db-01"
error = "matches no rule"
`,
	})
	out, _, code := herd(t, "", "check", "--site", dir, "--json")
	if code != nodecmd.ExitError {
		t.Fatalf("exit %d, want %d\n%s", code, nodecmd.ExitError, out)
	}
	var res struct {
		Passed, Failed int
		Tests          []struct {
			Node     string
			Passed   bool
			Failures []string
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Passed != 1 || res.Failed != 1 || len(res.Tests[0].Failures) != 2 {
		t.Fatalf("results = %+v, want web-01 failing twice and db-01 failing as expected", res)
	}
	if !strings.Contains(res.Tests[0].Failures[0], filepath.Join(dir, "tests/web.toml")+":3:") {
		t.Errorf("failure %q does not name tests/web.toml:3", res.Tests[0].Failures[0])
	}
}

func TestLookupExplain(t *testing.T) {
	t.Parallel()
	out, stderr, code := herd(t, "", "lookup", "workers", "--site", exampleSite, "--node", "web-01", "--facts", exampleFacts, "--explain")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"→  nodes/{node}", "data/nodes/web-01.toml:2:1", "workers = 8"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = herd(t, "", "lookup", "workers", "--site", exampleSite, "--node", "web-02", "--facts", exampleFacts)
	if code != 0 || strings.TrimSpace(out) != "4" {
		t.Errorf("lookup workers for web-02 = %q (exit %d), want 4 from nodes.toml", out, code)
	}
	_, _, code = herd(t, "", "lookup", "nope", "--site", exampleSite, "--node", "web-02", "--facts", exampleFacts)
	if code != nodecmd.ExitError {
		t.Errorf("lookup of a missing key exited %d, want %d", code, nodecmd.ExitError)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, code := herd(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "herd ") {
		t.Errorf("herd version = %q, exit %d", out, code)
	}
}

// TestCheckTestFailureCarriesTheSiteDir: a compile error that depends on
// the node (a notify of a resource the node's catalog lacks) reaches
// herd check's failing test with the site directory in front, like
// every other diagnostic, each at its own line.
func TestCheckTestFailureCarriesTheSiteDir(t *testing.T) {
	t.Parallel()
	dir := testkit.WriteSite(t, map[string]string{
		"nodes.toml":     "[[node]]\nroles = [\"web\"]\n",
		"roles/web.toml": "[[file]]\npath = \"/etc/motd\"\ncontent = \"x\"\nnotify = [\"service:nope\"]\n",
		"tests/web.toml": "[[test]]\nnode = \"web-01\"\n",
	})
	out, _, code := herd(t, "", "check", "--site", dir)
	if code != nodecmd.ExitError {
		t.Fatalf("exit %d, want %d\n%s", code, nodecmd.ExitError, out)
	}
	for _, want := range []string{
		"     " + dir + "/tests/web.toml:1:3: test \"web-01\": compile of web-01 failed:\n",
		"     " + dir + "/roles/web.toml:4:11: notify: no resource service:nope in the catalog of node web-01\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("herd check lacks %q:\n%s", want, out)
		}
	}
}
