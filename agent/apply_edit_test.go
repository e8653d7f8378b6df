package agent_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// editSite declares line, ini, cron, sysctl and mount resources (issue
// 13), several of them on one file that a file resource manages the mode
// of, for a masterless apply in a sandbox root.
var editSite = map[string]string{
	"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
	"roles/r.toml": `
[[file]]
path = "/etc/app.conf"
mode = "0600"

[[line]]
name = "note"
path = "/etc/app.conf"
line = "# managed in part by herd"

[[line]]
name = "legacy"
path = "/etc/app.conf"
match = "^legacy"
ensure = "absent"

[[ini]]
name = "port"
path = "/etc/app.conf"
section = "server"
setting = "port"
value = "8080"

[[ini]]
name = "workers"
path = "/etc/app.conf"
section = "server"
setting = "workers"
value = "{{ .node | len }}"

[[ini]]
name = "log"
path = "/etc/app.conf"
section = "log"
setting = "level"
value = "info"

[[cron]]
name = "backup"
schedule = "30 2 * * *"
command = "/usr/local/bin/backup >/dev/null 2>&1"
environment = { MAILTO = "ops@example.com" }

[[sysctl]]
name = "net.ipv4.ip_forward"
value = "1"

[[mount]]
name = "/srv/data"
device = "UUID=5678-ef01"
fstype = "xfs"
options = "noatime"
pass = 2
`,
}

// TestApplyEditTypes converges the edit types through the real engine
// (resources in parallel), then runs again: every resource is in sync,
// every edit survived the others on the same file, and the rest of each
// edited file is as it was.
func TestApplyEditTypes(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, editSite)
	root := t.TempDir()
	write := func(p, content string) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/app.conf", "; app settings\n[server]\nport = 80\nlegacy = yes\n")
	write("etc/fstab", "# fstab\nUUID=1 / ext4 defaults 0 1\n")
	write("proc/sys/net/ipv4/ip_forward", "0\n")
	for _, d := range []string{"etc/cron.d", "etc/sysctl.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	first := fleet.MustApply(t, site, root, "web-01")
	for _, e := range first.Events {
		if e.Status != agent.Changed {
			t.Errorf("first run: %s is %s, want changed", e.ID, e.Status)
		}
	}
	again := fleet.Apply(t, site, root, "web-01", false)
	for _, e := range again.Events {
		if e.Status != agent.InSync {
			t.Errorf("second run: %s is %s %s %+v", e.ID, e.Status, e.Error, e.Changes)
		}
	}
	want := "; app settings\n[server]\nport = 8080\nworkers = 6\n# managed in part by herd\n\n[log]\nlevel = info\n"
	got, err := os.ReadFile(filepath.Join(root, "etc/app.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// The order of appended lines depends on which resource ran first;
	// the set of lines does not.
	if gl, wl := sortedLines(string(got)), sortedLines(want); gl != wl {
		t.Errorf("etc/app.conf = %q, want the lines of %q", got, want)
	}
	if !strings.HasPrefix(string(got), "; app settings\n[server]\nport = 8080\n") {
		t.Errorf("etc/app.conf = %q: its first lines moved", got)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/app.conf")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("etc/app.conf mode = %v, %v; want 0600 (file:/etc/app.conf)", fi.Mode(), err)
	}
	fleet.AssertFile(t, root, "etc/cron.d/backup", "30 2 * * * root /usr/local/bin/backup >/dev/null 2>&1")
	fleet.AssertFile(t, root, "proc/sys/net/ipv4/ip_forward", "1")
	fleet.AssertFile(t, root, "etc/sysctl.d/60-herd-net.ipv4.ip_forward.conf", "net.ipv4.ip_forward = 1")
	fleet.AssertFile(t, root, "etc/fstab", "# fstab\nUUID=1 / ext4 defaults 0 1\nUUID=5678-ef01\t/srv/data\txfs\tnoatime\t0\t2\n")
}

func sortedLines(s string) string {
	ls := strings.Split(s, "\n")
	slices.Sort(ls)
	return strings.Join(ls, "\n")
}
