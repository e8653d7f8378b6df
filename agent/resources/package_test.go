package resources

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

// pkgCountRuns wraps h.Run to count the commands a type spawns.
func pkgCountRuns(h *Host) *atomic.Int64 {
	var n atomic.Int64
	run := h.Run
	h.Run = func(ctx context.Context, c Cmd) (Result, error) {
		n.Add(1)
		return run(ctx, c)
	}
	return &n
}

// newSandboxTestHost returns a test host whose root is a testkit sandbox.
func newSandboxTestHost(t *testing.T) (*Host, *testFiles) {
	t.Helper()
	h, files := newTestHost(t)
	testkit.InitSandboxHost(t, h.Root)
	return h, files
}

// dpkgRoot is why a test that installs or removes a package needs root:
// dpkg refuses those operations to anyone else, even under --root.
const dpkgRoot = "dpkg installs and removes packages only as root"

// pkgNeedDpkg skips a test that needs dpkg when this machine has none.
func pkgNeedDpkg(t *testing.T) {
	t.Helper()
	testkit.NeedTools(t, "dpkg", "dpkg-deb")
}

// pkgShip builds spec into a .deb the host can fetch and returns a package
// resource that installs it, as compile produces for source = "files/…".
func pkgShip(t *testing.T, files *testFiles, spec testkit.DebSpec, attrs map[string]any) catalogs.Resource {
	t.Helper()
	_, content := testkit.BuildDeb(t, spec)
	r := res("package", spec.Name, attrs)
	r.Attrs["source"] = "files/" + spec.Name + "_" + spec.Version + ".deb"
	r.Attrs["digest"] = files.add(content)
	return r
}

// pkgCheck runs Check and returns its changes as "attr: from → to".
func pkgCheck(t *testing.T, h *Host, typ Type, r *catalogs.Resource) (*Plan, []string) {
	t.Helper()
	p, err := typ.Check(context.Background(), h, r)
	if err != nil {
		t.Fatalf("Check(%s): %v", r.ID, err)
	}
	return p, changeLines(p)
}

// changeLines renders a plan's changes for comparison.
func changeLines(p *Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, fmt.Sprintf("%s %s: %s → %s", c.Action, c.Attr, c.From, c.To))
	}
	return out
}

// dpkgStatusOf returns the status record of name in the root's dpkg
// database, read fresh.
func dpkgStatusOf(t *testing.T, root, name string) (dpkgRecord, bool) {
	t.Helper()
	var c dpkgCache
	db, err := c.load(root)
	if err != nil {
		t.Fatal(err)
	}
	return db.find(name)
}

var helloSpec = testkit.DebSpec{
	Name: "herd-hello", Version: "1.0-1",
	Files:     map[string]string{"/usr/share/herd-hello/hello.txt": "hello\n", "/etc/herd-hello.conf": "greeting = hello\n"},
	Conffiles: []string{"/etc/herd-hello.conf"},
}

