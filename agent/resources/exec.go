package resources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/herdcm/herd/catalogs"
)

// Exec is the exec resource type: a command run to bring something about.
//
// An exec has no state of its own to compare, so its guards stand for it:
//   - refreshonly: always in sync; the command runs only on Refresh, when a
//     resource that notifies this one changed;
//   - creates: in sync when the path exists under the host root (an Lstat,
//     nothing is run);
//   - unless: in sync when that command exits 0;
//   - onlyif: in sync when that command exits non-zero.
//
// Guards are evaluated in that order and the first that says "in sync"
// wins, so a cheap creates spares the spawn of unless and onlyif. Check
// runs unless and onlyif (with the exec's user, cwd, env and timeout, as
// Puppet does), never command: the site's author promises that guard
// commands only read the host, which is what keeps noop safe for execs.
//
// An exec without any guard has a change on every run, like Puppet's: it
// runs every time. The engine re-checks every applied resource, and a
// guarded exec whose guard still says "run" after running did not
// converge (a creates the command did not create is a bug worth failing
// on). An unguarded exec has nothing that could say so: its change is
// marked Converges (the contract's "a change whose successful Apply is
// convergence"), so the re-check finds it again and the engine accepts
// it.
//
// The attribute ignore has no effect on an exec: it has no attributes whose
// state another tool could own.
type Exec struct{}

var (
	_ Type      = (*Exec)(nil)
	_ Refresher = (*Exec)(nil)
)

// execSpec is an exec resource's attributes, checked and decoded.
type execSpec struct {
	name        string
	command     []string
	creates     string
	unless      []string
	onlyif      []string
	refreshonly bool
	user        string
	cwd         string
	env         []string // KEY=VALUE, sorted by key
	timeout     time.Duration
	stdin       string // written to the command's standard input (not the guards')
}

// parseExec decodes r's attributes. Compile has already checked their
// kinds; this checks again what would otherwise make a command run wrong.
func parseExec(r *catalogs.Resource) (*execSpec, error) {
	s := &execSpec{
		name:        r.Name,
		command:     r.Strings("command"),
		creates:     r.String("creates"),
		unless:      r.Strings("unless"),
		onlyif:      r.Strings("onlyif"),
		refreshonly: r.Bool("refreshonly"),
		user:        r.String("user"),
		cwd:         r.String("cwd"),
		env:         keyValueList(r.StringMap("env")),
		timeout:     DefaultTimeout,
		stdin:       r.String("stdin"),
	}
	for _, a := range []struct {
		attr string
		argv []string
	}{{"command", s.command}, {"unless", s.unless}, {"onlyif", s.onlyif}} {
		if a.argv == nil && a.attr != "command" {
			continue
		}
		if len(a.argv) == 0 || !filepath.IsAbs(a.argv[0]) {
			return nil, fmt.Errorf("exec %s: %s must be a program by absolute path and its arguments, not %q", s.name, a.attr, a.argv)
		}
	}
	if s.creates != "" && !filepath.IsAbs(s.creates) {
		return nil, fmt.Errorf("exec %s: creates %q is not an absolute path", s.name, s.creates)
	}
	if t := r.String("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("exec %s: timeout %q: want a positive duration like \"30s\"", s.name, t)
		}
		s.timeout = d
	}
	return s, nil
}

// guarded reports whether any guard decides when the exec runs.
func (s *execSpec) guarded() bool {
	return s.refreshonly || s.creates != "" || s.unless != nil || s.onlyif != nil
}

// cmd is argv run the way every command of this exec runs.
func (s *execSpec) cmd(argv []string) Cmd {
	return Cmd{Argv: argv, Env: s.env, Dir: s.cwd, User: s.user, Timeout: s.timeout}
}

// needed evaluates creates, unless and onlyif (not refreshonly) and
// reports whether the command should run.
func (s *execSpec) needed(ctx context.Context, h *Host) (bool, error) {
	if s.creates != "" {
		_, err := os.Lstat(filepath.Join(h.Root, s.creates))
		switch {
		case err == nil:
			return false, nil
		case !errors.Is(err, fs.ErrNotExist):
			return false, fmt.Errorf("exec %s: checking creates: %w", s.name, err)
		}
	}
	if s.unless != nil {
		res, err := h.Run(ctx, s.cmd(s.unless))
		if err != nil {
			return false, fmt.Errorf("exec %s: running unless: %w", s.name, err)
		}
		if res.ExitCode == 0 {
			return false, nil
		}
	}
	if s.onlyif != nil {
		res, err := h.Run(ctx, s.cmd(s.onlyif))
		if err != nil {
			return false, fmt.Errorf("exec %s: running onlyif: %w", s.name, err)
		}
		if res.ExitCode != 0 {
			return false, nil
		}
	}
	return true, nil
}

