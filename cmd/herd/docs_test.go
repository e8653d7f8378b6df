package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/cmd/nodecmd"
)

// Doc blocks: every herd and herd-agent command line in a fenced block of
// README.md and docs/*.md must parse against the binaries' command trees
// (the command exists, every flag exists, the argument count fits), so
// that a doc that drifts from the binary fails CI. Lines in a block are
// read as a shell would: continuation lines joined, comments cut, a
// pipeline or a list split into its commands; [OPTIONAL] brackets are
// unwrapped (their flags must exist too) and an ellipsis (...) dropped.
//
// A block that is not a command line (a diagram, program output that
// starts with "herd") is marked on the line before its fence with
//
//	<!-- herd-doc: not checked: REASON -->
//
// The reason is required, and every marked block is listed in the test's
// output, so that nothing is skipped silently.

// docMarker marks a fenced block the test does not check.
var docMarker = regexp.MustCompile(`^<!--\s*herd-doc:\s*not checked:\s*(.*?)\s*-->$`)

// docCommand finds herd or herd-agent at the start of a command.
var docCommand = regexp.MustCompile(`^(?:\$\s+)?(?:sudo\s+)?(?:\./)?(herd|herd-agent)$`)

// docLine is one command line found in a doc.
type docLine struct {
	pos  string   // file:line
	bin  string   // herd or herd-agent
	args []string // the words after the binary
}

// docBlock is a fenced block a marker left out.
type docBlock struct{ pos, reason string }

