package resources

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRenderSystemdUnitGolden renders the unit of each case from its
// catalog attributes and compares it with testdata/service/NAME.service
// (go test -update rewrites them).
func TestRenderSystemdUnitGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		attrs map[string]any
	}{
		{"minimal", map[string]any{"run": []string{"/usr/bin/web"}}},
		{"full", map[string]any{
			"run": []string{"/usr/bin/web", "--port", "8080"}, "user": "www-data", "group": "www-data", "dir": "/srv/web",
			"env": map[string]string{"PORT": "8080", "GREETING": "hello world"}, "restart": "never",
			"stop_signal": "SIGQUIT", "stop_timeout": "1500ms", "enable": true,
		}},
		{"quoting", map[string]any{
			"run": []string{"/opt/my app/bin/run", "--name=100%", "$HOME", `say "hi"`, `back\slash`, "two\nlines", ";", "-x", "", "tab\there"},
			"dir": "/srv/50%",
			"env": map[string]string{"QUOTED": `a "b" $c %d \e`, "MULTI": "1\n2"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := res("service", tc.name, tc.attrs)
			r.Attrs["provider"] = "systemd"
			w, err := parseService(&r)
			if err != nil {
				t.Fatal(err)
			}
			got := renderSystemdUnit(w.id, w.spec)
			golden := filepath.Join("testdata/service", tc.name+".service")
			if updatingGolden() {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("renderSystemdUnit(%s) mismatch (-want +got):\n%s", tc.name, diff)
			}
		})
	}
}

func TestSystemdDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		10 * time.Second:        "10s",
		90 * time.Second:        "90s",
		1500 * time.Millisecond: "1500ms",
		time.Microsecond:        "1ms",
	} {
		if got := systemdDuration(d); got != want {
			t.Errorf("systemdDuration(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestUnitDiff(t *testing.T) {
	t.Parallel()
	a := "[Service]\nExecStart=/usr/bin/web\nEnvironment=\"TOKEN=old secret\"\nRestart=always\n"
	b := "[Service]\nExecStart=/usr/bin/web -v\nEnvironment=\"TOKEN=new secret\"\nRestart=always\n"
	want := "@@ -2,2 +2,2 @@\n-ExecStart=/usr/bin/web\n-Environment=TOKEN=(hidden)\n+ExecStart=/usr/bin/web -v\n+Environment=TOKEN=(hidden)\n"
	got := unitDiff([]byte(a), []byte(b))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unitDiff (-want +got):\n%s", diff)
	}
	if strings.Contains(got, "secret") {
		t.Error("the diff shows an environment value")
	}
}

func TestParseSystemctlShow(t *testing.T) {
	t.Parallel()
	got, err := parseSystemctlShow([]byte("LoadState=loaded\nActiveState=active\nUnitFileState=enabled\nNeedDaemonReload=no\nEnvironment=A=1 B=2\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled", "NeedDaemonReload": "no", "Environment": "A=1 B=2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseSystemctlShow (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"Failed to connect to bus\n", "=value\n", "Key With Space=x\n"} {
		if p, err := parseSystemctlShow([]byte(bad)); err == nil {
			t.Errorf("parseSystemctlShow(%q) = %v, want an error", bad, p)
		}
	}
}

func FuzzParseSystemctlShow(f *testing.F) {
	f.Add([]byte("LoadState=loaded\nActiveState=active\nUnitFileState=enabled\nNeedDaemonReload=no\n"))
	f.Add([]byte("LoadState=not-found\r\nActiveState=inactive\r\nUnitFileState=\r\n"))
	f.Add([]byte("ExecStart={ path=/bin/x ; argv[]=/bin/x a=b ; }\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		props, err := parseSystemctlShow(out)
		if err != nil {
			return
		}
		lines := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			lines[strings.TrimSuffix(l, "\r")] = true
		}
		for k, v := range props {
			if k == "" || strings.ContainsAny(k, "=\n \t") {
				t.Fatalf("parseSystemctlShow(%q): bad key %q", out, k)
			}
			if !lines[k+"="+v] {
				t.Fatalf("parseSystemctlShow(%q): %s=%s is not a line of the input", out, k, v)
			}
		}
	})
}

// fakeSystemctl stands in for systemctl inside a sandbox root (RunCommand
// runs a root's own /usr/bin/systemctl). It keeps each unit's state in
// files under ROOT/fake-systemd, logs every call but show (which, like a
// Check, must leave the host as it is), and, like systemd, knows a unit
// only after a daemon-reload and refuses to start one it does not know.
const fakeSystemctl = `#!/bin/sh
state="$HERD_ROOT/fake-systemd"
cmd=$1
for a; do unit=$a; done
if [ "$cmd" != show ]; then
	mkdir -p "$state"
	echo "$*" >> "$state/calls"
fi
case $cmd in
daemon-reload)
	for f in "$HERD_ROOT"/etc/systemd/system/*.service; do
		[ -e "$f" ] && cp "$f" "$state/$(basename "$f").loaded"
	done ;;
start|restart)
	[ -e "$state/$unit.loaded" ] || { echo "Unit $unit not found." >&2; exit 5; }
	echo active > "$state/$unit.active" ;;
try-restart) ;;
stop) echo inactive > "$state/$unit.active" ;;
enable) echo enabled > "$state/$unit.enabled" ;;
disable) echo disabled > "$state/$unit.enabled" ;;
show)
	if [ -e "$state/$unit.loaded" ]; then echo LoadState=loaded; else echo LoadState=not-found; fi
	echo "ActiveState=$(cat "$state/$unit.active" 2>/dev/null || echo inactive)"
	echo "UnitFileState=$(cat "$state/$unit.enabled" 2>/dev/null || echo disabled)"
	if [ -e "$state/$unit.loaded" ] && ! cmp -s "$HERD_ROOT/etc/systemd/system/$unit" "$state/$unit.loaded"; then
		echo NeedDaemonReload=yes
	else
		echo NeedDaemonReload=no
	fi ;;
*) echo "fake systemctl: unknown command $cmd" >&2; exit 1 ;;
esac
`

// newSystemdHost returns a sandbox host with the stand-in systemctl and a
// Service that believes systemd manages it.
func newSystemdHost(t *testing.T) (*Host, *Service) {
	t.Helper()
	h, _ := newTestHost(t)
	installFakeSystemctl(t, h)
	return h, &Service{systemd: func(string) error { return nil }}
}

// installFakeSystemctl puts the stand-in systemctl into h's root.
func installFakeSystemctl(t *testing.T, h *Host) {
	t.Helper()
	p := filepath.Join(h.Root, "usr/bin/systemctl")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(fakeSystemctl), 0o755); err != nil {
		t.Fatal(err)
	}
}

