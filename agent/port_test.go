package agent_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit/fleet"
)

// webSysctls are the kernel parameters the example site's web role sets
// (roles/web.toml's sysctls), with the values a fresh kernel has.
var webSysctls = map[string]string{
	"net/core/somaxconn":       "128\n",
	"net/ipv4/tcp_fin_timeout": "60\n",
}

// webSandbox returns a sandbox root for the example site's web nodes: a
// Debian 12 layout plus the /proc/sys files its sysctls set, plain files
// standing in for a kernel's (a sandbox on this machine's kernel has none
// of its own, and nothing in it may reach the kernel).
func webSandbox(t *testing.T) string {
	t.Helper()
	root := sandbox(t)
	for rel, v := range webSysctls {
		p := filepath.Join(root, "proc/sys", rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestPortExampleWebRole is the port test of issue 13: the example site's
// web role, as a real site writes one (virtual hosts from a definition
// used twice, admins and their SSH keys from data with for_each, a cron
// job, sysctls, and a signed flat apt repository the site ships as a file
// tree, with a package installed by name from it), converges web-01 in a
// sandbox root with the real tools; the second run is all in sync; and the
// host holds what the site declares.
func TestPortExampleWebRole(t *testing.T) {
	needTools(t, "dpkg", "dpkg-deb", "apt-get", "gpgv", "useradd", "groupadd")
	root := webSandbox(t)
	// A hand-made port of another virtual host: the ini edits keep it.
	if err := os.MkdirAll(filepath.Join(root, "etc/herd-demo-web"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/herd-demo-web/ports.ini"), []byte("; ports of the virtual hosts\n[legacy]\nport = 9000\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	first := fleet.MustApply(t, exampleSite, root, "web-01")
	changed := fleet.Changed(first)
	for _, id := range []string{
		"file:/etc/herd-demo-web/sites/shop.conf", "file:/etc/herd-demo-web/sites/blog.conf",
		"ini:/etc/herd-demo-web/ports.ini: [shop] port", "ini:/etc/herd-demo-web/ports.ini: [blog] port",
		"user:carol", "user:dave", "authorized_key:carol@herd.example", "authorized_key:dave@herd.example",
		"cron:herd-demo-web-cleanup", "sysctl:net.core.somaxconn", "sysctl:net.ipv4.tcp_fin_timeout",
		"file:/var/lib/herd-demo-repo/InRelease", "apt_repository:herd-demo", "package:herd-demo-tools",
	} {
		if !changed[id] {
			t.Errorf("the first run did not change %s", id)
		}
	}

	second := fleet.Apply(t, exampleSite, root, "web-01", false)
	for _, e := range second.Events {
		if e.Status != agent.InSync || e.Refresh != "" {
			t.Errorf("second run: %s is %s %s %s %s", e.ID, e.Status, e.Refresh, e.Error, e.Cause)
		}
	}
	if len(second.Events) != len(first.Events) {
		t.Errorf("second run has %d events, the first %d", len(second.Events), len(first.Events))
	}

	// Virtual hosts: each its file and its section of the shared ports.ini.
	fleet.AssertFile(t, root, "etc/herd-demo-web/sites/shop.conf", "server_name = shop.herd.example www.shop.herd.example\n", "listen = 8081\n", "root = /var/www/shop\n")
	fleet.AssertFile(t, root, "etc/herd-demo-web/sites/blog.conf", "server_name = blog\n", "listen = 8082\n")
	fleet.AssertMode(t, root, "etc/herd-demo-web/sites/shop.conf", 0o644)
	ports, err := os.ReadFile(filepath.Join(root, "etc/herd-demo-web/ports.ini"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "; ports of the virtual hosts\n[legacy]\nport = 9000\n"; !strings.HasPrefix(string(ports), want) {
		t.Errorf("ports.ini lost what was there:\n%s", ports)
	}
	for _, s := range []string{"[shop]\nport = 8081\n", "[blog]\nport = 8082\n"} {
		if !strings.Contains(string(ports), s) {
			t.Errorf("ports.ini lacks %q:\n%s", s, ports)
		}
	}
	for _, d := range []string{"var/www/shop", "var/www/blog"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s is not a directory: %v", d, err)
		}
	}

	// Admins from data: accounts, and exactly their key, 0600 in a 0700 .ssh.
	fleet.AssertFile(t, root, "etc/passwd", "carol:x:", ":Carol Webops:/home/carol:/bin/bash\n", "dave:x:")
	keys := map[string]string{
		"carol": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL9gZcLfGc2KjIh3g+uQzG9nLBgZzAP55ZjJ3Q48SaYl carol@herd.example\n",
		"dave":  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEC2taM08ADMVcqC+4TK3Ncf6h76N2S/rw8QkixNtYX8 dave@herd.example\n",
	}
	for user, key := range keys {
		ak := "home/" + user + "/.ssh/authorized_keys"
		b, err := os.ReadFile(filepath.Join(root, ak))
		if err != nil || string(b) != key {
			t.Errorf("%s = %q, %v; want %q", ak, b, err, key)
		}
		fleet.AssertMode(t, root, ak, 0o600)
		fleet.AssertMode(t, root, "home/"+user+"/.ssh", 0o700)
	}

	// The cron job, the sysctls live (the sandbox's stand-ins) and persisted.
	fleet.AssertFile(t, root, "etc/cron.d/herd-demo-web-cleanup", "MAILTO=webops@herd.example\n",
		"17 3 * * * root find /var/log/herd-demo-web -name '*.log' -mtime +14 -delete\n")
	fleet.AssertMode(t, root, "etc/cron.d/herd-demo-web-cleanup", 0o644)
	for name, want := range map[string]string{"net.core.somaxconn": "4096", "net.ipv4.tcp_fin_timeout": "15"} {
		live := filepath.Join(root, "proc/sys", strings.ReplaceAll(name, ".", "/"))
		if b, err := os.ReadFile(live); err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s live = %q, %v; want %s", name, b, err, want)
		}
		fleet.AssertFile(t, root, "etc/sysctl.d/60-herd-"+name+".conf", name+" = "+want+"\n")
	}

	// The site's repository: the tree copied, the source and its key, and
	// the package installed by name from it, which dpkg knows.
	for _, f := range []string{"InRelease", "Release", "Packages", "herd-demo-tools_1.0_all.deb"} {
		want, err := os.ReadFile(filepath.Join(exampleSite, "files/repo", f))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(root, "var/lib/herd-demo-repo", f)); err != nil || string(got) != string(want) {
			t.Errorf("var/lib/herd-demo-repo/%s differs from the site's: %v", f, err)
		}
	}
	fleet.AssertFile(t, root, "etc/apt/sources.list.d/herd-demo.sources",
		"URIs: file:"+filepath.Join(root, "var/lib/herd-demo-repo")+"\n", "Suites: ./\n",
		"Signed-By: "+filepath.Join(root, "etc/apt/keyrings/herd-demo.asc")+"\n")
	key, _ := os.ReadFile(filepath.Join(exampleSite, "files/herd-demo-repo.asc"))
	fleet.AssertFile(t, root, "etc/apt/keyrings/herd-demo.asc", string(key))
	fleet.AssertFile(t, root, "usr/share/herd-demo-tools/README", "installed by name")
	out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Package} ${Version} ${Status}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, want := range []string{"herd-demo-tools 1.0 install ok installed", "herd-demo-web 1.0 install ok installed"} {
		if !slices.Contains(lines, want) {
			t.Errorf("dpkg-query lists %q, want a line %q", lines, want)
		}
	}
}