// docLines reads the fenced blocks of the markdown file at path.
func docLines(t *testing.T, path string) (lines []docLine, skipped []docBlock) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var (
		n         int
		in, skip  bool
		prev, acc string
		accStart  int
	)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if !in {
				in = true
				skip = false
				if m := docMarker.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
					skip = true
					if m[1] == "" {
						t.Errorf("%s:%d: a herd-doc marker without a reason", path, n-1)
					}
					skipped = append(skipped, docBlock{fmt.Sprintf("%s:%d", path, n), m[1]})
				}
			} else {
				in = false
			}
			prev = line
			continue
		}
		prev = line
		if !in || skip {
			continue
		}
		if acc == "" {
			accStart = n
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(line, " "), `\`); ok {
			acc += s + " "
			continue
		}
		acc += line
		for _, cmd := range shellCommands(acc) {
			if len(cmd) == 0 {
				continue
			}
			m := docCommand.FindStringSubmatch(cmd[0])
			if m == nil && len(cmd) > 1 && cmd[0] == "$" {
				cmd = cmd[1:]
				m = docCommand.FindStringSubmatch(cmd[0])
			}
			if m == nil {
				continue
			}
			lines = append(lines, docLine{pos: fmt.Sprintf("%s:%d", path, accStart), bin: m[1], args: cmd[1:]})
		}
		acc = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines, skipped
}

// optionalMark starts a word that was inside [OPTIONAL] brackets.
const optionalMark = "\x00"

// parseWords is a command's words for parsing: optional ones too, so
// that their flags are checked.
func parseWords(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = strings.TrimPrefix(w, optionalMark)
	}
	return out
}

// runWords is a command's words for running: optional ones (often
// placeholders: [ID], [--node N]) left out.
func runWords(ws []string) []string {
	var out []string
	for _, w := range ws {
		if !strings.HasPrefix(w, optionalMark) {
			out = append(out, w)
		}
	}
	return out
}

// shellCommands splits a shell line into its simple commands' words:
// quotes honoured, a comment cut, split at | ; && ||, redirections and
// their targets dropped, "..." and "…" dropped, and the words inside
// [OPTIONAL] brackets unwrapped and marked with optionalMark.
func shellCommands(line string) [][]string {
	var (
		cmds  [][]string
		words []string
		word  strings.Builder
		inW   bool
		quote rune
	)
	flush := func() {
		if inW {
			words = append(words, word.String())
		}
		word.Reset()
		inW = false
	}
	endCmd := func() {
		flush()
		cmds = append(cmds, words)
		words = nil
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				word.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote, inW = c, true
		case c == '#' && !inW:
			i = len(rs)
		case c == '|' || c == ';' || c == '&':
			endCmd()
			if i+1 < len(rs) && (rs[i+1] == '|' || rs[i+1] == '&') {
				i++
			}
		case c == ' ' || c == '\t':
			flush()
		default:
			word.WriteRune(c)
			inW = true
		}
	}
	endCmd()
	for i, ws := range cmds {
		var out []string
		optional := false
		for j := 0; j < len(ws); j++ {
			w := ws[j]
			switch {
			case w == ">" || w == "<" || w == "2>" || w == ">>":
				j++ // and its target
				continue
			case strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>"):
				continue
			case w == "..." || w == "…":
				continue
			}
			if strings.HasPrefix(w, "[") {
				optional = true
			}
			opt := optional
			if strings.HasSuffix(w, "]") {
				optional = false
			}
			w = strings.TrimSuffix(strings.TrimPrefix(w, "["), "]")
			if w == "" {
				continue
			}
			if opt {
				w = optionalMark + w
			}
			out = append(out, w)
		}
		cmds[i] = out
	}
	return cmds
}

// checkDocLine parses args against a fresh tree of bin's commands: the
// command must exist, its flags parse, and its Args accept what is left.
func checkDocLine(bin string, args []string) error {
	root := newRootCmd()
	if bin == "herd-agent" {
		root = nodecmd.NewRoot("herd-agent", "", "")
	}
	c, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	// Whether it runs anything of its own, before UsageArgs makes a
	// group "run" into a usage error.
	runnable := c.Runnable()
	nodecmd.UsageArgs(root)
	if err := c.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %w", c.CommandPath(), err)
	}
	if help, _ := c.Flags().GetBool("help"); help {
		return nil
	}
	if err := c.ValidateArgs(c.Flags().Args()); err != nil {
		return fmt.Errorf("%s: %w", c.CommandPath(), err)
	}
	if !runnable {
		return fmt.Errorf("%s runs nothing: it needs a subcommand", c.CommandPath())
	}
	return nil
}

// TestDocCommandLines checks every command line of README.md and
// docs/*.md against the command trees.
func TestDocCommandLines(t *testing.T) {
	t.Parallel()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append([]string{"../../README.md"}, docs...)
	var checked int
	for _, path := range docs {
		lines, skipped := docLines(t, path)
		for _, b := range skipped {
			t.Logf("not checked: %s: %s", b.pos, b.reason)
		}
		for _, l := range lines {
			checked++
			if err := checkDocLine(l.bin, parseWords(l.args)); err != nil {
				t.Errorf("%s: %s %s: %v", l.pos, l.bin, strings.Join(l.args, " "), err)
			}
		}
	}
	// Every --help example is documentation too.
	for _, p := range commandPaths(newRootCmd()) {
		c, _, _ := newRootCmd().Find(p)
		for i, line := range strings.Split(c.Example, "\n") {
			for _, cmd := range shellCommands(line) {
				if len(cmd) == 0 || docCommand.FindStringSubmatch(cmd[0]) == nil {
					continue
				}
				checked++
				if err := checkDocLine(cmd[0], parseWords(cmd[1:])); err != nil {
					t.Errorf("herd %s --help, example line %d: %s: %v", strings.Join(p, " "), i+1, strings.Join(cmd, " "), err)
				}
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked %d command lines in the docs; the reader finds too few", checked)
	}
	t.Logf("%d command lines checked", checked)
}

// TestCheckDocLine: what the doc test refuses.
func TestCheckDocLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		bin  string
		line string
		ok   bool
	}{
		{"herd", "nodes --where x --json", true},
		{"herd", "rollout diff 12 --node web-01", true},
		{"herd-agent", "agent --site /srv/site", true},
		{"herd", "nodes --nope", false},           // an unknown flag
		{"herd", "nodez", false},                  // an unknown command
		{"herd", "node activate", false},          // a missing argument
		{"herd", "version extra", false},          // an extra argument
		{"herd", "node", false},                   // a group without its subcommand
		{"herd-agent", "compile --site .", false}, // a command herd-agent does not have
	}
	for _, tt := range tests {
		err := checkDocLine(tt.bin, strings.Fields(tt.line))
		if (err == nil) != tt.ok {
			t.Errorf("checkDocLine(%s %s) = %v, want ok %v", tt.bin, tt.line, err, tt.ok)
		}
	}
}

// TestShellCommands pins the reader the doc test relies on.
func TestShellCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		want [][]string
	}{
		{`./herd facts --json > host.json`, [][]string{{"./herd", "facts", "--json"}}},
		{`./herd status; ./herd nodes   # the fleet`, [][]string{{"./herd", "status"}, {"./herd", "nodes"}}},
		{`herd nodes --where 'os.family == "debian" && x' | jq .`, [][]string{{"herd", "nodes", "--where", `os.family == "debian" && x`}, {"jq", "."}}},
		{`herd rollout diff [ID] [--node N]`, [][]string{{"herd", "rollout", "diff", optionalMark + "ID", optionalMark + "--node", optionalMark + "N"}}},
		{`./herd agent ... --audit-interval 15m`, [][]string{{"./herd", "agent", "--audit-interval", "15m"}}},
	}
	for _, tt := range tests {
		got := shellCommands(tt.line)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("shellCommands(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

// TestDocCommandsRun runs the doc lines that need no server, no root and
// no host of their own — compile, check and lookup of the example site,
// this host's facts, the version — with the built binary from the
// module root, as the README has them run, and wants exit 0. Every other
// line is parsed only (TestDocCommandLines): it talks to a server, changes
// a host or runs a daemon.
func TestDocCommandsRun(t *testing.T) {
	t.Parallel()
	runs := map[string]bool{"compile": true, "check": true, "lookup": true, "facts": true, "version": true}
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	var ran int
	for _, path := range append([]string{"../../README.md"}, docs...) {
		lines, _ := docLines(t, path)
		for _, l := range lines {
			args := runWords(l.args)
			if l.bin != "herd" || len(args) == 0 || !runs[args[0]] || !runnableHere(args) {
				continue
			}
			ran++
			t.Run(l.pos, func(t *testing.T) {
				t.Parallel()
				cmd := exec.Command(herdBinary(t), args...)
				cmd.Dir = "../.."
				cmd.Env = binEnv(home)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Errorf("%s: herd %s: %v\n%s", l.pos, strings.Join(args, " "), err, out)
				}
			})
		}
	}
	if ran < 3 {
		t.Errorf("ran %d doc command lines; the README's compile, check and lookup lines are gone or unread", ran)
	}
}

// runnableHere reports whether a doc line of compile, check, lookup,
// facts or version runs without a server and without files the doc made
// earlier (a --facts file that does not exist: the line before wrote it).
func runnableHere(args []string) bool {
	for i, a := range args {
		switch a {
		case "--node", "--all", "--server", "--where":
			if args[0] == "facts" || a == "--server" {
				return false // the server's facts
			}
		case "--branch", "--against":
			// A branch of the reader's site repository (staging), not of
			// this checkout: parsed only.
			return false
		case "--facts":
			if i+1 < len(args) && args[i+1] != "-" {
				if _, err := os.Stat(filepath.Join("../..", args[i+1])); err != nil {
					return false
				}
			}
		}
	}
	return true
}

// TestDocServerCommandsRun runs the doc lines that only read from the
// server (nodes, reports, status, facts of the fleet, rollouts, audits,
// certificates) against a real server, through $HERD_SERVER and
// $HERD_ADMIN_DIR as an operator's shell would have them, with a node
// web-01 that checked in and reported. A line must not be a usage error
// nor a refused request (a --where the server cannot compile): it exits 0,
// or 1 saying that what it names does not exist here (a rollout, a run).
func TestDocServerCommandsRun(t *testing.T) {
	t.Parallel()
	reads := map[string]bool{"nodes": true, "reports": true, "status": true, "facts": true, "rollout list": true,
		"rollout status": true, "rollout diff": true, "audit": true, "ca list": true, "ca status": true, "ca tokens": true}
	// The example site: its audit controls are the ones the docs name.
	s, dir := startServer(t, exampleSite)
	web := checkedIn(t, s, "web-01", map[string]any{"os": map[string]any{"family": "debian", "release": map[string]any{"major": "12"}},
		"memory": map[string]any{"total_bytes": 2e9}})
	if _, err := web.SendReport(context.Background(), &herdv1.SendReportRequest{Report: &herdv1.Report{
		RunId: "run-1", Version: "v1", Summary: &herdv1.Summary{Resources: 1, Changed: 1}}}); err != nil {
		t.Fatal(err)
	}
	adminDir := filepath.Join(t.TempDir(), "admin")
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: %s", stderr)
	}
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	notHere := regexp.MustCompile(`no rollout|has no run|no node|not found`)
	var ran int
	for _, path := range append([]string{"../../README.md"}, docs...) {
		lines, _ := docLines(t, path)
		for _, l := range lines {
			args := runWords(l.args)
			if l.bin != "herd" || len(args) == 0 {
				continue
			}
			name := args[0]
			if len(args) > 1 && (name == "rollout" || name == "ca") {
				name += " " + args[1]
			}
			if !reads[name] || (name == "facts" && !slices.Contains(args, "--node") && !slices.Contains(args, "--all")) ||
				slices.Contains(args, "-o") {
				continue
			}
			ran++
			t.Run(l.pos, func(t *testing.T) {
				t.Parallel()
				cmd := exec.Command(herdBinary(t), args...)
				cmd.Dir = t.TempDir()
				cmd.Env = append(binEnv(home), "HERD_SERVER="+s.Addr, "HERD_ADMIN_DIR="+adminDir)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				err := cmd.Run()
				code := cmd.ProcessState.ExitCode()
				if err != nil && !(code == nodecmd.ExitError && notHere.MatchString(stderr.String())) {
					t.Errorf("%s: herd %s: exit %d: %v\n%s", l.pos, strings.Join(args, " "), code, err, stderr.String())
				}
			})
		}
	}
	if ran < 10 {
		t.Errorf("ran %d doc lines against the server; the docs' fleet commands are gone or unread", ran)
	}
}

