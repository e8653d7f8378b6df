package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestNodeCommands drives herd node against a real fleet: deactivate
// hides a node from herd nodes but not from --all, activate brings it
// back, purge refuses without --yes and then deletes the node.
func TestNodeCommands(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":      "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml": "[[file]]\npath = \"/etc/motd\"\ncontent = \"{{ .node }}\\n\"\n",
	})
	f := fleet.NewFleet(t, site, 2)
	f.AwaitConverged(60*time.Second, nil)
	conn := []string{"--server", f.Addr(), "--admin-dir", f.AdminDir("ops")}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return herd(t, "", append(args, conn...)...)
	}
	nodes := func(args ...string) string {
		t.Helper()
		out, stderr, code := run(append([]string{"nodes"}, args...)...)
		if code != 0 {
			t.Fatalf("herd nodes %v: exit %d: %s", args, code, stderr)
		}
		return out
	}

	if out, stderr, code := run("node", "deactivate", "node-2"); code != 0 || !strings.Contains(out, "deactivated node-2") {
		t.Fatalf("herd node deactivate node-2: exit %d: %s%s", code, out, stderr)
	}
	if out := nodes(); strings.Contains(out, "node-2") || strings.Contains(out, "DEACTIVATED") || !strings.Contains(out, "node-1") {
		t.Errorf("herd nodes after deactivating node-2:\n%s\nwant node-1 only, and no DEACTIVATED column", out)
	}
	if out := nodes("--all"); !strings.Contains(out, "node-2") || !strings.Contains(out, "DEACTIVATED") {
		t.Errorf("herd nodes --all after deactivating node-2:\n%s\nwant node-2 and a DEACTIVATED column", out)
	}
	if out, stderr, code := run("node", "activate", "node-2"); code != 0 || !strings.Contains(out, "activated node-2") {
		t.Fatalf("herd node activate node-2: exit %d: %s%s", code, out, stderr)
	}
	if out := nodes(); !strings.Contains(out, "node-2") {
		t.Errorf("herd nodes after activating node-2:\n%s", out)
	}

	if _, stderr, code := run("node", "purge", "node-1"); code != 1 || !strings.Contains(stderr, "--yes") {
		t.Errorf("herd node purge without --yes: exit %d, %s; want 1 asking for --yes", code, stderr)
	}
	if out := nodes("--all"); !strings.Contains(out, "node-1") {
		t.Fatalf("a refused purge removed node-1:\n%s", out)
	}
	if out, stderr, code := run("node", "purge", "node-1", "--yes"); code != 0 || !strings.Contains(out, "purged node-1") {
		t.Fatalf("herd node purge node-1 --yes: exit %d: %s%s", code, out, stderr)
	}
	if out := nodes("--all"); strings.Contains(out, "node-1") {
		t.Errorf("herd nodes --all after purging node-1:\n%s", out)
	}
	for _, tt := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"node", "purge", "node-1", "--yes"}, 1, "purge node-1: the server knows no such node"},
		{[]string{"node", "deactivate", "nobody"}, 1, "deactivate nobody: the server knows no such node"},
		{[]string{"node", "deactivate"}, 64, "usage: herd node deactivate NAME"},
		{[]string{"node", "purge", "node-2", "--force"}, 64, "--help"},
	} {
		if _, stderr, code := run(tt.args...); code != tt.code || !strings.Contains(stderr, tt.says) {
			t.Errorf("herd %v: exit %d, %s; want %d saying %q", tt.args, code, stderr, tt.code, tt.says)
		}
	}
}

// TestServerRefusesNodeTTLs: node_purge_ttl without node_ttl, or shorter
// than it, is bad usage, from flags and from the config file alike.
func TestServerRefusesNodeTTLs(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{"nodes.toml": "[[node]]\nroles = []\n"})
	for _, tt := range []struct {
		name, config string
		args         []string
		says         string
	}{
		{name: "purge without ttl", args: []string{"--node-purge-ttl", "1h"}, says: "needs node_ttl"},
		{name: "purge shorter", args: []string{"--node-ttl", "2h", "--node-purge-ttl", "1h"}, says: "shorter than node_ttl"},
		{name: "negative", args: []string{"--node-ttl", "-1h"}, says: "0 (off) or more"},
		{name: "config file", config: "node_ttl = \"48h\"\nnode_purge_ttl = \"24h\"\n", says: "shorter than node_ttl"},
		{name: "bad environment pattern", args: []string{"--environments", "production,[x"}, says: "environments[1]"},
		{name: "bad default environment", config: "environments = [\"*\"]\ndefault_environment = \"a b\"\n", says: "default_environment"},
		{name: "default environment alone", args: []string{"--default-environment", "staging"}, says: "needs environments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := append([]string{"server", "--site", site, "--dir", dir, "--listen", "127.0.0.1:0", "--http-listen", "off"}, tt.args...)
			if tt.config != "" {
				cfg := filepath.Join(t.TempDir(), "server.toml")
				if err := os.WriteFile(cfg, []byte(tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", cfg)
			}
			if _, stderr, code := herd(t, "", args...); code != 64 || !strings.Contains(stderr, tt.says) {
				t.Errorf("herd %v: exit %d, %s; want 64 saying %q", args, code, stderr, tt.says)
			}
			if _, err := os.Stat(filepath.Join(dir, "herd.db")); !os.IsNotExist(err) {
				t.Errorf("a refused start made a store: %v", err)
			}
		})
	}
}
