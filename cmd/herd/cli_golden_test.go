package main

// The golden CLI tests run the built herd binary, as an operator does:
// every command's --help, and usage errors, not-found answers, an
// unreachable server and successes against a real server. Outputs that
// vary from run to run (addresses, temporary paths, times, the version)
// are normalised before they are compared with testdata/cli; -update
// rewrites the files (the lead regenerates them at a merge that adds a
// command or a flag: go test ./cmd/herd -run 'TestCLI' -update).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/testkit"
)

var (
	buildOnce sync.Once
	binDir    string
	herdBin   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	// The PostgreSQL cluster testkit.Postgres may have started.
	testkit.StopPostgres()
	os.Exit(code)
}

// herdBinary builds herd once per test run, into a temporary directory
// TestMain removes, and returns its path.
func herdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "herd-cli-test-")
		if buildErr != nil {
			return
		}
		herdBin = filepath.Join(binDir, "herd")
		out, err := exec.Command("go", "build", "-o", herdBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/herd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return herdBin
}

// binEnv is the environment the binary runs in: this one without any
// HERD_ variable, with HOME at home, so that defaults that come from
// them are the same on every machine.
func binEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HERD_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "NO_COLOR=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "NO_COLOR=1")
}

// runBin runs the built binary with args and returns what it printed
// and its exit status.
func runBin(t *testing.T, home string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(herdBinary(t), args...)
	cmd.Env = binEnv(home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running herd %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// normaliser rewrites what varies between runs into fixed words.
type normaliser struct {
	literal []string // old, new pairs, replaced first (longest paths first)
}

var varying = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`127\.0\.0\.1:[0-9]+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?)?`), "DATE"},
	{regexp.MustCompile(`("[a-zA-Z]*UnixMs"): "[0-9]+"`), `$1: "MS"`},
	{regexp.MustCompile(`\b[0-9]+(\.[0-9]+)?(ns|µs|ms|s|m|h)\b`), "DURATION"},
	{regexp.MustCompile(`sha256:[0-9a-f]{12,64}`), "sha256:DIGEST"},
}

func (n normaliser) apply(s string) string {
	for i := 0; i+1 < len(n.literal); i += 2 {
		if n.literal[i] != "" {
			s = strings.ReplaceAll(s, n.literal[i], n.literal[i+1])
		}
	}
	for _, v := range varying {
		s = v.re.ReplaceAllString(s, v.with)
	}
	return s
}

// goldenCLI compares one run's exit status and output with
// testdata/cli/NAME.txt, or writes it there with -update.
func goldenCLI(t *testing.T, name string, args []string, stdout, stderr string, code int) {
	t.Helper()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if strings.ContainsAny(a, " \"'$|&;<>*?") {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	got := fmt.Sprintf("$ herd %s\nexit %d\n-- stdout --\n%s-- stderr --\n%s", strings.Join(quoted, " "), code, stdout, stderr)
	path := filepath.Join("testdata", "cli", name+".txt")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/herd -run TestCLI -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("herd %s differs from %s (-update rewrites it):\n--- want\n%s\n--- got\n%s", strings.Join(args, " "), path, want, got)
	}
}

// commandPaths lists every command of root's tree but root, as the
// words that reach it ("ca list"), hidden ones left out, and cobra's own
// help and completion unless withCobra.
func commandPaths(root *cobra.Command, withCobra ...bool) [][]string {
	cobraToo := len(withCobra) > 0 && withCobra[0]
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			if sub.Hidden || !cobraToo && (sub.Name() == "help" || sub.Name() == "completion") {
				continue
			}
			p := append(append([]string(nil), path...), sub.Name())
			out = append(out, p)
			walk(sub, p)
		}
	}
	walk(root, nil)
	return out
}

// TestCLIHelp: every command's --help, as the binary prints it. A
// golden file without its command fails too: a command was removed or
// renamed and its help left behind.
func TestCLIHelp(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	norm := normaliser{literal: []string{home, "$HOME"}}
	paths := append([][]string{nil}, commandPaths(newRootCmd())...)
	dir := filepath.Join("testdata", "cli", "help")
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	for _, p := range paths {
		name := strings.Join(append([]string{"herd"}, p...), "_")
		want[name+".txt"] = true
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := append(append([]string(nil), p...), "--help")
			stdout, stderr, code := runBin(t, home, args...)
			if code != 0 {
				t.Errorf("herd %s exited %d", strings.Join(args, " "), code)
			}
			goldenCLI(t, filepath.Join("help", name), args, norm.apply(stdout), norm.apply(stderr), code)
		})
	}
	if *update {
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
	for _, f := range files {
		if !want[filepath.Base(f)] {
			t.Errorf("%s is the help of no command: remove it, or run with -update", f)
		}
	}
}