// systemctlCalls returns the stand-in's calls since the last time.
func systemctlCalls(t *testing.T, h *Host) []string {
	t.Helper()
	p := filepath.Join(h.Root, "fake-systemd/calls")
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestSystemdProvider walks a systemd service through runs against the
// stand-in systemctl: the unit file, daemon-reload, enable and the
// start/restart/stop that each change calls for, in that order.
func TestSystemdProvider(t *testing.T) {
	t.Parallel()
	h, sv := newSystemdHost(t)
	attrs := func(extra map[string]any) map[string]any {
		a := map[string]any{"provider": "systemd", "run": []string{"/usr/bin/web"}, "enable": true}
		for k, v := range extra {
			a[k] = v
		}
		return a
	}
	steps := []struct {
		name      string
		attrs     map[string]any
		wantAttrs []string // the attributes of the changes Check saw
		wantCalls []string
	}{
		{"install and start", attrs(nil), []string{"unit", "enable", "ensure"},
			[]string{"daemon-reload", "enable -- web.service", "start -- web.service"}},
		{"in sync", attrs(nil), nil, nil},
		{"changed unit restarts", attrs(map[string]any{"env": map[string]string{"A": "1"}}), []string{"unit"},
			[]string{"daemon-reload", "restart -- web.service"}},
		{"disable", attrs(map[string]any{"env": map[string]string{"A": "1"}, "enable": false}), []string{"enable"},
			[]string{"disable -- web.service"}},
		{"stop", attrs(map[string]any{"env": map[string]string{"A": "1"}, "enable": false, "ensure": "stopped"}), []string{"ensure"},
			[]string{"stop -- web.service"}},
		{"unit changes while stopped: no start", attrs(map[string]any{"enable": false, "ensure": "stopped"}), []string{"unit"},
			[]string{"daemon-reload"}},
	}
	unitPath := filepath.Join(h.Root, "etc/systemd/system/web.service")
	for _, st := range steps {
		r := res("service", "web", st.attrs)
		var got []string
		for _, c := range serviceRun(t, sv, h, &r) {
			got = append(got, c.Attr)
		}
		if diff := cmp.Diff(st.wantAttrs, got); diff != "" {
			t.Errorf("%s: changed attributes (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.wantCalls, systemctlCalls(t, h)); diff != "" {
			t.Errorf("%s: systemctl calls (-want +got):\n%s", st.name, diff)
		}
		w, _ := parseService(&r)
		if b, err := os.ReadFile(unitPath); err != nil || string(b) != string(renderSystemdUnit(r.ID, w.spec)) {
			t.Errorf("%s: unit file = %q, %v; want the rendered unit", st.name, b, err)
		}
	}
	// The replaced units are kept in the content store.
	if saved := h.Content.(*dirContent).log; len(saved) != 2 || saved[0] != "/etc/systemd/system/web.service" {
		t.Errorf("content store got %q, want the two replaced units", saved)
	}
}

// TestSystemdProviderReloadsAStaleUnit: the unit file is right, but
// systemd still has an older one loaded (a daemon-reload failed in an
// earlier run). Check sees it and Apply reloads and restarts.
func TestSystemdProviderReloadsAStaleUnit(t *testing.T) {
	t.Parallel()
	h, sv := newSystemdHost(t)
	r := res("service", "web", map[string]any{"provider": "systemd", "run": []string{"/usr/bin/web"}})
	serviceRun(t, sv, h, &r)
	systemctlCalls(t, h)
	stale := filepath.Join(h.Root, "fake-systemd/web.service.loaded")
	if err := os.WriteFile(stale, []byte("[Service]\nExecStart=/usr/bin/old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changes := serviceRun(t, sv, h, &r)
	want := []Change{{Attr: "unit", From: "changed on disk", To: "reloaded", Action: Update}}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"daemon-reload", "restart -- web.service"}, systemctlCalls(t, h)); diff != "" {
		t.Errorf("systemctl calls (-want +got):\n%s", diff)
	}
}

func TestSystemdProviderForeignUnit(t *testing.T) {
	t.Parallel()
	h, sv := newSystemdHost(t)
	ctx := context.Background()
	// A unit Herd did not write and does not know: without run, it cannot
	// write one either.
	r := res("service", "nginx", map[string]any{"provider": "systemd"})
	if _, err := sv.Check(ctx, h, &r); err == nil || !strings.Contains(err.Error(), "systemd has no unit nginx.service") {
		t.Errorf("Check of an unknown unit = %v, want systemd has no unit nginx.service", err)
	}
	// A known one is started and refreshed, its file left alone.
	if err := os.MkdirAll(filepath.Join(h.Root, "fake-systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.Root, "fake-systemd/nginx.service.loaded"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	serviceRun(t, sv, h, &r)
	if err := sv.Refresh(ctx, h, &r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"start -- nginx.service", "restart -- nginx.service"}, systemctlCalls(t, h)); diff != "" {
		t.Errorf("systemctl calls (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(h.Root, "etc/systemd/system/nginx.service")); !os.IsNotExist(err) {
		t.Errorf("a unit file was written for a service without run: %v", err)
	}
	// With ensure owned by another tool, a refresh restarts it only if it
	// runs.
	r.Attrs["ignore"] = []string{"ensure"}
	if err := sv.Refresh(ctx, h, &r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"try-restart -- nginx.service"}, systemctlCalls(t, h)); diff != "" {
		t.Errorf("systemctl calls (-want +got):\n%s", diff)
	}
}

func TestSystemdProviderRefusesHealth(t *testing.T) {
	t.Parallel()
	h, sv := newSystemdHost(t)
	r := res("service", "web", map[string]any{"provider": "systemd", "run": []string{"/usr/bin/web"}, "health.tcp": "127.0.0.1:80"})
	if _, err := sv.Check(context.Background(), h, &r); err == nil || !strings.Contains(err.Error(), "health checks need provider herd") {
		t.Errorf("Check = %v, want health checks need provider herd", err)
	}
}

// TestSystemdNotManaging checks the provider where systemd does not
// manage the host root: Check reads only, and Apply fails, saying why,
// without touching the host.
func TestSystemdNotManaging(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	sv := &Service{}
	why := systemdManages(h.Root)
	if why == nil {
		t.Fatal("systemd manages a sandbox root")
	}
	r := res("service", "web", map[string]any{"provider": "systemd", "run": []string{"/usr/bin/web"}})
	ctx := context.Background()
	before := treeHash(t, h.Root)
	p, err := sv.Check(ctx, h, &r)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	want := []Change{
		{Attr: "unit", To: "/etc/systemd/system/web.service", Action: Create},
		{Attr: "ensure", From: "unknown", To: "running", Action: Update},
	}
	if diff := cmp.Diff(want, p.Changes); diff != "" {
		t.Errorf("Check changes (-want +got):\n%s", diff)
	}
	err = sv.Apply(ctx, h, p)
	if err == nil || !strings.Contains(err.Error(), "service web: provider systemd: "+why.Error()) {
		t.Errorf("Apply = %v, want service web: provider systemd: %v", err, why)
	}
	if err := sv.Refresh(ctx, h, &r); err == nil || !strings.Contains(err.Error(), why.Error()) {
		t.Errorf("Refresh = %v, want %v", err, why)
	}
	if treeHash(t, h.Root) != before {
		t.Error("Apply changed the host although systemd does not manage it")
	}
	if comm, _ := pid1Comm(); comm != "systemd" && !strings.Contains(why.Error(), "systemd is not running (PID 1 is "+comm+")") {
		t.Errorf("systemdManages = %v, want it to name PID 1 (%s)", why, comm)
	}
}

// TestSystemdReal runs a unit on this machine's own systemd: it writes
// /etc/systemd/system/herd-test-*.service, starts, restarts and stops it,
// and removes it again.
func TestSystemdReal(t *testing.T) {
	t.Parallel()
	if err := systemdManages("/"); err != nil {
		t.Skip(err.Error())
	}
	if os.Geteuid() != 0 {
		t.Skip("managing systemd units needs root")
	}
	name := "herd-test-" + strings.ReplaceAll(filepath.Base(t.TempDir()), "/", "")
	h := &Host{Root: "/", Run: func(ctx context.Context, c Cmd) (Result, error) { return RunCommand(ctx, "/", c) }}
	ctx := context.Background()
	t.Cleanup(func() {
		RunCommand(ctx, "/", Cmd{Argv: []string{systemctlPath, "stop", name + ".service"}})
		os.Remove("/etc/systemd/system/" + name + ".service")
		RunCommand(ctx, "/", Cmd{Argv: []string{systemctlPath, "daemon-reload"}})
	})
	sv := &Service{}
	r := res("service", name, map[string]any{"provider": "systemd", "run": []string{"/bin/sleep", "300"}})
	serviceRun(t, sv, h, &r)
	if err := sv.Refresh(ctx, h, &r); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	r.Attrs["env"] = map[string]string{"A": "1"}
	serviceRun(t, sv, h, &r)
	r.Attrs["ensure"] = "stopped"
	serviceRun(t, sv, h, &r)
}
