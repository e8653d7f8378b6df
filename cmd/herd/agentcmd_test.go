package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/testkit"
)

// TestAgentSite: `herd agent --site DIR --once` is a masterless run with
// apply's exit codes and no enrollment; server settings and a noop daemon
// are refused, not ignored.
func TestAgentSite(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"masterless\\n\"\n",
	})
	root := t.TempDir()
	args := []string{"agent", "--site", site, "--root", root, "--name", "n1", "--once"}
	out, stderr, code := herd(t, "", args...)
	if code != 2 || !strings.Contains(out, "1 changed") {
		t.Fatalf("herd agent --site --once exited %d, want 2:\n%s%s", code, out, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "motd")); string(b) != "masterless\n" {
		t.Errorf("motd = %q", b)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/herd/tls")); err == nil {
		t.Error("a masterless agent enrolled")
	}
	if _, _, code := herd(t, "", args...); code != 0 {
		t.Errorf("second run exited %d, want 0", code)
	}
	for _, bad := range [][]string{
		{"agent", "--site", site, "--root", root, "--server", "h:1"},
		{"agent", "--site", site, "--root", root, "--join-token", "x"},
		{"agent", "--site", site, "--root", root, "--noop"},
	} {
		if _, stderr, code := herd(t, "", bad...); code != nodecmd.ExitUsage {
			t.Errorf("herd %s exited %d, want %d:\n%s", strings.Join(bad, " "), code, nodecmd.ExitUsage, stderr)
		}
	}
}
