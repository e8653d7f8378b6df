package supervise

import (
	"context"
	"encoding/json"
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

// FuzzParseRecord: a record file, from a disk that may hold anything,
// never panics the parser, and one it accepts names its service, no
// negative pid, and survives being written and read again unchanged.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"name":"web","spec":{"name":"web","argv":["/bin/true"]},"digest":"sha256:00","state":"running","pid":42,"pgid":42,"start_ticks":7,"boot_id":"b","cgroup":"/sys/fs/cgroup/herd/s-1/web.service","started_at":"2025-05-01T12:00:00Z","restarts":1,"policy":{"count":1}}`))
	f.Add([]byte(`{"name":"web","pid":-1}`))
	f.Add([]byte(`{"name":"web","pgid":-1,"pid":5}`))
	f.Add([]byte(`{"name":"db"}`))
	f.Add([]byte(`{"name":"web","last_exit":{"at":"2025-05-01T12:00:00Z","code":-1,"unknown":true}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord("web", b)
		if err != nil {
			return
		}
		if r.Name != "web" || r.PID < 0 || r.PGID < 0 {
			t.Fatalf("parseRecord accepted %+v", r)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := parseRecord("web", again)
		if err != nil {
			t.Fatalf("parseRecord of its own output %s: %v", again, err)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Errorf("round trip mismatch (-first +second):\n%s", diff)
		}
	})
}

func TestParseRecord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		wantOK bool
	}{
		{`{"name":"web","pid":42,"pgid":42}`, true},
		{`{"name":"web"}`, true},
		{`{"name":"db"}`, false},           // another service's
		{`{"name":"web","pid":-1}`, false}, // kill(-1) is every process
		{`{"name":"web","pid":5,"pgid":-5}`, false},
		{`{"name":"web"`, false},
		{``, false},
	}
	for _, tt := range tests {
		if _, err := parseRecord("web", []byte(tt.in)); (err == nil) != tt.wantOK {
			t.Errorf("parseRecord(web, %s) = %v, want ok %v", tt.in, err, tt.wantOK)
		}
	}
}
