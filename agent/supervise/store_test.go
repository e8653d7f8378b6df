package supervise

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDirStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	s := NewDirStore(dir)
	if recs, err := s.Load(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("Load of a missing directory = %v, %v; want nothing", recs, err)
	}
	spec, err := Spec{Name: "web", Argv: []string{"/bin/true"}}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	want := []Record{
		{Name: "db", State: StateStopped, LastExit: &ExitInfo{At: at, Code: 3}},
		{Name: "web", Spec: spec, Digest: spec.digest(), State: StateRunning, PID: 42, PGID: 42,
			StartTicks: 123, BootID: "b", Cgroup: "/sys/fs/cgroup/herd/web.service", StartedAt: at,
			Restarts: 2, Policy: Policy{Restart: RestartAlways, Count: 2}},
	}
	for _, r := range want {
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	want[0].State = StateFailed // a second save replaces the first
	if err := s.Save(ctx, want[0]); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temporary files)", len(ents))
	}
	for _, e := range ents {
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if err := s.Delete(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "db"); err != nil {
		t.Errorf("Delete of a missing record = %v, want nil", err)
	}
	if got, _ := s.Load(ctx); len(got) != 1 || got[0].Name != "web" {
		t.Errorf("Load after Delete = %+v, want web alone", got)
	}
	for _, bad := range []string{"", "../x", ".hidden", "a/b"} {
		if err := s.Save(ctx, Record{Name: bad}); err == nil {
			t.Errorf("Save(%q) succeeded, want an error", bad)
		}
	}
	// A record file that names another service is refused.
	if err := os.WriteFile(filepath.Join(dir, "x.json"), []byte(`{"name":"y"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); err == nil {
		t.Errorf("Load with a mismatched record succeeded")
	}
}