// TestPackageLifecycle walks one package through a host's life: installed
// from the site's .deb, checked in sync without a process, upgraded by
// version, downgraded, removed by hand (drift, seen in noop without a
// change), put back, removed leaving its configuration, and purged.
func TestPackageLifecycle(t *testing.T) {
	t.Parallel()
	pkgNeedDpkg(t)
	testkit.NeedRoot(t, dpkgRoot)
	h, files := newSandboxTestHost(t)
	runs := pkgCountRuns(h)
	typ := &Package{}
	ctx := context.Background()
	v2 := helloSpec
	v2.Version = "2.0-1"

	// Converge from nothing.
	r := pkgShip(t, files, helloSpec, nil)
	p, got := pkgCheck(t, h, typ, &r)
	if want := []string{"create ensure: absent → installed"}; !cmp.Equal(want, got) {
		t.Fatalf("Check on a fresh root (-want +got):\n%s", cmp.Diff(want, got))
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply: %v\n%s", err, p.Output)
	}
	if rec, ok := dpkgStatusOf(t, h.Root, "herd-hello"); !ok || rec.Version != "1.0-1" || rec.State != "installed" {
		t.Fatalf("after Apply, dpkg status has %+v, %v; want 1.0-1 installed", rec, ok)
	}
	if b, err := os.ReadFile(filepath.Join(h.Root, "usr/share/herd-hello/hello.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("the package's file in the root = %q, %v", b, err)
	}
	if left, _ := filepath.Glob(filepath.Join(h.Root, "var/cache/herd/*")); len(left) != 0 {
		t.Errorf("Apply left %v behind", left)
	}

	// Idempotence, and no process on the no-change path.
	before := runs.Load()
	for range 3 {
		if _, got := pkgCheck(t, h, typ, &r); len(got) != 0 {
			t.Fatalf("Check after Apply = %v, want in sync", got)
		}
	}
	if n := runs.Load() - before; n != 0 {
		t.Errorf("in-sync Checks spawned %d processes, want 0", n)
	}

	// A version: upgrade, then downgrade, each from its own .deb.
	up := pkgShip(t, files, v2, map[string]any{"ensure": "2.0-1"})
	p, got = pkgCheck(t, h, typ, &up)
	if want := []string{"update ensure: 1.0-1 → 2.0-1"}; !cmp.Equal(want, got) {
		t.Errorf("Check for an upgrade (-want +got):\n%s", cmp.Diff(want, got))
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply upgrade: %v\n%s", err, p.Output)
	}
	down := pkgShip(t, files, helloSpec, map[string]any{"ensure": "1.0-1"})
	pkgConverge(t, h, typ, &down)
	if rec, _ := dpkgStatusOf(t, h.Root, "herd-hello"); rec.Version != "1.0-1" {
		t.Errorf("after the downgrade dpkg has %s, want 1.0-1", rec.Version)
	}
	// An equal version written differently is in sync.
	same := pkgShip(t, files, helloSpec, map[string]any{"ensure": "0:1.0-1"})
	if _, got := pkgCheck(t, h, typ, &same); len(got) != 0 {
		t.Errorf("ensure 0:1.0-1 with 1.0-1 installed: %v, want in sync", got)
	}

	// Drift: removed by hand. Noop sees it and changes nothing.
	if out, err := exec.Command("dpkg", "--root="+h.Root, "--remove", "herd-hello").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --remove by hand: %v\n%s", err, out)
	}
	hash := treeHash(t, h.Root)
	p, got = pkgCheck(t, h, typ, &r)
	if want := []string{"create ensure: 1.0-1 (config-files) → installed"}; !cmp.Equal(want, got) {
		t.Errorf("Check after a removal by hand (-want +got):\n%s", cmp.Diff(want, got))
	}
	if treeHash(t, h.Root) != hash {
		t.Error("Check of a drifted package changed the host")
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply after drift: %v\n%s", err, p.Output)
	}
	if _, got := pkgCheck(t, h, typ, &r); len(got) != 0 {
		t.Errorf("Check after putting the package back = %v, want in sync", got)
	}

	// Removal keeps the configuration; purging drops it.
	absent := res("package", "herd-hello", map[string]any{"ensure": "absent"})
	p, got = pkgCheck(t, h, typ, &absent)
	if want := []string{"delete ensure: 1.0-1 → absent"}; !cmp.Equal(want, got) {
		t.Errorf("Check for removal (-want +got):\n%s", cmp.Diff(want, got))
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply removal: %v\n%s", err, p.Output)
	}
	if _, err := os.Stat(filepath.Join(h.Root, "etc/herd-hello.conf")); err != nil {
		t.Errorf("removal dropped the conffile: %v", err)
	}
	if _, got := pkgCheck(t, h, typ, &absent); len(got) != 0 {
		t.Errorf("absent with config-files left = %v, want in sync", got)
	}
	purged := res("package", "herd-hello", map[string]any{"ensure": "purged"})
	p, got = pkgCheck(t, h, typ, &purged)
	if want := []string{"delete ensure: 1.0-1 (config-files) → purged"}; !cmp.Equal(want, got) {
		t.Errorf("Check for purge (-want +got):\n%s", cmp.Diff(want, got))
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply purge: %v\n%s", err, p.Output)
	}
	if _, err := os.Stat(filepath.Join(h.Root, "etc/herd-hello.conf")); !os.IsNotExist(err) {
		t.Errorf("purge left the conffile: %v", err)
	}
	if rec, ok := dpkgStatusOf(t, h.Root, "herd-hello"); ok && rec.present() {
		t.Errorf("after purge dpkg still has %+v", rec)
	}
}

