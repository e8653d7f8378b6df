// Package packaging_test builds Herd's Debian packages with cmd/herd-pkg
// and checks them the way a Debian host would meet them: their metadata and
// contents with dpkg-deb, their life (install, reinstall, upgrade, remove,
// purge, maintainer scripts without systemd) with dpkg in a sandbox root,
// their units with systemd-analyze verify, and lintian where installed.
package packaging_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/testkit"
)

// version is what the test builds; upgrade is the higher version the
// upgrade is made to (the same payload, repacked).
const (
	version = "1.0.0~test1"
	upgrade = "1.0.0"
)

// TestDebianPackages builds both packages once and runs every check on
// them; the subtests share the packages and run in order.
func TestDebianPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries and two packages; skipped in -short")
	}
	testkit.NeedRoot(t, "dpkg installs into a sandbox root and useradd makes the herd user in it")
	testkit.NeedTools(t, "go", "dpkg", "dpkg-deb", "dpkg-query", "useradd", "deb-systemd-helper")
	src, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command("go", "run", ".", "--src", src, "--out", out, "--version", "v"+strings.ReplaceAll(version, "~", "-"))
	cmd.Dir = filepath.Join(src, "cmd", "herd-pkg")
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./cmd/herd-pkg: %v\n%s", err, msg)
	}
	arch := strings.TrimSpace(run(t, "dpkg", "--print-architecture"))
	agentDeb := filepath.Join(out, fmt.Sprintf("herd-agent_%s_%s.deb", version, arch))
	serverDeb := filepath.Join(out, fmt.Sprintf("herd_%s_%s.deb", version, arch))
	if got := strings.Fields(string(msg)); !slices.Equal(got, []string{agentDeb, serverDeb}) {
		t.Fatalf("herd-pkg printed %q, want the paths %s and %s", got, agentDeb, serverDeb)
	}

	t.Run("metadata", func(t *testing.T) { checkMetadata(t, agentDeb, serverDeb, arch) })
	t.Run("contents", func(t *testing.T) { checkContents(t, agentDeb, serverDeb) })
	t.Run("version", func(t *testing.T) { checkVersion(t, agentDeb, serverDeb) })
	t.Run("lifecycle", func(t *testing.T) { checkLifecycle(t, agentDeb, serverDeb) })
	t.Run("systemd-analyze", func(t *testing.T) { checkUnits(t, agentDeb, serverDeb) })
	t.Run("lintian", func(t *testing.T) { checkLintian(t, agentDeb, serverDeb) })
}

func checkMetadata(t *testing.T, agentDeb, serverDeb, arch string) {
	libc := regexp.MustCompile(`^libc6 \(>= 2\.[0-9]+\)$`)
	for _, tc := range []struct {
		deb, name string
		depends   []string // besides libc6
		conffiles string
	}{
		{agentDeb, "herd-agent", nil, "/etc/herd/agent.toml\n"},
		{serverDeb, "herd", []string{"passwd"}, "/etc/herd/server.toml\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := map[string]string{}
			for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Section", "Priority", "Depends", "Description"} {
				fields[f] = strings.TrimSpace(run(t, "dpkg-deb", "--field", tc.deb, f))
			}
			for f, want := range map[string]string{"Package": tc.name, "Version": version, "Architecture": arch, "Section": "admin", "Priority": "optional"} {
				if fields[f] != want {
					t.Errorf("%s: %s is %q, want %q", filepath.Base(tc.deb), f, fields[f], want)
				}
			}
			if fields["Maintainer"] == "" || fields["Description"] == "" {
				t.Errorf("%s: no Maintainer or Description: %v", filepath.Base(tc.deb), fields)
			}
			deps := strings.Split(fields["Depends"], ", ")
			if !libc.MatchString(deps[0]) || !slices.Equal(deps[1:], tc.depends) {
				t.Errorf("%s: Depends is %q, want libc6 (>= 2.N) then %q", filepath.Base(tc.deb), fields["Depends"], tc.depends)
			}
			// The libc6 floor is what the binary needs: this host's libc
			// satisfies it.
			host := strings.TrimSpace(run(t, "dpkg-query", "-W", "-f=${Version}", "libc6"))
			floor := strings.TrimSuffix(strings.TrimPrefix(deps[0], "libc6 (>= "), ")")
			if err := exec.Command("dpkg", "--compare-versions", host, "ge", floor).Run(); err != nil {
				t.Errorf("%s needs libc6 %s; this host has %s", filepath.Base(tc.deb), floor, host)
			}
			if got := run(t, "dpkg-deb", "--info", tc.deb, "conffiles"); got != tc.conffiles {
				t.Errorf("%s: conffiles = %q, want %q", filepath.Base(tc.deb), got, tc.conffiles)
			}
			for _, s := range []string{"postinst", "prerm", "postrm"} {
				if got := run(t, "dpkg-deb", "--info", tc.deb, s); !strings.HasPrefix(got, "#!/bin/sh\n") {
					t.Errorf("%s: %s does not start with #!/bin/sh:\n%s", filepath.Base(tc.deb), s, got)
				}
			}
		})
	}
}

