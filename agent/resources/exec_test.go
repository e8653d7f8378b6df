package resources

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdcm/herd/catalogs"
)

// execCounter is a shell command that records each run in ROOT/runs, so that
// tests can count how often a command (and only it) ran.
func execCounter(extra string) []string {
	return []string{"/bin/sh", "-c", `echo run >> "$HERD_ROOT/runs"; ` + extra}
}

// execRuns returns how often execCounter ran under root.
func execRuns(t *testing.T, root string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "runs"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

// execTouch makes an empty file at rel under root.
func execTouch(t *testing.T, root, rel string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// execCheck runs Check and fails the test on an error.
func execCheck(t *testing.T, typ Type, h *Host, r *catalogs.Resource) *Plan {
	t.Helper()
	p, err := typ.Check(context.Background(), h, r)
	if err != nil {
		t.Fatalf("Check(%s): %v", r.ID, err)
	}
	return p
}

// TestExecGuards runs each guard through a whole run: Check, Apply when
// there is something to do, and the engine's re-check.
func TestExecGuards(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		attrs map[string]any
		setup func(t *testing.T, root string)
		// wantRun: Check on the fresh root has the command to run.
		wantRun bool
		// wantConverged: the re-check after Apply is in sync.
		wantConverged bool
	}{
		{
			name:          "creates missing",
			attrs:         map[string]any{"command": execCounter(`touch "$HERD_ROOT/done"`), "creates": "/done"},
			wantRun:       true,
			wantConverged: true,
		},
		{
			name:  "creates exists",
			attrs: map[string]any{"command": execCounter(""), "creates": "/done"},
			setup: func(t *testing.T, root string) { execTouch(t, root, "done") },
		},
		{
			name:  "creates is a dangling link",
			attrs: map[string]any{"command": execCounter(""), "creates": "/done"},
			setup: func(t *testing.T, root string) {
				if err := os.Symlink("/nonexistent", filepath.Join(root, "done")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:  "creates not made by the command",
			attrs: map[string]any{"command": execCounter(""), "creates": "/done"},
			// The guard still says run: the engine reports that the
			// exec did not converge, which is the point of creates.
			wantRun: true,
		},
		{
			name:          "unless fails",
			attrs:         map[string]any{"command": execCounter(`touch "$HERD_ROOT/flag"`), "unless": []string{"/bin/sh", "-c", `test -e "$HERD_ROOT/flag"`}},
			wantRun:       true,
			wantConverged: true,
		},
		{
			name:  "unless succeeds",
			attrs: map[string]any{"command": execCounter(""), "unless": []string{"/bin/true"}},
		},
		{
			name:          "onlyif succeeds",
			attrs:         map[string]any{"command": execCounter(`rm "$HERD_ROOT/todo"`), "onlyif": []string{"/bin/sh", "-c", `test -e "$HERD_ROOT/todo"`}},
			setup:         func(t *testing.T, root string) { execTouch(t, root, "todo") },
			wantRun:       true,
			wantConverged: true,
		},
		{
			name:  "onlyif fails",
			attrs: map[string]any{"command": execCounter(""), "onlyif": []string{"/bin/false"}},
		},
		{
			name:  "creates wins before unless runs",
			attrs: map[string]any{"command": execCounter(""), "creates": "/done", "unless": execCounter("exit 1")},
			setup: func(t *testing.T, root string) { execTouch(t, root, "done") },
		},
		{
			name:  "refreshonly",
			attrs: map[string]any{"command": execCounter(""), "refreshonly": true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHost(t)
			if tc.setup != nil {
				tc.setup(t, h.Root)
			}
			r := res("exec", "test", tc.attrs)
			e := &Exec{}
			p := execCheck(t, e, h, &r)
			if n := execRuns(t, h.Root); n != 0 {
				t.Fatalf("Check ran the command %d times", n)
			}
			if got := !p.InSync(); got != tc.wantRun {
				t.Fatalf("Check has a change = %v, want %v (%+v)", got, tc.wantRun, p.Changes)
			}
			if !tc.wantRun {
				return
			}
			want := []Change{{Attr: "command", To: shellQuoteArgv(tc.attrs["command"].([]string)), Action: Create}}
			if diff := cmp.Diff(want, p.Changes); diff != "" {
				t.Errorf("Check changes (-want +got):\n%s", diff)
			}
			if err := e.Apply(context.Background(), h, p); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if n := execRuns(t, h.Root); n != 1 {
				t.Errorf("Apply ran the command %d times, want 1", n)
			}
			if got := execCheck(t, e, h, &r).InSync(); got != tc.wantConverged {
				t.Errorf("re-check in sync = %v, want %v", got, tc.wantConverged)
			}
		})
	}
}

// TestExecUnguarded checks that an exec without guards runs on every run,
// and that its change is marked as one whose successful Apply is
// convergence: the engine's re-check finds it again and accepts it.
func TestExecUnguarded(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	r := res("exec", "always", map[string]any{"command": execCounter("")})
	e := &Exec{}
	ctx := context.Background()
	for run := 1; run <= 2; run++ {
		p := execCheck(t, e, h, &r)
		if p.InSync() || !p.Changes[0].Converges {
			t.Fatalf("run %d: plan %+v, want a change marked Converges", run, p.Changes)
		}
		if err := e.Apply(ctx, h, p); err != nil {
			t.Fatalf("run %d: Apply: %v", run, err)
		}
		if again := execCheck(t, e, h, &r); again.InSync() || !again.Changes[0].Converges {
			t.Fatalf("run %d: re-check after Apply %+v, want the change again, marked Converges", run, again.Changes)
		}
	}
	if n := execRuns(t, h.Root); n != 2 {
		t.Errorf("ran %d times in 2 runs, want 2", n)
	}
	// A guarded exec's change is never marked: its guard must say
	// "done" after Apply.
	g := res("exec", "guarded", map[string]any{"command": execCounter(""), "onlyif": []string{"/bin/true"}})
	if p := execCheck(t, e, h, &g); p.InSync() || p.Changes[0].Converges {
		t.Errorf("guarded exec: plan %+v, want a change not marked Converges", p.Changes)
	}
}

func TestExecRefresh(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		attrs   map[string]any
		setup   func(t *testing.T, root string)
		wantRun int
	}{
		{"refreshonly runs", map[string]any{"command": execCounter(""), "refreshonly": true}, nil, 1},
		{"refreshonly whose creates exists", map[string]any{"command": execCounter(""), "refreshonly": true, "creates": "/done"},
			func(t *testing.T, root string) { execTouch(t, root, "done") }, 0},
		{"refreshonly whose unless succeeds", map[string]any{"command": execCounter(""), "refreshonly": true, "unless": []string{"/bin/true"}}, nil, 0},
		{"guarded, guard says done", map[string]any{"command": execCounter(""), "unless": []string{"/bin/true"}}, nil, 0},
		{"guarded, guard says run", map[string]any{"command": execCounter(""), "onlyif": []string{"/bin/true"}}, nil, 1},
		{"unguarded", map[string]any{"command": execCounter("")}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHost(t)
			if tc.setup != nil {
				tc.setup(t, h.Root)
			}
			r := res("exec", "test", tc.attrs)
			if err := (&Exec{}).Refresh(context.Background(), h, &r); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if n := execRuns(t, h.Root); n != tc.wantRun {
				t.Errorf("Refresh ran the command %d times, want %d", n, tc.wantRun)
			}
		})
	}
}

func TestExecRefreshFailure(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	r := res("exec", "fails", map[string]any{"command": []string{"/bin/sh", "-c", "echo the reason; exit 4"}, "refreshonly": true})
	err := (&Exec{}).Refresh(context.Background(), h, &r)
	if err == nil || !strings.Contains(err.Error(), "exec fails: exited 4") || !strings.Contains(err.Error(), "the reason") {
		t.Errorf("Refresh = %v, want the exit code and the output", err)
	}
}

func TestExecFailure(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	r := res("exec", "migrate", map[string]any{"command": []string{"/bin/sh", "-c", "echo applying; echo broken schema >&2; exit 3"}})
	e := &Exec{}
	p := execCheck(t, e, h, &r)
	err := e.Apply(context.Background(), h, p)
	if err == nil || err.Error() != "exec migrate: exited 3" {
		t.Errorf("Apply = %v, want exec migrate: exited 3", err)
	}
	if p.Output != "applying\nbroken schema\n" {
		t.Errorf("Output = %q, want both streams", p.Output)
	}
	// A failed unguarded exec leaves no mark: it is still to run.
	if execCheck(t, e, h, &r).InSync() {
		t.Error("a failed exec is in sync")
	}
}

func TestExecSuccessOutput(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	r := res("exec", "hello", map[string]any{"command": []string{"/bin/echo", "hello"}})
	e := &Exec{}
	p := execCheck(t, e, h, &r)
	if err := e.Apply(context.Background(), h, p); err != nil {
		t.Fatal(err)
	}
	if p.Output != "hello\n" {
		t.Errorf("Output = %q, want hello", p.Output)
	}
}

// TestExecTimeout checks that a command past its timeout is killed with
// its whole process group, children included.
func TestExecTimeout(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	r := res("exec", "hangs", map[string]any{
		"command": []string{"/bin/sh", "-c", `sleep 60 & echo $! > "$HERD_ROOT/child.pid"; wait`},
		"timeout": "300ms",
	})
	e := &Exec{}
	p := execCheck(t, e, h, &r)
	start := time.Now()
	err := e.Apply(context.Background(), h, p)
	if err == nil || !strings.Contains(err.Error(), "exec hangs:") || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Fatalf("Apply = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Apply returned after %s", d)
	}
	b, err := os.ReadFile(filepath.Join(h.Root, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for execProcessAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the timed-out exec is still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// execProcessAlive reports whether pid runs. A zombie does not: the
// killed child is reparented to PID 1, which may be slow to reap it.
func execProcessAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// TestExecUser runs the command as "nobody" of the root's own etc/passwd.
func TestExecUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	h, _ := newTestHost(t)
	// The command starts in the root as nobody: let nobody in.
	for _, d := range []string{h.Root, filepath.Dir(h.Root)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(h.Root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	if err := os.WriteFile(filepath.Join(h.Root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	r := res("exec", "whoami", map[string]any{
		"command": []string{"/bin/sh", "-c", `echo "$(id -u):$(id -g) $USER $HOME"`},
		"unless":  []string{"/bin/sh", "-c", `test "$(id -u)" = 0`}, // runs as nobody too, so fails
		"user":    "nobody",
	})
	e := &Exec{}
	p := execCheck(t, e, h, &r)
	if p.InSync() {
		t.Fatal("the unless guard did not run as nobody")
	}
	if err := e.Apply(context.Background(), h, p); err != nil {
		t.Fatalf("Apply: %v (output %q)", err, p.Output)
	}
	if want := "65534:65534 nobody /nonexistent\n"; p.Output != want {
		t.Errorf("Output = %q, want %q", p.Output, want)
	}
}

func TestExecEnvAndCwd(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	if err := os.MkdirAll(filepath.Join(h.Root, "srv/app"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := res("exec", "env", map[string]any{
		"command": []string{"/bin/sh", "-c", `echo "$B_ $A $PWD"; env | grep -c '^[AB]_*='`},
		"env":     map[string]string{"B_": "two words", "A": "1"},
		"cwd":     "/srv/app",
	})
	e := &Exec{}
	p := execCheck(t, e, h, &r)
	if err := e.Apply(context.Background(), h, p); err != nil {
		t.Fatalf("Apply: %v (output %q)", err, p.Output)
	}
	if want := "two words 1 " + filepath.Join(h.Root, "srv/app") + "\n2\n"; p.Output != want {
		t.Errorf("Output = %q, want %q", p.Output, want)
	}
	s := p.State.(*execSpec)
	if want := []string{"A=1", "B_=two words"}; !cmp.Equal(s.env, want) {
		t.Errorf("env = %q, want %q sorted by name", s.env, want)
	}
}

func TestExecBadAttributes(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	for _, tc := range []struct {
		name  string
		attrs map[string]any
		want  string
	}{
		{"no command", map[string]any{}, "command must be a program by absolute path"},
		{"relative command", map[string]any{"command": []string{"make"}}, `command must be a program by absolute path and its arguments, not ["make"]`},
		{"relative unless", map[string]any{"command": []string{"/bin/true"}, "unless": []string{"test"}}, "unless must be"},
		{"empty onlyif", map[string]any{"command": []string{"/bin/true"}, "onlyif": []string{}}, "onlyif must be"},
		{"relative creates", map[string]any{"command": []string{"/bin/true"}, "creates": "done"}, `creates "done" is not an absolute path`},
		{"bad timeout", map[string]any{"command": []string{"/bin/true"}, "timeout": "soon"}, `timeout "soon"`},
	} {
		r := res("exec", "bad", tc.attrs)
		_, err := (&Exec{}).Check(context.Background(), h, &r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestExecGuardErrors checks that a guard that cannot run fails the Check
// instead of deciding either way.
func TestExecGuardErrors(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	for _, attrs := range []map[string]any{
		{"command": []string{"/bin/true"}, "unless": []string{"/nonexistent/guard"}},
		{"command": []string{"/bin/true"}, "onlyif": []string{"/bin/sleep", "5"}, "timeout": "100ms"},
		{"command": []string{"/bin/true"}, "unless": []string{"/bin/true"}, "user": "nosuchuser"},
	} {
		r := res("exec", "guard", attrs)
		if p, err := (&Exec{}).Check(context.Background(), h, &r); err == nil {
			t.Errorf("Check(%v) = %+v, want an error", attrs, p)
		}
	}
}

func TestShellQuoteArgv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"/usr/bin/make", "install"}, "/usr/bin/make install"},
		{[]string{"/bin/sh", "-c", "echo hi > /tmp/x"}, "/bin/sh -c 'echo hi > /tmp/x'"},
		{[]string{"/bin/echo", "it's", ""}, `/bin/echo 'it'\''s' ''`},
		{[]string{"/bin/env", "A=1,2", "x@y:z%"}, "/bin/env A=1,2 x@y:z%"},
		{[]string{"/bin/echo", "$HOME", "a\nb"}, "/bin/echo '$HOME' 'a\nb'"},
	} {
		if got := shellQuoteArgv(tc.argv); got != tc.want {
			t.Errorf("shellQuoteArgv(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
}

func TestExecOutputTail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"0123456789", 4, "…6789"},
		{"aé€", 4, "…€"}, // the cut falls inside "é": start at the next rune
	} {
		if got := execOutputTail(tc.s, tc.n); got != tc.want {
			t.Errorf("execOutputTail(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