// TestPackageSourceMismatch checks that a .deb that is not the package or
// version asked for fails Apply with a message saying so, before dpkg runs.
func TestPackageSourceMismatch(t *testing.T) {
	t.Parallel()
	pkgNeedDpkg(t)
	h, files := newSandboxTestHost(t)
	ctx := context.Background()
	other := pkgShip(t, files, testkit.DebSpec{Name: "herd-other", Version: "1.0"}, nil)
	other.ID, other.Name = "package:herd-hello", "herd-hello"
	wrongVersion := pkgShip(t, files, helloSpec, map[string]any{"ensure": "3.0"})
	for _, tc := range []struct {
		r    catalogs.Resource
		want string
	}{
		{other, "the file is package herd-other, not herd-hello"},
		{wrongVersion, "the file is version 1.0-1, but ensure wants 3.0"},
	} {
		p, err := (&Package{}).Check(ctx, h, &tc.r)
		if err != nil {
			t.Fatal(err)
		}
		err = (&Package{}).Apply(ctx, h, p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Apply(%v) = %v, want an error containing %q", tc.r.Attrs, err, tc.want)
		}
	}
	// A file whose content does not match its digest is never installed.
	r := pkgShip(t, files, helloSpec, nil)
	files.mu.Lock()
	files.m[r.String("digest")] = []byte("not the package")
	files.mu.Unlock()
	p, err := (&Package{}).Check(ctx, h, &r)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&Package{}).Apply(ctx, h, p); err == nil || !strings.Contains(err.Error(), "content has digest") {
		t.Errorf("Apply of a corrupt .deb = %v, want a digest mismatch", err)
	}
}

// TestPackageFromApt checks the apt path in a sandbox root, which has no
// package lists: latest asks apt-cache (the only Check that spawns) without
// writing apt's cache, and Apply fails saying apt cannot find the package.
func TestPackageFromApt(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "apt-get", "apt-cache")
	h, _ := newSandboxTestHost(t)
	runs := pkgCountRuns(h)
	ctx := context.Background()
	typ := &Package{}

	r := res("package", "herd-no-such-package", map[string]any{"ensure": "latest"})
	hash := treeHash(t, h.Root)
	p, got := pkgCheck(t, h, typ, &r)
	if want := []string{"create ensure: absent → latest"}; !cmp.Equal(want, got) {
		t.Errorf("Check latest (-want +got):\n%s", cmp.Diff(want, got))
	}
	if runs.Load() != 1 {
		t.Errorf("Check latest spawned %d processes, want 1 (apt-cache policy)", runs.Load())
	}
	if treeHash(t, h.Root) != hash {
		t.Error("Check latest changed the host (apt-cache wrote its cache?)")
	}
	err := typ.Apply(ctx, h, p)
	if err == nil || !strings.Contains(err.Error(), "installing herd-no-such-package with apt-get") || !strings.Contains(err.Error(), "Unable to locate package") {
		t.Errorf("Apply in a sandbox without lists = %v, want apt's own reason", err)
	}
	if !strings.Contains(p.Output, "Unable to locate package") {
		t.Errorf("Apply's output = %q, want apt's output", p.Output)
	}

	// Installed, with no candidate known: latest is what is installed.
	status := "Package: herd-local\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0\n"
	if err := os.WriteFile(filepath.Join(h.Root, dpkgStatusPath), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	r = res("package", "herd-local", map[string]any{"ensure": "latest"})
	if _, got := pkgCheck(t, h, typ, &r); len(got) != 0 {
		t.Errorf("latest, installed, no candidate = %v, want in sync", got)
	}
}

func TestParseAptPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ out, want string }{
		{"nginx:\n  Installed: (none)\n  Candidate: 1.22.1-9\n  Version table:\n     1.22.1-9 500\n", "1.22.1-9"},
		{"nginx:\n  Installed: 1.0\n  Candidate: (none)\n", ""},
		{"", ""},
	} {
		if got := parseAptPolicy([]byte(tc.out)); got != tc.want {
			t.Errorf("parseAptPolicy(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

// TestPackageCheckStates checks the plan for every state dpkg can leave a
// package in, on a status file written by hand: no dpkg needed.
func TestPackageCheckStates(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	data, err := os.ReadFile("testdata/dpkg/status")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h.Root, "var/lib/dpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.Root, dpkgStatusPath), data, 0o644); err != nil {
		t.Fatal(err)
	}
	runs := pkgCountRuns(h)
	typ := &Package{}
	for _, tc := range []struct {
		name   string
		attrs  map[string]any
		want   []string
		reinst bool
	}{
		{"adduser", nil, nil, false},
		{"adduser", map[string]any{"ensure": "present"}, nil, false},
		{"adduser", map[string]any{"ensure": "3.134"}, nil, false},
		{"adduser", map[string]any{"ensure": "3.135"}, []string{"update ensure: 3.134 → 3.135"}, false},
		{"adduser", map[string]any{"ensure": "absent"}, []string{"delete ensure: 3.134 → absent"}, false},
		{"adduser", map[string]any{"ensure": "absent", "ignore": []string{"ensure"}}, nil, false},
		{"libc6:i386", map[string]any{"ensure": "2.36-9+deb12u10"}, nil, false},
		{"libc6:arm64", nil, []string{"create ensure: absent → installed"}, false},
		{"nginx-common", nil, []string{"create ensure: 1.22.1-9 (config-files) → installed"}, false},
		{"nginx-common", map[string]any{"ensure": "absent"}, nil, false},
		{"nginx-common", map[string]any{"ensure": "purged"}, []string{"delete ensure: 1.22.1-9 (config-files) → purged"}, false},
		{"broken-tool", nil, []string{"update ensure: 0.9~rc1-1 (half-installed) → installed"}, true},
		{"broken-tool", map[string]any{"ensure": "absent"}, []string{"delete ensure: 0.9~rc1-1 (half-installed) → absent"}, false},
		{"half-configured-tool", map[string]any{"ensure": "1:2.0-3"}, []string{"update ensure: 1:2.0-3 (half-configured) → 1:2.0-3"}, true},
		{"held-tool", nil, nil, false},
		{"man-db", nil, nil, false},
		{"removed-tool", map[string]any{"ensure": "purged"}, nil, false},
		{"removed-tool", nil, []string{"create ensure: absent → installed"}, false},
		{"nginx", map[string]any{"ensure": "purged"}, nil, false},
	} {
		r := res("package", tc.name, tc.attrs)
		p, got := pkgCheck(t, h, typ, &r)
		if !cmp.Equal(tc.want, got) {
			t.Errorf("Check(%s %v) (-want +got):\n%s", tc.name, tc.attrs, cmp.Diff(tc.want, got))
		}
		if st, ok := p.State.(*packageState); ok && st.reinstall != tc.reinst {
			t.Errorf("Check(%s %v): reinstall = %v, want %v", tc.name, tc.attrs, st.reinstall, tc.reinst)
		}
	}
	if n := runs.Load(); n != 0 {
		t.Errorf("Checks spawned %d processes, want 0", n)
	}
	if typ.status.parses != 1 {
		t.Errorf("the status file was parsed %d times, want once", typ.status.parses)
	}
}

func TestPackageCheckErrors(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	for _, tc := range []struct {
		name  string
		attrs map[string]any
		want  string
	}{
		{"-oDir=/", nil, "not a Debian package name"},
		{"Nginx", nil, "not a Debian package name"},
		{"nginx", map[string]any{"provider": "dnf"}, `provider "dnf" is not supported`},
		{"nginx", map[string]any{"ensure": "instaled"}, `ensure "instaled": want installed, absent, purged, latest or a Debian version (version does not start with a digit)`},
		{"nginx", map[string]any{"source": "files/nginx.deb"}, "source files/nginx.deb has no digest"},
	} {
		r := res("package", tc.name, tc.attrs)
		_, err := (&Package{}).Check(context.Background(), h, &r)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%s %v) = %v, want an error containing %q", tc.name, tc.attrs, err, tc.want)
		}
	}
}

