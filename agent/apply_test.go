package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

const exampleSite = "../examples/site"

// needTools skips a test that needs Debian tools only when one is truly
// missing; CI installs them.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	testkit.NeedTools(t, tools...)
	testkit.NeedRoot(t, "dpkg --root and useradd --prefix chown files")
}

// sandbox returns a sandbox host root that looks like Debian 12.
func sandbox(t *testing.T) string {
	t.Helper()
	return testkit.NewSandboxHost(t)
}

// TestApplyExampleSite converges a sandbox from the example site with the
// real types (dpkg --root with the site's .deb, useradd --prefix, the
// supervisor on real processes), then runs again: the second run must find
// every resource in sync and change nothing.
func TestApplyExampleSite(t *testing.T) {
	needTools(t, "dpkg", "dpkg-deb", "apt-get", "gpgv", "useradd", "groupadd")
	root := webSandbox(t)
	ctx := context.Background()

	r := fleet.MustApply(t, exampleSite, root, "web-01")
	if r.Summary.Changed == 0 || r.ExitCode() != 2 {
		t.Fatalf("first run summary = %+v, exit %d; want changes and exit 2", r.Summary, r.ExitCode())
	}
	fleet.AssertFile(t, root, "etc/herd-demo-web/app.conf", "workers = 8")
	fleet.AssertMode(t, root, "etc/herd-demo-web/app.conf", 0o644)
	fleet.AssertFile(t, root, "etc/motd", "web-01: the canary")
	fleet.AssertMode(t, root, "etc/ssh/sshd_config.d/50-herd-hardening.conf", 0o600)
	fleet.AssertFile(t, root, "etc/passwd", "alice:x:2001:2000:Alice Admin:/home/alice:/bin/bash")
	fleet.AssertFile(t, root, "var/lib/dpkg/status", "Package: herd-demo-web")
	fleet.AssertFile(t, root, "var/lib/herd-example/first-converge", "UTC")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/herd-demo-web")); err != nil {
		t.Errorf("the package's program is not installed in the sandbox: %v", err)
	}
	st, err := agent.OpenState(filepath.Join(root, "var/lib/herd"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := agent.NewServices(ctx, st, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, ok := svc.Supervisor().Status("demo-web")
	svc.Close()
	st.Close()
	if !ok || status.PID == 0 || syscall.Kill(status.PID, 0) != nil {
		t.Fatalf("demo-web is not running: %+v", status)
	}

	again := fleet.Apply(t, exampleSite, root, "web-01", false)
	for _, e := range again.Events {
		if e.Status != agent.InSync || e.Refresh != "" {
			t.Errorf("second run: %s is %s %s %s", e.ID, e.Status, e.Refresh, e.Error)
		}
	}
	if again.ExitCode() != 0 {
		t.Errorf("second run exit code = %d, want 0", again.ExitCode())
	}
}

// TestApplyNoopChangesNothing runs noop on a fresh sandbox: it reports what
// would change, marks what depends on those changes unknown, and writes
// nothing outside the agent's own state.
func TestApplyNoopChangesNothing(t *testing.T) {
	needTools(t, "dpkg", "useradd")
	root := webSandbox(t)
	before := snapshot(t, root)
	// The state directory is the default one, under root: noop must not
	// create it either.
	r, err := agent.Apply(context.Background(), agent.ApplyOptions{Site: exampleSite, Root: root, Node: "web-01", Noop: true})
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, root); after != before {
		t.Fatalf("noop changed the sandbox:\nbefore %s\nafter  %s", before, after)
	}
	byID := map[string]agent.Event{}
	for _, e := range r.Events {
		byID[e.ID] = e
	}
	if e := byID["file:/etc/motd"]; e.Status != agent.Changed || !e.Noop {
		t.Errorf("file:/etc/motd = %+v, want a noop change", e)
	}
	if e := byID["file:/etc/herd-demo-web/app.conf"]; e.Status != agent.Unknown || !strings.Contains(e.Cause, "file:/etc/herd-demo-web") {
		t.Errorf("app.conf = %+v, want unknown naming its directory", e)
	}
	if e := byID["service:demo-web"]; e.Status != agent.Unknown {
		t.Errorf("service:demo-web = %+v, want unknown (its package would be installed first)", e)
	}
}

// TestApplyDriftAndBackup edits a managed file by hand: the next run puts
// it back and keeps the hand-edited content as a backup.
func TestApplyDriftAndBackup(t *testing.T) {
	needTools(t, "dpkg", "useradd")
	root := sandbox(t)
	ctx := context.Background()
	fleet.MustApply(t, exampleSite, root, "db-01")
	motd := filepath.Join(root, "etc/motd")
	if err := os.WriteFile(motd, []byte("edited by hand\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := fleet.MustApply(t, exampleSite, root, "db-01")
	if changed := fleet.Changed(r); !changed["file:/etc/motd"] || len(changed) != 1 {
		t.Errorf("after a hand edit, changed = %v, want only file:/etc/motd", changed)
	}
	fleet.AssertFile(t, root, "etc/motd", "managed by Herd")
	fleet.AssertMode(t, root, "etc/motd", 0o644)
	st, err := agent.OpenState(filepath.Join(root, "var/lib/herd"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bs, err := st.Backups(ctx, "/etc/motd")
	if err != nil || len(bs) != 1 {
		t.Fatalf("backups = %+v, %v; want the hand edit", bs, err)
	}
	rc, _ := st.OpenContent(bs[0].Digest)
	b := make([]byte, 64)
	n, _ := rc.Read(b)
	rc.Close()
	if string(b[:n]) != "edited by hand\n" {
		t.Errorf("backup holds %q", b[:n])
	}
}

// TestApplyFailureIsolation: a failing exec skips only what requires it.
func TestApplyFailureIsolation(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": `
[[exec]]
name = "broken"
command = ["/bin/sh", "-c", "echo cannot do it >&2; exit 3"]

[[file]]
path = "/after-broken"
content = "x"
require = ["exec:broken"]

[[file]]
path = "/after-after"
content = "y"
require = ["file:/after-broken"]

[[file]]
path = "/independent"
content = "z"
`,
	})
	root := t.TempDir()
	r, err := agent.Apply(context.Background(), agent.ApplyOptions{Site: site, Root: root, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]agent.Status{"exec:broken": agent.Failed, "file:/after-broken": agent.Skipped, "file:/after-after": agent.Skipped, "file:/independent": agent.Changed}
	for _, e := range r.Events {
		if e.Status != want[e.ID] {
			t.Errorf("%s = %s, want %s", e.ID, e.Status, want[e.ID])
		}
		if e.ID == "exec:broken" && !strings.Contains(e.Output, "cannot do it") {
			t.Errorf("the failed exec's output %q is not in its event", e.Output)
		}
		if e.Status == agent.Skipped && !strings.Contains(e.Cause, "exec:broken") {
			t.Errorf("%s skipped with cause %q, want it to name exec:broken", e.ID, e.Cause)
		}
	}
	if r.ExitCode() != 6 {
		t.Errorf("exit code = %d, want 6 (changes and failures)", r.ExitCode())
	}
}

// TestApplyNoopRecordsNothing: on a host with state, a noop run adds no
// history row and saves no content, while a real run does both.
func TestApplyNoopRecordsNothing(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"managed\\n\"\n",
	})
	root := t.TempDir()
	ctx := context.Background()
	if _, err := agent.Apply(ctx, agent.ApplyOptions{Site: site, Root: root, Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "motd"), []byte("edited by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := agent.DefaultStateDir(root)
	count := func() (runs, backups int) {
		t.Helper()
		st, err := agent.OpenState(state.String())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		rs, err := st.Runs(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := st.Backups(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		return len(rs), len(bs)
	}
	runs, backups := count()
	r, err := agent.Apply(ctx, agent.ApplyOptions{Site: site, Root: root, Node: "n1", Noop: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Summary.Changed != 1 {
		t.Errorf("noop summary = %+v, want one change it would make", r.Summary)
	}
	if gotRuns, gotBackups := count(); gotRuns != runs || gotBackups != backups {
		t.Errorf("after noop: %d runs, %d backups; want %d and %d, as before", gotRuns, gotBackups, runs, backups)
	}
	if _, err := agent.Apply(ctx, agent.ApplyOptions{Site: site, Root: root, Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	if gotRuns, gotBackups := count(); gotRuns != runs+1 || gotBackups != backups+1 {
		t.Errorf("after a real run: %d runs, %d backups; want %d and %d", gotRuns, gotBackups, runs+1, backups+1)
	}
}

func TestApplyDeclinesWhileAnotherRuns(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	state := filepath.Join(root, "var/lib/herd")
	lock, err := agent.AcquireLock(context.Background(), state, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	_, err = agent.Apply(context.Background(), agent.ApplyOptions{Site: exampleSite, Root: root, Node: "web-01"})
	if !errors.Is(err, agent.ErrLocked) {
		t.Fatalf("Apply while locked = %v, want ErrLocked", err)
	}
}

// snapshot lists every path under root with its mode, size and mtime: a
// noop run must leave all of it alone.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(&b, "%s %v %d %d\n", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	return b.String()
}

// TestApplyNoopRestartsNothing: a noop run on a host whose state has a
// supervised service, with no daemon running, reads the supervisor's
// records instead of supervising: a service killed by hand stays dead and
// is reported as one the run would start.
func TestApplyNoopRestartsNothing(t *testing.T) {
	t.Parallel()
	// A duration no other process sleeps: the marker in its command line.
	marker := fmt.Sprintf("3000.%09d", time.Now().UnixNano()%1e9)
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[service]]\nname = \"sleeper\"\nrun = [\"/bin/sleep\", \"" + marker + "\"]\n",
	})
	root := t.TempDir()
	r := fleet.Apply(t, site, root, "n1", false)
	if r.Summary.Failed > 0 {
		t.Fatalf("first run failed: %+v", r.Events)
	}
	pids := markedPIDs(t, marker)
	if len(pids) != 1 {
		t.Fatalf("after the first run %d processes carry the marker, want 1", len(pids))
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pids[0])

	noop := fleet.Apply(t, site, root, "n1", true)
	if got := markedPIDs(t, marker); len(got) != 0 {
		t.Errorf("a noop run started the killed service again: pids %v", got)
	}
	// It read the state without supervising: the service is simply not
	// running and would be started. A supervisor built for the run would
	// have adopted the dead record and put the service in backoff, which
	// is a change to the host, and reported that instead.
	if len(noop.Events) != 1 || noop.Events[0].Status != agent.Changed || len(noop.Events[0].Changes) != 1 ||
		noop.Events[0].Changes[0].From != "stopped" || noop.Events[0].Changes[0].To != "running" {
		t.Errorf("noop events = %+v, want service:sleeper changed, ensure stopped → running", noop.Events)
	}
}

// markedPIDs lists the live processes whose command line holds marker.
func markedPIDs(t *testing.T, marker string) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), marker) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
			continue // a zombie nobody reaped yet
		}
		pids = append(pids, pid)
	}
	return pids
}

// waitGone waits (bounded) until pid has exited.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for range 500 {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d did not exit", pid)
}