// walkMarker marks a fenced block of install.md that .ci/install-walkthrough
// runs, by STEP.
var walkMarker = regexp.MustCompile(`^<!--\s*herd-doc:\s*walkthrough\s+(\S+)\s*-->$`)

// walkCall is how .ci/install-walkthrough takes a block: "walk STEP" on a
// line of its own, or "block STEP" inside a helper.
var walkCall = regexp.MustCompile(`(?m)^\s*(?:walk|lines=\$\(block)\s+([a-z-]+)\)?\s*$`)

// TestInstallDocWalked: every sh block of docs/install.md is run by the
// CI walkthrough or marked "not checked: REASON", and every step the
// walkthrough runs is a marked block, so that the doc and the script
// cannot drift apart without CI saying so.
func TestInstallDocWalked(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("../../.ci/install-walkthrough")
	if err != nil {
		t.Fatal(err)
	}
	steps, problems := walkedBlocks(string(doc))
	for _, p := range problems {
		t.Errorf("docs/install.md:%s", p)
	}
	walked := map[string]bool{}
	for _, m := range walkCall.FindAllStringSubmatch(string(script), -1) {
		walked[m[1]] = true
	}
	for step, line := range steps {
		if !walked[step] {
			t.Errorf("docs/install.md:%d: block %q is marked walkthrough but .ci/install-walkthrough never walks it", line, step)
		}
	}
	for step := range walked {
		if _, ok := steps[step]; !ok {
			t.Errorf(".ci/install-walkthrough walks %q, which no block of docs/install.md is marked", step)
		}
	}
	if len(steps) < 10 {
		t.Errorf("found %d walked blocks in docs/install.md; the reader finds too few", len(steps))
	}
}

