package testkit_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herdcm/herd/testkit"
)

func TestNewSandboxHost(t *testing.T) {
	t.Parallel()
	root := testkit.NewSandboxHost(t)
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{".", os.ModeDir | 0o755},
		{"tmp", os.ModeDir | os.ModeSticky | 0o777},
		{"var/lib/dpkg/info", os.ModeDir | 0o755},
		{"var/lib/dpkg/updates", os.ModeDir | 0o755},
		{"var/lib/dpkg/triggers", os.ModeDir | 0o755},
		{"var/lib/dpkg/status", 0o644},
		{"var/lib/dpkg/available", 0o644},
		{"var/cache/herd", os.ModeDir | 0o700},
		{"etc/passwd", 0o644},
		{"etc/shadow", 0o640},
		{"etc/gshadow", 0o640},
		{"etc/login.defs", 0o644},
		{"etc/default/useradd", 0o644},
		{"etc/skel/.profile", 0o644},
		{"usr/bin", os.ModeDir | 0o755},
		{"home", os.ModeDir | 0o755},
	} {
		fi, err := os.Stat(filepath.Join(root, tc.path))
		if err != nil {
			t.Errorf("sandbox host: %v", err)
			continue
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s has mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"root:x:0:0:", "daemon:x:1:1:", "nobody:x:65534:65534:"} {
		if !strings.Contains(string(passwd), user) {
			t.Errorf("etc/passwd has no %s line:\n%s", user, passwd)
		}
	}
	if os.Geteuid() == 0 {
		fi, _ := os.Stat(filepath.Join(root, "etc/shadow"))
		if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != 42 {
			t.Errorf("etc/shadow belongs to group %d, want shadow (42)", gid)
		}
	}
}

// TestSandboxHostTools runs this machine's tools against a sandbox host:
// dpkg-query reads its empty database, and useradd --prefix adds a user
// with an id from its login.defs and a home from its skeleton.
func TestSandboxHostTools(t *testing.T) {
	t.Parallel()
	root := testkit.NewSandboxHost(t)
	if _, err := exec.LookPath("dpkg-query"); err == nil {
		out, err := exec.Command("dpkg-query", "--root="+root, "-W").CombinedOutput()
		if err != nil || len(out) != 0 {
			t.Errorf("dpkg-query on a sandbox host = %q, %v; want no packages, no error", out, err)
		}
	}
	if _, err := exec.LookPath("useradd"); err != nil || os.Geteuid() != 0 {
		t.Skip("useradd needs root and the shadow tools")
	}
	out, err := exec.Command("useradd", "--prefix", root, "--no-log-init", "--create-home", "--skel", filepath.Join(root, "etc/skel"), "alice").CombinedOutput()
	if err != nil {
		t.Fatalf("useradd --prefix on a sandbox host: %v\n%s", err, out)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !strings.Contains(string(passwd), "alice:x:1000:1000::/home/alice:/bin/sh") || !strings.Contains(string(group), "alice:x:1000:") {
		t.Errorf("after useradd, passwd:\n%s\ngroup:\n%s\nwant alice with uid and private group 1000 and shell /bin/sh", passwd, group)
	}
	if _, err := os.Stat(filepath.Join(root, "home/alice/.profile")); err != nil {
		t.Errorf("useradd --create-home in the sandbox: %v", err)
	}
}
