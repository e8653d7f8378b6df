package agent_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestApplySourceDirectory converges a source directory of the site onto a
// root where the tree's place holds unmanaged entries at two depths and a
// link to a directory outside the root: the tree is copied with the
// site's executable bits, purge removes what the site does not hold, the
// link is replaced by a directory (never followed, so nothing is written
// outside the root), and a second run is in sync.
func TestApplySourceDirectory(t *testing.T) {
	t.Parallel()
	site := t.TempDir()
	for name, content := range map[string]string{
		"nodes.toml":              "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml":            "[[file]]\npath = \"/opt/app\"\nsource = \"files/app/\"\npurge = true\n",
		"files/app/bin/run":       "#!/bin/sh\necho run\n",
		"files/app/conf/app.conf": "x = 1\n",
	} {
		p := filepath.Join(site, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(site, "files/app/bin/run"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, outside := t.TempDir(), t.TempDir()
	for _, d := range []string{"opt/app/conf"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"opt/app/stray.txt", "opt/app/conf/old.conf"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("unmanaged\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(root, "opt/app/bin")); err != nil {
		t.Fatal(err)
	}

	fleet.MustApply(t, site, root, "n1")
	for rel, mode := range map[string]os.FileMode{
		"opt/app/bin/run":       0o755,
		"opt/app/conf/app.conf": 0o644,
		"opt/app/bin":           os.ModeDir | 0o755,
	} {
		fi, err := os.Lstat(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), mode)
		}
	}
	fleet.AssertFile(t, root, "opt/app/conf/app.conf", "x = 1")
	for _, gone := range []string{"opt/app/stray.txt", "opt/app/conf/old.conf"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s was not purged: %v", gone, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("something was written outside the root through the link: %v", entries)
	}

	again := fleet.Apply(t, site, root, "n1", false)
	for _, e := range again.Events {
		if e.Status != agent.InSync {
			t.Errorf("second run: %s is %s %s %+v", e.ID, e.Status, e.Error, e.Changes)
		}
	}
}
