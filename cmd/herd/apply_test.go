package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/testkit"
)

// TestApplyCommand runs `herd apply` on a small site (files and a guarded
// exec: nothing that needs root) into a temp root: exit 2 on the first run,
// 0 on the second; a hand edit shows in noop, is put back, and can be
// restored from `herd backups`.
func TestApplyCommand(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": `
[[file]]
path = "/app"
ensure = "directory"
mode = "0755"

[[file]]
path = "/app/app.conf"
content = "port = 80\n"
mode = "0640"

[[exec]]
name = "stamp"
command = ["/bin/sh", "-c", "date > \"$HERD_ROOT/app/stamp\""]
creates = "/app/stamp"
require = ["file:/app"]
`,
	})
	root := t.TempDir()
	args := []string{"apply", "--site", site, "--root", root, "--node", "n1"}
	out, stderr, code := herd(t, "", args...)
	if code != 2 {
		t.Fatalf("first run exited %d, want 2:\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"changed      file:/app/app.conf", "3 changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("first run output lacks %q:\n%s", want, out)
		}
	}
	if out, _, code := herd(t, "", args...); code != 0 || !strings.Contains(out, "3 in sync, 0 changed") {
		t.Fatalf("second run exited %d:\n%s", code, out)
	}

	conf := filepath.Join(root, "app/app.conf")
	if err := os.WriteFile(conf, []byte("port = 8080\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	out, _, code = herd(t, "", append(args, "--noop", "--diff")...)
	if code != 2 || !strings.Contains(out, "would change file:/app/app.conf") || !strings.Contains(out, "-port = 8080") {
		t.Fatalf("noop exited %d:\n%s", code, out)
	}
	if b, _ := os.ReadFile(conf); string(b) != "port = 8080\n" {
		t.Fatalf("noop changed the file to %q", b)
	}
	out, _, code = herd(t, "", append(args, "--json")...)
	var report struct {
		Summary struct{ Changed int }
		Events  []struct{ ID, Status string }
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || code != 2 || report.Summary.Changed != 1 {
		t.Fatalf("--json run: exit %d, %v, %+v", code, err, report)
	}

	out, _, code = herd(t, "", "backups", "--root", root)
	if code != 0 || !strings.Contains(out, "/app/app.conf") {
		t.Fatalf("herd backups exited %d:\n%s", code, out)
	}
	out, _, _ = herd(t, "", "backups", "show", "1", "--root", root)
	if out != "port = 8080\n" {
		t.Errorf("herd backups show 1 = %q", out)
	}
	if _, stderr, code := herd(t, "", "backups", "restore", "1", "--root", root); code != 0 {
		t.Fatalf("restore exited %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(conf); string(b) != "port = 8080\n" {
		t.Errorf("after restore the file holds %q", b)
	}
	if _, _, code := herd(t, "", "backups", "show", "x", "--root", root); code != nodecmd.ExitUsage {
		t.Errorf("backups show x exited %d, want %d", code, nodecmd.ExitUsage)
	}
}

// TestApplyNoopOnEmptyRoot: noop on a root that is not laid out refuses,
// naming the fix, and writes nothing at all.
func TestApplyNoopOnEmptyRoot(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"x\"\n",
	})
	root := t.TempDir()
	_, stderr, code := herd(t, "", "apply", "--site", site, "--root", root, "--node", "n1", "--noop")
	if code != 1 || !strings.Contains(stderr, "is not laid out; run without --noop first") {
		t.Errorf("noop on an empty root exited %d, want 1 and a message naming the fix:\n%s", code, stderr)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("noop wrote into the empty root: %v", ents)
	}
}

func TestServicesCommandEmpty(t *testing.T) {
	t.Parallel()
	out, stderr, code := herd(t, "", "services", "--root", t.TempDir())
	if code != 0 || !strings.Contains(out, "no supervised services") {
		t.Errorf("herd services on an empty root: exit %d, %q %q", code, out, stderr)
	}
}