// Check reports the command as to be run unless a guard says it need not.
func (e *Exec) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	s, err := parseExec(want)
	if err != nil {
		return nil, err
	}
	p := &Plan{Resource: want, State: s}
	if s.refreshonly {
		return p, nil
	}
	run, err := s.needed(ctx, h)
	if err != nil {
		return nil, err
	}
	if !run {
		return p, nil
	}
	p.Changes = []Change{{Attr: "command", To: shellQuoteArgv(s.command), Action: Create, Converges: !s.guarded()}}
	return p, nil
}

// Apply runs the command. Its output, capped at MaxOutput, goes to
// p.Output whether it succeeds or not; a non-zero exit is an error.
func (e *Exec) Apply(ctx context.Context, h *Host, p *Plan) error {
	s, ok := p.State.(*execSpec)
	if !ok {
		return fmt.Errorf("exec %s: plan was not made by Exec.Check", p.Resource.Name)
	}
	out, err := s.run(ctx, h)
	p.Output = out
	return err
}

// Refresh runs the command of a notified exec when its guards (creates,
// unless, onlyif) say it is needed. For a refreshonly exec, that is how it
// ever runs. A notified exec that is not refreshonly is refreshed only when
// it was in sync (the engine's rule), so its guards just said it has
// nothing to do and say so again unless the notifier changed their
// answer; an unguarded exec is never in sync and so never refreshed, which
// spares it a second run in the same run. Puppet behaves the same.
//
// Refresh has no plan to carry output: it is logged, and the last part of
// it is in the error when the command fails.
func (e *Exec) Refresh(ctx context.Context, h *Host, r *catalogs.Resource) error {
	s, err := parseExec(r)
	if err != nil {
		return err
	}
	if !s.guarded() {
		return nil
	}
	run, err := s.needed(ctx, h)
	if err != nil || !run {
		return err
	}
	out, err := s.run(ctx, h)
	if err != nil {
		if out != "" {
			return fmt.Errorf("%w; output ends:\n%s", err, execOutputTail(out, refreshErrorOutput))
		}
		return err
	}
	if h.Log != nil {
		h.Log.Info("exec refreshed", "resource", r.ID, "output", out)
	}
	return nil
}

// refreshErrorOutput caps the output a failed Refresh puts in its error.
const refreshErrorOutput = 4 << 10

// run runs the command and returns its output.
func (s *execSpec) run(ctx context.Context, h *Host) (string, error) {
	cmd := s.cmd(s.command)
	if s.stdin != "" {
		cmd.Stdin = []byte(s.stdin)
	}
	res, err := h.Run(ctx, cmd)
	out := string(res.Output)
	if err != nil {
		return out, fmt.Errorf("exec %s: %w", s.name, err)
	}
	if res.ExitCode != 0 {
		return out, fmt.Errorf("exec %s: %s", s.name, res.DescribeExit())
	}
	return out, nil
}

// execOutputTail returns the last n bytes of s, starting on a rune boundary.
func execOutputTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	for i := 0; i < len(s) && i < 4; i++ {
		if s[i]&0xC0 != 0x80 {
			return "…" + s[i:]
		}
	}
	return "…" + s
}

// keyValueList turns an env table into KEY=VALUE entries sorted by key, so that
// the same table always gives the same command (and the same digest).
func keyValueList(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	// Sorting the joined entries would order "A_B=1" before "A=1" ('_' < '=');
	// sort by key so that the order is the keys' order.
	slices.SortFunc(out, func(a, b string) int {
		ka, _, _ := strings.Cut(a, "=")
		kb, _, _ := strings.Cut(b, "=")
		return strings.Compare(ka, kb)
	})
	return out
}

// shellQuoteArgv writes argv as a POSIX shell would read it back, for
// people: plain words stay bare and the rest is single-quoted. Commands
// are never run through a shell; this is only how they are shown.
func shellQuoteArgv(argv []string) string {
	var b bytes.Buffer
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(a))
	}
	return b.String()
}

// shellQuote quotes one word for a POSIX shell.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	plain := true
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_@%+=:,./-", c) >= 0) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
