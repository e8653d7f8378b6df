package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStateRunsAndBackups(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	st, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &Report{RunID: NewRunID(), Node: "n", Version: "v1", Started: time.Now(), Duration: time.Millisecond,
		Summary: Summary{Resources: 2, Changed: 1, InSync: 1}, Events: []Event{{ID: "file:/a", Status: Changed}}}
	if err := st.RecordRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	d, err := st.Save(ctx, "/etc/motd", strings.NewReader("old motd\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: everything survived, and migrations do not run twice.
	st, err = OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, err := st.Runs(ctx, 10)
	if err != nil || len(runs) != 1 || runs[0].ID != r.RunID || runs[0].Summary.Changed != 1 || runs[0].ExitCode != 2 {
		t.Fatalf("Runs = %+v, %v", runs, err)
	}
	bs, err := st.Backups(ctx, "/etc/motd")
	if err != nil || len(bs) != 1 || bs[0].Digest != d || bs[0].Size != 9 {
		t.Fatalf("Backups = %+v, %v", bs, err)
	}
	rc, err := st.OpenContent(d)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "old motd\n" {
		t.Errorf("saved content = %q", b)
	}
	if _, err := st.OpenContent("sha256:../../etc/passwd"); err == nil {
		t.Error("OpenContent accepted a path as a digest")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "content", ".incoming-*")); len(m) > 0 {
		t.Errorf("temporary files left behind: %v", m)
	}
}

func TestRestoreBackup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	st, err := OpenState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	motd := filepath.Join(root, "etc/motd")
	if err := os.WriteFile(motd, []byte("managed\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Save(ctx, "/etc/motd", strings.NewReader("hand-written\n")); err != nil {
		t.Fatal(err)
	}
	bs, _ := st.Backups(ctx, "/etc/motd")
	if _, err := RestoreBackup(ctx, st, root, bs[0].ID); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(motd)
	fi, _ := os.Stat(motd)
	if string(b) != "hand-written\n" || fi.Mode().Perm() != 0o640 {
		t.Errorf("after restore: %q mode %v", b, fi.Mode().Perm())
	}
	// The content the restore replaced was saved in turn.
	bs, _ = st.Backups(ctx, "/etc/motd")
	if len(bs) != 2 {
		t.Fatalf("backups after restore = %d, want 2", len(bs))
	}
	rc, _ := st.OpenContent(bs[0].Digest)
	saved, _ := io.ReadAll(rc)
	rc.Close()
	if string(saved) != "managed\n" {
		t.Errorf("the replaced content was saved as %q", saved)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "etc", ".herd-restore-*")); len(m) > 0 {
		t.Errorf("temp files left: %v", m)
	}
}