// TestParseRealDpkgStatus compares the in-process parse of this machine's
// dpkg database with what dpkg-query says of it.
func TestParseRealDpkgStatus(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("dpkg-query is not installed on this machine")
	}
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Package}:${Architecture} ${Version} ${db:Status-Status}\n").Output()
	if err != nil {
		t.Skipf("dpkg-query on this machine: %v", err)
	}
	var c dpkgCache
	db, err := c.load("/")
	if err != nil {
		t.Fatalf("reading this machine's dpkg database: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 {
			f = append(f[:1], "", f[len(f)-1]) // a package without a version
		}
		name := strings.TrimSuffix(f[0], ":")
		rec, ok := db.find(name)
		if !ok || rec.Version != f[1] || rec.State != f[2] {
			t.Errorf("find(%q) = %+v, %v; dpkg-query says %s", name, rec, ok, l)
		}
	}
	t.Logf("%d packages agree with dpkg-query", len(lines))
}

// benchPackageHost returns a host whose dpkg database has 2,000
// installed packages, as on a real host, and 20 package resources in sync
// with it, half of them naming their version. The host fails the
// benchmark if anything spawns.
func benchPackageHost(b *testing.B) (*Host, []catalogs.Resource) {
	root := b.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var/lib/dpkg/updates"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, dpkgStatusPath), generateDpkgStatus(2000), 0o644); err != nil {
		b.Fatal(err)
	}
	h := &Host{Root: root, Run: func(context.Context, Cmd) (Result, error) {
		b.Fatal("an in-sync package Check spawned a process")
		return Result{}, nil
	}}
	var want []catalogs.Resource
	for i := range 20 {
		n := i * 97 // spread over the file
		attrs := map[string]any{}
		if i%2 == 0 {
			// The version generateDpkgStatus wrote for pkg-n.
			attrs["ensure"] = fmt.Sprintf("%d.%d.%d-%d+deb12u%d", n%7, n%13, n%29, n%5, n%3)
		}
		want = append(want, res("package", fmt.Sprintf("pkg-%04d", n), attrs))
	}
	return h, want
}

// BenchmarkPackageCheckInSync checks the 20 packages of benchPackageHost
// with one Package whose cache is warm: what every Check after a run's
// first costs. An op is the 20 Checks.
func BenchmarkPackageCheckInSync(b *testing.B) {
	h, want := benchPackageHost(b)
	typ := &Package{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for i := range want {
			p, err := typ.Check(ctx, h, &want[i])
			if err != nil || !p.InSync() {
				b.Fatalf("Check(%s) = %+v, %v; want in sync", want[i].ID, p, err)
			}
		}
	}
}

// BenchmarkPackageCheckRun is a whole run's package checking: a fresh
// Package, as resources.Types gives each run, reads and parses the status
// file of 2,000 stanzas once, then checks the 20 packages.
func BenchmarkPackageCheckRun(b *testing.B) {
	h, want := benchPackageHost(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		typ := &Package{}
		for i := range want {
			p, err := typ.Check(ctx, h, &want[i])
			if err != nil || !p.InSync() {
				b.Fatalf("Check(%s) = %+v, %v; want in sync", want[i].ID, p, err)
			}
		}
	}
}

// TestPackageAppliesOneAtATime installs several packages from concurrent
// goroutines, as the engine's parallel resources would: dpkg refuses a
// second process on its database, so the type must serialise them.
func TestPackageAppliesOneAtATime(t *testing.T) {
	pkgNeedDpkg(t)
	testkit.NeedRoot(t, "dpkg --root")
	h, files := newTestHost(t)
	testkit.InitSandboxHost(t, h.Root)
	typ := &Package{}
	var plans []*Plan
	for i := range 6 {
		name := fmt.Sprintf("herd-par-%d", i)
		_, deb := testkit.BuildDeb(t, testkit.DebSpec{Name: name, Version: "1.0", Files: map[string]string{"/usr/share/" + name + "/x": "x"}})
		d := files.add(deb)
		r := res("package", name, map[string]any{"name": name, "source": "files/" + name + ".deb", "digest": d})
		p, err := typ.Check(context.Background(), h, &r)
		if err != nil {
			t.Fatal(err)
		}
		plans = append(plans, p)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(plans))
	for i, p := range plans {
		wg.Go(func() { errs[i] = typ.Apply(context.Background(), h, p) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("package %d: %v", i, err)
		}
	}
}