// TestCLIGolden runs the binary against a real server (TLS on
// 127.0.0.1, sqlite in a temporary directory) with one node that has
// checked in and reported, and against an address nothing listens on.
func TestCLIGolden(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"hi\\n\"\n",
	})
	s, dir := startServer(t, site)
	web := checkedIn(t, s, "web-01", map[string]any{"os": map[string]any{"family": "debian"}})
	if _, err := web.SendReport(context.Background(), &herdv1.SendReportRequest{Report: &herdv1.Report{
		RunId: "run-1", Version: "v1", Summary: &herdv1.Summary{Resources: 1, Changed: 1},
		Events: []*herdv1.Event{{Id: "file:/motd", Type: "file", Status: "changed", Changes: []*herdv1.Change{{Attr: "content", Action: "update", From: "old", To: "hi"}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	adminDir := filepath.Join(t.TempDir(), "admin")
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: %s", stderr)
	}
	// An address nothing listens on: a port the kernel gave and took back.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()

	version, _, _ := runBin(t, home, "version")
	norm := normaliser{literal: []string{
		adminDir, "ADMIN_DIR", site, "SITE", home, "$HOME",
		strings.TrimSpace(version), "herd VERSION GO OS/ARCH",
		// The built binary's version (its build info is not the test's).
		`"version": "` + strings.Fields(version + " ? ?")[1] + `"`, `"version": "VERSION"`,
		`"go": "` + runtime.Version() + `"`, `"go": "GO"`,
		`"os": "` + runtime.GOOS + `"`, `"os": "OS"`,
		`"arch": "` + runtime.GOARCH + `"`, `"arch": "ARCH"`,
	}}
	up := []string{"--server", s.Addr, "--admin-dir", adminDir}
	gone := []string{"--server", down, "--admin-dir", adminDir}
	with := func(conn []string, args ...string) []string { return append(args, conn...) }
	tests := []struct {
		name string
		args []string
		code int
	}{
		// Usage errors: exit 64 and a pointer to --help.
		{"usage-unknown-command", []string{"nodse"}, 64},
		{"usage-extra-arg", []string{"version", "extra"}, 64},
		{"usage-missing-arg", []string{"node", "activate"}, 64},
		{"usage-group-alone", []string{"node"}, 64},
		{"usage-unknown-subcommand", []string{"ca", "lst"}, 64},
		{"usage-unknown-flag", []string{"nodes", "--nope"}, 64},
		{"usage-too-many", []string{"reports", "a", "b", "c"}, 64},
		// Not found: the server's sentence, naming what it did not find.
		{"notfound-facts", with(up, "facts", "--node", "nosuch"), 1},
		{"notfound-reports", with(up, "reports", "nosuch"), 1},
		{"notfound-run", with(up, "reports", "web-01", "run-9"), 1},
		{"notfound-node", with(up, "node", "deactivate", "nosuch"), 1},
		{"notfound-rollout", with(up, "rollout", "status", "99"), 1},
		// The server cannot be reached: which one was tried, and how to
		// choose another.
		{"unreachable-nodes", with(gone, "nodes"), 1},
		{"unreachable-reports", with(gone, "reports", "web-01"), 1},
		{"unreachable-facts", with(gone, "facts", "--node", "web-01"), 1},
		{"unreachable-ca-list", with(gone, "ca", "list"), 1},
		{"unreachable-status", with(gone, "status"), 1},
		// Successes.
		{"ok-version", []string{"version"}, 0},
		{"ok-version-json", []string{"version", "--json"}, 0},
		{"ok-facts", with(up, "facts", "--node", "web-01", "os.family"), 0},
		{"ok-reports", with(up, "reports", "web-01"), 0},
		{"ok-nodes-where", with(up, "nodes", "--where", `name == "web-01"`, "--json"), 0},
		{"ok-lookup", []string{"lookup", "workers", "--site", exampleSite, "--node", "web-02", "--facts", exampleFacts}, 0},
		{"ok-compile-digest", []string{"compile", "--site", exampleSite, "--node", "web-01", "--facts", exampleFacts, "--digest"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runBin(t, home, tt.args...)
			if code != tt.code {
				t.Errorf("herd %s exited %d, want %d\n%s", strings.Join(tt.args, " "), code, tt.code, stderr)
			}
			if strings.Contains(stderr, "rpc error") || strings.Contains(stderr, "desc =") {
				t.Errorf("herd %s printed grpc's raw error:\n%s", strings.Join(tt.args, " "), stderr)
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = norm.apply(a)
			}
			goldenCLI(t, tt.name, args, norm.apply(stdout), norm.apply(stderr), code)
		})
	}

	// herd nodes --help's jq example selects the nodes with a compile
	// error: --json leaves empty fields out, so a test for != "" would
	// select every healthy node too.
	t.Run("nodes-jq-example", func(t *testing.T) {
		t.Parallel()
		testkit.NeedTools(t, "jq")
		var filter string
		for _, line := range strings.Split(newNodesCmd().Example, "\n") {
			if _, f, ok := strings.Cut(line, "| jq "); ok {
				filter = f
			}
		}
		words := strings.Fields(filter)
		if len(words) < 2 || !strings.HasPrefix(words[len(words)-1], "'") && !strings.HasSuffix(filter, "'") {
			t.Fatalf("herd nodes --help has no jq example to run: %q", filter)
		}
		// -r and a quoted program, as a shell would hand them over.
		program := filter[strings.Index(filter, "'")+1 : strings.LastIndex(filter, "'")]
		opts := strings.Fields(filter[:strings.Index(filter, "'")])
		stdout, stderr, code := runBin(t, home, with(up, "nodes", "--json")...)
		if code != 0 {
			t.Fatalf("herd nodes --json exited %d: %s", code, stderr)
		}
		jq := exec.Command("jq", append(opts, program)...)
		jq.Stdin = strings.NewReader(stdout)
		out, err := jq.CombinedOutput()
		if err != nil {
			t.Fatalf("jq %s: %v\n%s", filter, err, out)
		}
		if len(bytes.TrimSpace(out)) != 0 {
			t.Errorf("herd nodes --help's example %q selects healthy nodes:\n%s\nfrom\n%s", filter, out, stdout)
		}
	})
}

// TestEveryServerCommandNamesTheServer runs every command that asks the
// Admin service (those with --admin-dir) against an address nothing
// listens on, and wants exit 1 and the sentence that names the server
// and --server / $HERD_SERVER, never grpc's raw error. A command added
// later is covered by the walk.
func TestEveryServerCommandNamesTheServer(t *testing.T) {
	t.Parallel()
	// A real server only to make real admin credentials with.
	_, dir := startServer(t, testkit.WriteSite(t, map[string]string{"nodes.toml": "[[node]]\nroles = []\n"}))
	adminDir := filepath.Join(t.TempDir(), "admin")
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: %s", stderr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	// Flags some commands need before they call the server at all.
	needs := map[string][]string{
		"node purge": {"--yes"},
		"ca sign":    {"--fingerprint", "sha256:" + strings.Repeat("0", 64)},
		"facts":      {"--node", "web-01"},
	}
	// Commands with --admin-dir that never ask the server.
	offline := map[string]string{
		"ca fingerprint": "reads --admin-dir's ca.crt",
		"ca admin":       "asks the server's local socket under --dir, or its store",
	}
	home := t.TempDir()
	root := newRootCmd()
	var n int
	for _, p := range commandPaths(root) {
		c, _, _ := root.Find(p)
		if !c.Runnable() || c.Flag("admin-dir") == nil {
			continue
		}
		if why, ok := offline[strings.Join(p, " ")]; ok {
			t.Logf("herd %s: not asked: %s", strings.Join(p, " "), why)
			continue
		}
		args := slices.Clone(p)
		// As few arguments as its Args takes.
		for _, extra := range [][]string{nil, {"web-01"}, {"web-01", "run-1"}} {
			if c.Args == nil || c.Args(c, extra) == nil {
				args = append(args, extra...)
				break
			}
		}
		args = append(args, needs[strings.Join(p, " ")]...)
		args = append(args, "--server", down, "--admin-dir", adminDir)
		n++
		t.Run(strings.Join(p, "_"), func(t *testing.T) {
			t.Parallel()
			_, stderr, code := runBin(t, home, args...)
			want := "cannot reach the server at " + down + " ("
			if code != nodecmd.ExitError || !strings.Contains(stderr, want) || !strings.Contains(stderr, "--server ADDR or $HERD_SERVER") || strings.Contains(stderr, "rpc error") {
				t.Errorf("herd %s exited %d, want %d saying %q and how to choose another server:\n%s", strings.Join(args, " "), code, nodecmd.ExitError, want, stderr)
			}
		})
	}
	if n < 15 {
		t.Errorf("only %d commands ask the server: the walk lost them", n)
	}
}