// entry is one line of dpkg-deb --contents: mode, owner and path.
type entry struct{ Mode, Owner string }

func contents(t *testing.T, deb string) map[string]entry {
	t.Helper()
	got := map[string]entry{}
	for line := range strings.Lines(run(t, "dpkg-deb", "--contents", deb)) {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents %s: unexpected line %q", deb, line)
		}
		got[strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")] = entry{f[0], f[1]}
	}
	return got
}

func checkContents(t *testing.T, agentDeb, serverDeb string) {
	dir := func() entry { return entry{"drwxr-xr-x", "root/root"} }
	for _, tc := range []struct {
		deb  string
		want map[string]entry
	}{
		{agentDeb, map[string]entry{
			"/etc": dir(), "/etc/herd": dir(),
			"/etc/herd/agent.toml": {"-rw-------", "root/root"},
			"/usr":                 dir(), "/usr/bin": dir(),
			"/usr/bin/herd-agent": {"-rwxr-xr-x", "root/root"},
			"/usr/lib":            dir(), "/usr/lib/systemd": dir(), "/usr/lib/systemd/system": dir(),
			"/usr/lib/systemd/system/herd-agent.service": {"-rw-r--r--", "root/root"},
			"/usr/share": dir(), "/usr/share/doc": dir(), "/usr/share/doc/herd-agent": dir(),
			"/usr/share/doc/herd-agent/install.md":   {"-rw-r--r--", "root/root"},
			"/usr/share/doc/herd-agent/copyright":    {"-rw-r--r--", "root/root"},
			"/usr/share/doc/herd-agent/changelog.gz": {"-rw-r--r--", "root/root"},
			"/var":                                   dir(), "/var/lib": dir(),
			"/var/lib/herd": {"drwx------", "root/root"},
		}},
		{serverDeb, map[string]entry{
			"/etc": dir(), "/etc/herd": dir(),
			"/etc/herd/server.toml": {"-rw-r--r--", "root/root"},
			"/usr":                  dir(), "/usr/bin": dir(),
			"/usr/bin/herd": {"-rwxr-xr-x", "root/root"},
			"/usr/lib":      dir(), "/usr/lib/systemd": dir(), "/usr/lib/systemd/system": dir(),
			"/usr/lib/systemd/system/herd-server.service": {"-rw-r--r--", "root/root"},
			"/usr/share": dir(), "/usr/share/doc": dir(), "/usr/share/doc/herd": dir(),
			"/usr/share/doc/herd/install.md":   {"-rw-r--r--", "root/root"},
			"/usr/share/doc/herd/copyright":    {"-rw-r--r--", "root/root"},
			"/usr/share/doc/herd/changelog.gz": {"-rw-r--r--", "root/root"},
		}},
	} {
		if diff := cmp.Diff(tc.want, contents(t, tc.deb)); diff != "" {
			t.Errorf("dpkg-deb --contents %s (-want +got):\n%s", filepath.Base(tc.deb), diff)
		}
	}
}

// checkVersion runs each packaged binary's version --json: the version
// stamped at build is the package's.
func checkVersion(t *testing.T, agentDeb, serverDeb string) {
	for _, tc := range []struct{ deb, bin string }{{agentDeb, "herd-agent"}, {serverDeb, "herd"}} {
		dir := t.TempDir()
		run(t, "dpkg-deb", "--extract", tc.deb, dir)
		var got struct{ Version, Go, OS, Arch string }
		out := run(t, filepath.Join(dir, "usr/bin", tc.bin), "version", "--json")
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%s version --json: %v\n%s", tc.bin, err, out)
		}
		if got.Version != version || got.OS != "linux" || !strings.HasPrefix(got.Go, "go1.") {
			t.Errorf("%s version --json = %+v, want version %s on linux", tc.bin, got, version)
		}
	}
}