// walkedBlocks reads the sh blocks of a markdown text: the walkthrough
// steps (name to line) and, as "LINE: what", each sh block that is
// neither walked nor marked not checked, and each step named twice.
func walkedBlocks(doc string) (steps map[string]int, problems []string) {
	steps = map[string]int{}
	var prev string
	in := false
	for i, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if !in && strings.TrimSpace(strings.TrimPrefix(trimmed, "```")) == "sh" {
				marker := strings.TrimSpace(prev)
				switch m := walkMarker.FindStringSubmatch(marker); {
				case m != nil:
					if first, dup := steps[m[1]]; dup {
						problems = append(problems, fmt.Sprintf("%d: step %q marks a second block (the first at line %d)", i+1, m[1], first))
					}
					steps[m[1]] = i + 1
				case docMarker.MatchString(marker):
				default:
					problems = append(problems, fmt.Sprintf("%d: an sh block neither walked by .ci/install-walkthrough (<!-- herd-doc: walkthrough STEP -->) nor marked <!-- herd-doc: not checked: REASON -->", i+1))
				}
			}
			in = !in
		}
		prev = line
	}
	return steps, problems
}

// TestWalkedBlocks: what the check refuses.
func TestWalkedBlocks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		steps     int
		problems  int
	}{
		{"walked", "<!-- herd-doc: walkthrough a -->\n```sh\nls\n```\n", 1, 0},
		{"not checked", "<!-- herd-doc: not checked: needs arm64 -->\n```sh\nls\n```\n", 0, 0},
		{"unmarked", "text\n```sh\nls\n```\n", 0, 1},
		{"other language unmarked", "```toml\na = 1\n```\n", 0, 0},
		{"marker not right before", "<!-- herd-doc: walkthrough a -->\n\n```sh\nls\n```\n", 0, 1},
		{"step twice", "<!-- herd-doc: walkthrough a -->\n```sh\nls\n```\n<!-- herd-doc: walkthrough a -->\n```sh\nls\n```\n", 1, 1},
		{"a fence inside is not a block start", "<!-- herd-doc: walkthrough a -->\n```sh\nls\n```\n```sh\nls\n```\n", 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			steps, problems := walkedBlocks(tc.doc)
			if len(steps) != tc.steps || len(problems) != tc.problems {
				t.Errorf("steps %v, problems %q; want %d steps, %d problems", steps, problems, tc.steps, tc.problems)
			}
		})
	}
}