// newSandbox lays out a sandbox host whose dpkg database has this host's
// libc6 and passwd, which the packages depend on.
func newSandbox(t *testing.T) string {
	t.Helper()
	root := testkit.NewSandboxHost(t)
	var status strings.Builder
	for _, p := range []string{"libc6", "passwd"} {
		f := strings.Split(run(t, "dpkg-query", "-W", "-f=${Package}\t${Version}\t${Architecture}\t${Multi-Arch}", p), "\t")
		fmt.Fprintf(&status, "Package: %s\nStatus: install ok installed\nPriority: required\nSection: admin\n"+
			"Maintainer: herd tests <tests@herd.invalid>\nArchitecture: %s\nVersion: %s\n", f[0], f[2], f[1])
		if f[3] != "" {
			fmt.Fprintf(&status, "Multi-Arch: %s\n", f[3])
		}
		fmt.Fprintf(&status, "Description: this host's %s, recorded for a herd test sandbox\n\n", p)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(status.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// dpkg runs dpkg on root the way a chrootless bootstrap does: maintainer
// scripts run on this host with DPKG_ROOT=root and must not touch it.
func dpkg(t *testing.T, root string, args ...string) string {
	t.Helper()
	return run(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-confold"}, args...)...)
}

// hostState is what the packages' scripts could wrongly change on this
// host when run for a sandbox.
func hostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"/etc/passwd", "/etc/group"} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	for _, p := range []string{"/etc/systemd/system/multi-user.target.wants/herd-agent.service",
		"/etc/systemd/system/multi-user.target.wants/herd-server.service", "/var/lib/herd-server",
		"/var/lib/systemd/deb-systemd-helper-enabled/herd-agent.service.dsh-also"} {
		_, err := os.Lstat(p)
		fmt.Fprintf(&b, "%s exists: %v\n", p, err == nil)
	}
	return b.String()
}

func checkLifecycle(t *testing.T, agentDeb, serverDeb string) {
	root := newSandbox(t)
	before := hostState(t)
	at := func(p string) string { return filepath.Join(root, p) }

	dpkg(t, root, "--install", agentDeb, serverDeb)
	for _, p := range []string{"herd-agent", "herd"} {
		if got := run(t, "dpkg-query", "--root="+root, "-W", "-f=${Status} ${Version}", p); got != "install ok installed "+version {
			t.Errorf("after install, %s is %q", p, got)
		}
	}
	uid, gid := herdUser(t, root)
	if uid < 100 || uid > 999 {
		t.Errorf("herd's uid is %d: want a system uid (100–999 in the sandbox's login.defs)", uid)
	}
	wantDir(t, at("var/lib/herd"), 0o700, 0, 0)
	wantDir(t, at("var/lib/herd-server"), 0o750, uid, gid)
	for _, unit := range []string{"herd-agent.service", "herd-server.service"} {
		link := at("etc/systemd/system/multi-user.target.wants/" + unit)
		if target, err := os.Readlink(link); err != nil || target != "/usr/lib/systemd/system/"+unit {
			t.Errorf("%s is not enabled in the sandbox: readlink %s = %q, %v", unit, link, target, err)
		}
	}

	// Reinstalling runs every script again: nothing fails, nothing doubles.
	dpkg(t, root, "--install", agentDeb, serverDeb)
	if n := strings.Count(readFile(t, at("etc/passwd")), "\nherd:"); n != 1 {
		t.Errorf("after a reinstall etc/passwd has %d herd users, want 1", n)
	}
	if u, g := herdUser(t, root); u != uid || g != gid {
		t.Errorf("after a reinstall herd is %d:%d, want %d:%d", u, g, uid, gid)
	}

	// State and an admin's edits survive an upgrade.
	writeFile(t, at("var/lib/herd/state.db"), "the agent's state")
	writeFile(t, at("var/lib/herd-server/herd.db"), "the server's store")
	edited := readFile(t, at("etc/herd/agent.toml")) + "server = \"herd.example.com:8140\"\n"
	writeFile(t, at("etc/herd/agent.toml"), edited)
	dpkg(t, root, "--install", repack(t, agentDeb, upgrade), repack(t, serverDeb, upgrade))
	for _, p := range []string{"herd-agent", "herd"} {
		if got := run(t, "dpkg-query", "--root="+root, "-W", "-f=${Status} ${Version}", p); got != "install ok installed "+upgrade {
			t.Errorf("after the upgrade, %s is %q", p, got)
		}
	}
	wantFile(t, at("var/lib/herd/state.db"), "the agent's state")
	wantFile(t, at("var/lib/herd-server/herd.db"), "the server's store")
	wantFile(t, at("etc/herd/agent.toml"), edited)
	wantDir(t, at("var/lib/herd-server"), 0o750, uid, gid)

	// Remove keeps state and configuration; purge deletes them.
	dpkg(t, root, "--remove", "herd-agent", "herd")
	for _, p := range []string{"usr/bin/herd", "usr/bin/herd-agent", "usr/lib/systemd/system/herd-agent.service"} {
		if _, err := os.Lstat(at(p)); !os.IsNotExist(err) {
			t.Errorf("after remove, %s is still there (%v)", p, err)
		}
	}
	wantFile(t, at("var/lib/herd/state.db"), "the agent's state")
	wantFile(t, at("var/lib/herd-server/herd.db"), "the server's store")
	wantFile(t, at("etc/herd/agent.toml"), edited)
	for _, p := range []string{"herd-agent", "herd"} {
		if got := run(t, "dpkg-query", "--root="+root, "-W", "-f=${Status}", p); got != "deinstall ok config-files" {
			t.Errorf("after remove, %s is %q, want config-files", p, got)
		}
	}

	dpkg(t, root, "--purge", "herd-agent", "herd")
	for _, p := range []string{"var/lib/herd", "var/lib/herd-server", "etc/herd/agent.toml", "etc/herd/server.toml",
		"etc/systemd/system/multi-user.target.wants/herd-agent.service", "etc/systemd/system/multi-user.target.wants/herd-server.service"} {
		if _, err := os.Lstat(at(p)); !os.IsNotExist(err) {
			t.Errorf("after purge, %s is still there (%v)", p, err)
		}
	}
	// The user stays, as Debian leaves system users: files it owned may
	// remain anywhere.
	herdUser(t, root)

	if after := hostState(t); after != before {
		t.Errorf("installing into the sandbox changed this host (-before +after):\n%s", cmp.Diff(before, after))
	}
}

// repack returns deb with its version changed to v: the same payload and
// scripts as a newer release would bring them.
func repack(t *testing.T, deb, v string) string {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	run(t, "dpkg-deb", "--raw-extract", deb, tree)
	control := filepath.Join(tree, "DEBIAN/control")
	c := readFile(t, control)
	if !strings.Contains(c, "\nVersion: "+version+"\n") {
		t.Fatalf("%s: no Version: %s in\n%s", deb, version, c)
	}
	writeFile(t, control, strings.Replace(c, "\nVersion: "+version+"\n", "\nVersion: "+v+"\n", 1))
	out := filepath.Join(dir, strings.Replace(filepath.Base(deb), version, v, 1))
	run(t, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", tree, out)
	return out
}

func herdUser(t *testing.T, root string) (uid, gid int) {
	t.Helper()
	for line := range strings.Lines(readFile(t, filepath.Join(root, "etc/passwd"))) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) == 7 && f[0] == "herd" {
			if f[5] != "/var/lib/herd-server" || f[6] != "/usr/sbin/nologin" {
				t.Errorf("herd's home and shell are %s and %s, want /var/lib/herd-server and /usr/sbin/nologin", f[5], f[6])
			}
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			if !strings.Contains(readFile(t, filepath.Join(root, "etc/group")), "\nherd:x:"+f[3]+":") {
				t.Errorf("etc/group has no group herd with gid %s", f[3])
			}
			return uid, gid
		}
	}
	t.Fatalf("no user herd in %s/etc/passwd", root)
	return 0, 0
}

func wantDir(t *testing.T, p string, mode fs.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s is %v %d:%d, want a directory %v %d:%d", p, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}

func wantFile(t *testing.T, p, content string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != content {
		t.Errorf("%s = %q, %v; want %q", p, b, err, content)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkUnits installs both packages into a sandbox and verifies their units
// there with systemd-analyze: syntax, known settings, and the ExecStart
// binaries present at their paths.
func checkUnits(t *testing.T, agentDeb, serverDeb string) {
	testkit.NeedTools(t, "systemd-analyze")
	root := newSandbox(t)
	dpkg(t, root, "--install", agentDeb, serverDeb)
	// What the units need from a host beside the packages: the targets
	// they are ordered with (this host's), and kill for ExecReload at the
	// path Debian's usr-merged layout gives it.
	units := filepath.Join(root, "usr/lib/systemd/system")
	for _, pattern := range []string{"/usr/lib/systemd/system/*.target", "/usr/lib/systemd/system/*.slice"} {
		found, err := filepath.Glob(pattern)
		if err != nil || len(found) == 0 {
			t.Fatalf("no %s on this host (%v): systemd-analyze needs them", pattern, err)
		}
		for _, f := range found {
			if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
				continue // an alias link, or a dangling one
			}
			writeFile(t, filepath.Join(units, filepath.Base(f)), readFile(t, f))
		}
	}
	kill, err := exec.LookPath("kill")
	if err != nil {
		t.Fatalf("no kill on this host: %v", err)
	}
	killBin, err := os.ReadFile(kill)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/kill"), killBin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"herd-agent.service", "herd-server.service"} {
		cmd := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, "/usr/lib/systemd/system/"+unit)
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// checkLintian runs lintian when it is installed (CI does not install it:
// it is large and slow) and fails on its errors.
func checkLintian(t *testing.T, agentDeb, serverDeb string) {
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Skip("lintian is not installed; CI does not install it (apt-get install lintian)")
	}
	out, err := exec.Command("lintian", "--fail-on", "error", agentDeb, serverDeb).CombinedOutput()
	if err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}
	t.Logf("lintian:\n%s", out)
}

// run runs a command and returns its standard output, failing the test
// with its error output when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}
