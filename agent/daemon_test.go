package agent

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

// testAgent is an enrolled daemon on a sandbox root, talking to a
// fakeServer.
type testAgent struct {
	d       *Daemon
	root    string
	certDir string
	runs    chan ranRun
}

type ranRun struct {
	why Trigger
	r   *Report
	err error
}

func newTestAgent(t *testing.T, fs *fakeServer, mods ...func(*DaemonOptions)) *testAgent {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	for _, dir := range []string{"etc/herd/facts.d", "srv"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	osRelease := "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"
	if err := os.WriteFile(filepath.Join(root, "etc/os-release"), []byte(osRelease), 0o644); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(t.TempDir(), "tls")
	if _, err := Enroll(ctx, EnrollOptions{Server: fs.addr, Name: "web-01", JoinToken: fs.token, Dir: certDir, Log: testLog(t)}); err != nil {
		t.Fatal(err)
	}
	o := DaemonOptions{Server: fs.addr, Root: root, CertDir: certDir, Interval: time.Hour, AgentVersion: "test", Log: testLog(t)}
	for _, m := range mods {
		m(&o)
	}
	d, err := NewDaemon(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	a := &testAgent{d: d, root: root, certDir: certDir, runs: make(chan ranRun, 1000)}
	d.afterRun = func(why Trigger, r *Report, err error) {
		select {
		case a.runs <- ranRun{why, r, err}:
		default:
		}
	}
	return a
}

// start runs the daemon until the test ends.
func (a *testAgent) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	})
}

// awaitRun returns the next run that matches.
func (a *testAgent) awaitRun(t *testing.T, what string, match func(ranRun) bool) ranRun {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case r := <-a.runs:
			if match(r) {
				return r
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func anyRun(ranRun) bool { return true }

func manualRun(r ranRun) bool { return r.why&TriggerManual != 0 }

// settle waits until no run is in progress or pending.
func (a *testAgent) settle(t *testing.T) {
	t.Helper()
	waitFor(t, "the daemon to be idle", func() bool {
		a.d.mu.Lock()
		defer a.d.mu.Unlock()
		return !a.d.busy && a.d.pending == 0
	})
}

func (a *testAgent) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (a *testAgent) write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(a.root, p), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileRes(path, content string, extra ...any) catalogs.Resource {
	attrs := map[string]any{"path": path, "content": content}
	for i := 0; i+1 < len(extra); i += 2 {
		attrs[extra[i].(string)] = extra[i+1]
	}
	return catalogs.Resource{ID: "file:" + path, Type: "file", Name: path, Attrs: attrs, Source: "roles/test.toml:1"}
}

// sourceRes is a file whose content ships by digest (a site's files/).
func sourceRes(path, sitePath string, content []byte) (catalogs.Resource, catalogs.FileRef) {
	d := catalogs.Digest(content)
	r := catalogs.Resource{ID: "file:" + path, Type: "file", Name: path, Source: "roles/test.toml:2",
		Attrs: map[string]any{"path": path, "source": sitePath, "digest": d}}
	return r, catalogs.FileRef{Digest: d, Path: sitePath, Size: int64(len(content))}
}

func testCatalog(node, version string, res ...catalogs.Resource) *catalogs.Catalog {
	slices.SortFunc(res, func(a, b catalogs.Resource) int { return cmp.Compare(a.ID, b.ID) })
	return &catalogs.Catalog{Environment: "production", Node: node, Resources: res, Version: version}
}

// TestDaemonChecksInAndApplies: a new catalog is verified, its files are
// fetched by digest, it is applied and reported; the facts travel in full
// only the first time, when they change, and when the server asks.
func TestDaemonChecksInAndApplies(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	conf := []byte("listen 8080\nworkers 4\n")
	src, ref := sourceRes("/srv/app.conf", "files/app.conf", conf)
	cat := testCatalog("web-01", "v1", fileRes("/etc/motd", "managed by herd\n"), src)
	cat.Files = []catalogs.FileRef{ref}
	etag := fs.publish(cat, map[string][]byte{ref.Digest: conf}, false)

	a := newTestAgent(t, fs)
	a.start(t)
	first := a.awaitRun(t, "the first run", anyRun)
	if first.err != nil || first.r == nil {
		t.Fatalf("first run: %v", first.err)
	}
	a.settle(t)
	if got := a.read(t, "etc/motd"); got != "managed by herd\n" {
		t.Errorf("etc/motd = %q", got)
	}
	if got := a.read(t, "srv/app.conf"); got != string(conf) {
		t.Errorf("srv/app.conf = %q, want the shipped file", got)
	}
	if first.r.Summary.Changed != 2 || first.r.CatalogDigest != etag || first.r.Node != "web-01" || first.r.Version != "v1" {
		t.Errorf("first report = %+v", first.r)
	}
	waitFor(t, "the first report at the server", func() bool { return len(fs.storedIDs()) >= 1 })
	if got := fs.storedIDs()[0]; got != first.r.RunID {
		t.Errorf("server stored report %s first, want %s", got, first.r.RunID)
	}
	pr := fs.lastReport()
	if pr.Summary.GetChanged() != 2 || len(pr.Events) != 2 || pr.Events[0].Id != "file:/etc/motd" || pr.Events[0].Status != "changed" {
		t.Errorf("report at the server = %v", pr)
	}
	log := fs.checkinLog()
	if len(log) == 0 || !log[0].factsSent || log[0].answer != herdv1.CheckinResponse_NEW_CATALOG || log[0].node != "web-01" || log[0].etag != "" {
		t.Fatalf("first check-in = %+v, want full facts, no etag, and a new catalog", log)
	}

	// checkinsOf runs one manual run and returns the check-ins it made.
	checkinsOf := func(what string) []checkinRecord {
		t.Helper()
		n := len(fs.checkinLog())
		a.d.Trigger(TriggerManual)
		r := a.awaitRun(t, what, manualRun)
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		a.settle(t)
		return fs.checkinLog()[n:]
	}
	if got := checkinsOf("an unchanged run"); len(got) != 1 || got[0].factsSent || got[0].etag != etag || got[0].answer != herdv1.CheckinResponse_UNCHANGED {
		t.Errorf("unchanged run's check-ins = %+v, want one, without facts, with the etag", got)
	}
	a.write(t, "etc/herd/facts.d/role.toml", "role = \"web\"\n")
	if got := checkinsOf("a run with new facts"); len(got) != 1 || !got[0].factsSent || got[0].digest == log[0].digest {
		t.Errorf("check-ins after a fact changed = %+v, want one with the new facts", got)
	}
	if got := checkinsOf("a run with the same facts"); len(got) != 1 || got[0].factsSent {
		t.Errorf("check-ins with unchanged facts = %+v, want one without facts", got)
	}
	fs.mu.Lock()
	clear(fs.knownFacts) // the server lost them (a new store)
	fs.mu.Unlock()
	got := checkinsOf("a run the server asks facts of")
	if len(got) != 2 || got[0].factsSent || got[0].answer != herdv1.CheckinResponse_NEED_FACTS || !got[1].factsSent || got[1].answer != herdv1.CheckinResponse_UNCHANGED {
		t.Errorf("check-ins after NEED_FACTS = %+v, want one without facts, then one with", got)
	}
	// Every run's report reached the server once, in order.
	runs, err := a.d.st.Runs(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every report at the server", func() bool { return len(fs.storedIDs()) == len(runs) })
	var want []string
	for _, r := range slices.Backward(runs) {
		want = append(want, r.ID)
	}
	if diff := gocmp.Diff(want, fs.storedIDs()); diff != "" {
		t.Errorf("reports at the server (-want +got):\n%s", diff)
	}
}

// TestDaemonRefusesBadCatalog: a catalog that fails verification is never
// applied; the cached one stays, and the report says why.
func TestDaemonRefusesBadCatalog(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		node   string
		badSig bool
		want   string
	}{
		{"bad signature", "web-01", true, "bad signature"},
		{"another node's catalog", "db-01", false, `compiled for node "db-01"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t)
			good := fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
			a := newTestAgent(t, fs)
			a.start(t)
			a.awaitRun(t, "the first run", anyRun)
			a.settle(t)

			bad := fs.publish(testCatalog(tt.node, "v2", fileRes("/etc/motd", "v2\n")), nil, tt.badSig)
			a.d.Trigger(TriggerManual)
			r := a.awaitRun(t, "a run offered the bad catalog", func(r ranRun) bool { return r.r != nil && r.r.Summary.Failed > 0 })
			a.settle(t)
			if got := a.read(t, "etc/motd"); got != "v1\n" {
				t.Errorf("etc/motd = %q, want v1 kept", got)
			}
			if etag, _ := a.d.currentEtag(); etag != good {
				t.Errorf("cached etag = %s, want %s kept", etag, good)
			}
			var refusal *Event
			for i := range r.r.Events {
				if r.r.Events[i].ID == "herd:catalog" {
					refusal = &r.r.Events[i]
				}
			}
			if refusal == nil || refusal.Status != Failed || !strings.Contains(refusal.Error, tt.want) ||
				!strings.Contains(refusal.Error, bad) || !strings.Contains(refusal.Error, "kept "+good) {
				t.Fatalf("report events = %+v, want a failed herd:catalog event naming %q, the refused and the kept etag", r.r.Events, tt.want)
			}
			if r.r.CatalogDigest != good || r.r.Version != "v1" {
				t.Errorf("report says catalog %s %s, want the kept %s v1", r.r.CatalogDigest, r.r.Version, good)
			}
			waitFor(t, "the report at the server", func() bool { return slices.Contains(fs.storedIDs(), r.r.RunID) })
			// The cache, read back as a restart would, is still the good one.
			_, etag, ok, err := a.d.st.loadCatalog(context.Background(), a.d.id.SigningKey, "web-01")
			if err != nil || !ok || etag != good {
				t.Errorf("cached catalog after the refusal = %s, %v, %v; want %s", etag, ok, err, good)
			}
		})
	}
}

// TestDaemonOfflineSpool: with the server away, the cached catalog is
// applied and the reports wait, and the log says so in words (which
// server, why, what the agent does now and when it asks again); once it
// is back they go out in order, each stored once.
func TestDaemonOfflineSpool(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	conf := []byte("cached content\n")
	src, ref := sourceRes("/srv/app.conf", "files/app.conf", conf)
	cat := testCatalog("web-01", "v1", fileRes("/etc/motd", "managed\n"), src)
	cat.Files = []catalogs.FileRef{ref}
	fs.publish(cat, map[string][]byte{ref.Digest: conf}, false)
	logs := newLogRecords(t)
	a := newTestAgent(t, fs, func(o *DaemonOptions) { o.Log = slog.New(logs) })
	a.start(t)
	first := a.awaitRun(t, "the first run", anyRun)
	a.settle(t)
	waitFor(t, "the first report at the server", func() bool { return len(fs.storedIDs()) == 1 })

	fs.stop()
	var offline []string
	for i := range 2 {
		a.write(t, "etc/motd", "edited while the server is away\n")
		a.write(t, "srv/app.conf", "edited too\n")
		a.d.Trigger(TriggerManual)
		r := a.awaitRun(t, "an offline run", manualRun)
		a.settle(t)
		if r.err == nil || r.r == nil {
			t.Fatalf("offline run %d: err %v, report %v; want a check-in error and a report", i, r.err, r.r)
		}
		if got := a.read(t, "etc/motd"); got != "managed\n" {
			t.Errorf("offline run %d: etc/motd = %q, want the cached catalog applied", i, got)
		}
		if got := a.read(t, "srv/app.conf"); got != string(conf) {
			t.Errorf("offline run %d: srv/app.conf = %q, want the cached file", i, got)
		}
		offline = append(offline, r.r.RunID)
	}
	var said string
	for _, w := range logs.warnings() {
		if strings.Contains(w, "applied the cached catalog instead") {
			said = w
		}
	}
	if want := "checking in: cannot reach the server at " + fs.addr + " ("; !strings.HasPrefix(said, want) ||
		!strings.Contains(said, "; checking in again in ") || strings.Contains(said, "rpc error") {
		t.Errorf("an offline run is logged as\n%s\nwant a sentence starting %q, saying when the agent checks in again, without grpc's error text\nall warnings: %q",
			said, want, logs.warnings())
	}
	spooled, err := a.d.st.SpooledReports(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range spooled {
		ids = append(ids, s.RunID)
	}
	if diff := gocmp.Diff(offline, ids); diff != "" {
		t.Fatalf("spool (-want +got):\n%s", diff)
	}

	fs.start()
	a.d.Trigger(TriggerManual)
	back := a.awaitRun(t, "a run with the server back", manualRun)
	if back.err != nil {
		t.Fatalf("run with the server back: %v", back.err)
	}
	want := append([]string{first.r.RunID}, offline...)
	want = append(want, back.r.RunID)
	waitFor(t, "every report at the server", func() bool { return len(fs.storedIDs()) >= len(want) })
	a.settle(t)
	if diff := gocmp.Diff(want, fs.storedIDs()); diff != "" {
		t.Errorf("reports stored at the server, in order (-want +got):\n%s", diff)
	}
	fs.mu.Lock()
	for id, n := range fs.receipts {
		if n != 1 {
			t.Errorf("report %s received %d times, want once", id, n)
		}
	}
	fs.mu.Unlock()
	waitFor(t, "an empty spool", func() bool {
		s, err := a.d.st.SpooledReports(context.Background())
		return err == nil && len(s) == 0
	})
}

// TestDaemonWatchTriggersRun: the server's Watch event for a new catalog
// makes the agent run at once, not at its next interval (an hour away).
func TestDaemonWatchTriggersRun(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
	a := newTestAgent(t, fs)
	a.start(t)
	a.awaitRun(t, "the first run", anyRun)
	a.settle(t)
	etag := fs.publish(testCatalog("web-01", "v2", fileRes("/etc/motd", "v2\n")), nil, false)
	r := a.awaitRun(t, "a run triggered by Watch", func(r ranRun) bool { return r.why&TriggerWatch != 0 })
	if r.err != nil || r.r == nil || r.r.CatalogDigest != etag {
		t.Fatalf("watch-triggered run: %v, %+v; want catalog %s", r.err, r.r, etag)
	}
	if got := a.read(t, "etc/motd"); got != "v2\n" {
		t.Errorf("etc/motd = %q, want v2", got)
	}
}

// TestDaemonDriftWatch: a file with drift = "watch" edited by hand is put
// back within a second, without waiting for the interval.
func TestDaemonDriftWatch(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1",
		fileRes("/etc/motd", "watched\n", "drift", "watch"),
		fileRes("/srv/plain", "not watched\n"),
	), nil, false)
	a := newTestAgent(t, fs)
	a.start(t)
	a.awaitRun(t, "the first run", anyRun)
	a.settle(t)

	n := len(fs.checkinLog())
	for i := range 3 {
		a.write(t, "srv/plain", "edited\n") // not watched, but a drift run checks everything
		edited := time.Now()
		a.write(t, "etc/motd", "hand edit\n")
		waitFor(t, "the hand edit to be put back", func() bool {
			b, _ := os.ReadFile(filepath.Join(a.root, "etc/motd"))
			return string(b) == "watched\n"
		})
		took := time.Since(edited)
		t.Logf("drift %d put back in %v", i, took)
		if took > time.Second {
			t.Errorf("drift %d put back after %v, want within a second", i, took)
		}
		a.settle(t)
		if got := a.read(t, "srv/plain"); got != "not watched\n" {
			t.Errorf("drift %d: srv/plain = %q, want the drift run to converge it too", i, got)
		}
	}
	// Drift runs make no check-in: they apply the cached catalog.
	for _, c := range fs.checkinLog()[n:] {
		t.Errorf("a drift run checked in: %+v", c)
	}
}

// slowType blocks every Check until released, to hold a run open.
type slowType struct {
	started chan struct{}
	release chan struct{}
	checks  atomic.Int32
}

func (s *slowType) Check(ctx context.Context, _ *resources.Host, want *catalogs.Resource) (*resources.Plan, error) {
	s.checks.Add(1)
	s.started <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return &resources.Plan{Resource: want}, nil
}

func (s *slowType) Apply(context.Context, *resources.Host, *resources.Plan) error { return nil }

// TestDaemonTriggersCoalesce: ten triggers during a run make exactly one
// more run, never ten.
func TestDaemonTriggersCoalesce(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", catalogs.Resource{ID: "slow:x", Type: "slow", Name: "x", Attrs: map[string]any{}}), nil, false)
	slow := &slowType{started: make(chan struct{}), release: make(chan struct{})}
	a := newTestAgent(t, fs, func(o *DaemonOptions) {
		o.Types = map[string]resources.Type{"slow": slow, "file": &resources.File{}}
	})
	a.start(t)
	<-slow.started // the first run is in its slow check
	for i := range 10 {
		a.d.Trigger([]Trigger{TriggerManual, TriggerWatch, TriggerDrift}[i%3])
	}
	slow.release <- struct{}{}
	a.awaitRun(t, "the first run", anyRun)
	<-slow.started // exactly one more run…
	slow.release <- struct{}{}
	second := a.awaitRun(t, "the second run", anyRun)
	if want := TriggerManual | TriggerWatch | TriggerDrift; second.why&want != want {
		t.Errorf("second run's triggers = %v, want all three coalesced", second.why)
	}
	a.settle(t) // …and then none: nothing is pending
	if n := slow.checks.Load(); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
}

// TestDaemonUsesServerSchedule: the server's next check-in time is the
// agent's next run.
func TestDaemonUsesServerSchedule(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	next := time.Now().Add(7 * time.Minute).Truncate(time.Millisecond)
	fs.mu.Lock()
	fs.nextCheckin = next
	fs.mu.Unlock()
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
	a := newTestAgent(t, fs)
	a.start(t)
	a.awaitRun(t, "the first run", anyRun)
	a.settle(t)
	a.d.mu.Lock()
	st := a.d.state
	a.d.mu.Unlock()
	if got := a.d.sched.Next(time.Now(), st); !got.Equal(next) {
		t.Errorf("next run at %v, want the server's %v", got, next)
	}
}

// TestDaemonOnce: one run, its report sent before RunDaemon returns.
func TestDaemonOnce(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "once\n")), nil, false)
	a := newTestAgent(t, fs)
	a.d.o.Once = true
	if err := a.d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := a.read(t, "etc/motd"); got != "once\n" {
		t.Errorf("etc/motd = %q", got)
	}
	if got := fs.storedIDs(); len(got) != 1 {
		t.Errorf("reports at the server = %v, want one", got)
	}
}

// BenchmarkDaemonRuns measures the agent daemon's memory over many runs:
// the server runs in a child process, and this process, the agent alone,
// does b.N runs of a 200-resource catalog (1,000 for the figures in
// BENCHMARKS.md: -benchtime 1000x). It reports the heap in use after the
// first tenth of the runs and at the end (flat means no leak), and the
// process's peak and idle resident memory. Run it without -race.
//
//	go test ./agent -run XXX -bench DaemonRuns -benchtime 1000x
func BenchmarkDaemonRuns(b *testing.B) {
	ctx := context.Background()
	child := exec.Command(os.Args[0], "-test.run=^TestFakeServerProcess$")
	child.Env = append(os.Environ(), "HERD_FAKE_SERVER=1")
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer child.Wait()
	defer stdin.Close()
	var addr, token string
	if _, err := fmt.Fscan(stdout, &addr, &token); err != nil {
		b.Fatal(err)
	}

	root := b.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "srv"), 0o755); err != nil {
		b.Fatal(err)
	}
	certDir := filepath.Join(root, "tls")
	if _, err := Enroll(ctx, EnrollOptions{Server: addr, Name: "web-01", JoinToken: token, Dir: certDir}); err != nil {
		b.Fatal(err)
	}
	d, err := NewDaemon(ctx, DaemonOptions{Server: addr, Root: root, CertDir: certDir})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	var early uint64
	b.ResetTimer()
	for i := range b.N {
		r, out := d.cycle(ctx, TriggerTimer)
		if out.err != nil || r == nil || r.Summary.Failed > 0 || r.Summary.Resources != 200 {
			b.Fatalf("run %d: %v %+v", i, out.err, r)
		}
		if _, err := sendSpooled(ctx, d.st, d.node, d.log); err != nil {
			b.Fatal(err)
		}
		if i == b.N/10 {
			b.StopTimer()
			early = heap()
			b.StartTimer()
		}
	}
	b.StopTimer()
	late := heap()
	b.ReportMetric(float64(early)/(1<<20), "heap-early-MiB")
	b.ReportMetric(float64(late)/(1<<20), "heap-end-MiB")
	b.ReportMetric(float64(procKiB("VmHWM"))/1024, "peak-RSS-MiB")
	// Idle: what the process holds once the runs are over and the
	// runtime has returned what it does not use.
	debug.FreeOSMemory()
	b.ReportMetric(float64(procKiB("VmRSS"))/1024, "idle-RSS-MiB")
	b.ReportMetric(float64(procKiB("RssAnon"))/1024, "idle-anon-MiB")
}

// TestFakeServerProcess is the server of BenchmarkDaemonRuns, in its own
// process: it prints its address and join token, serves a 200-resource
// catalog, and stops when its stdin closes.
func TestFakeServerProcess(t *testing.T) {
	if os.Getenv("HERD_FAKE_SERVER") == "" {
		t.Skip("the child process of BenchmarkDaemonRuns")
	}
	fs := newFakeServer(t)
	var res []catalogs.Resource
	for i := range 200 {
		res = append(res, fileRes(fmt.Sprintf("/srv/f%03d", i), strings.Repeat(fmt.Sprintf("line %d\n", i), 20)))
	}
	fs.publish(testCatalog("web-01", "v1", res...), nil, false)
	fmt.Println(fs.addr, fs.token)
	io.Copy(io.Discard, os.Stdin)
}

// procKiB reads one "kB" field of /proc/self/status (0 when absent).
func procKiB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// TestDaemonOwnsTheSupervisor: a running daemon owns its state's
// supervisor from the start, even before a catalog has a service, so that
// another command over that state (herd apply, herd services) uses the
// daemon's through the socket rather than a second supervisor.
func TestDaemonOwnsTheSupervisor(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "v1\n")), nil, false)
	a := newTestAgent(t, fs, func(o *DaemonOptions) {
		o.Services = func(ctx context.Context, st *State) (resources.Services, func(), error) {
			s, err := OwnServices(ctx, st, o.Root, o.Log)
			if err != nil {
				return nil, nil, err
			}
			return s, func() { s.Close() }, nil
		}
	})
	a.start(t)
	a.awaitRun(t, "the first run", anyRun)
	st, err := OpenState(a.d.st.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	c, err := OpenServices(ctx, st, a.root, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*ServiceClient); !ok {
		t.Fatalf("OpenServices beside a running daemon = %T, want a *ServiceClient", c)
	}
	if list, err := c.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List through the daemon = %+v, %v; want none", list, err)
	}
}

// TestDaemonAuditRuns: with AuditInterval the daemon checks its host
// against the cached catalog between applies, with no check-in, and
// spools that as an audit report (noop, marked audit) whose would-change
// events are the drift; it changes nothing. A real run puts the next
// audit off by the whole interval.
func TestDaemonAuditRuns(t *testing.T) {
	t.Parallel()
	const every = 300 * time.Millisecond
	fs := newFakeServer(t)
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "managed by herd\n"),
		fileRes("/etc/audited", "wanted\n", "audit", true)), nil, false)
	a := newTestAgent(t, fs, func(o *DaemonOptions) { o.AuditInterval = every })
	a.start(t)
	if first := a.awaitRun(t, "the first run", anyRun); first.err != nil || first.why == TriggerAudit {
		t.Fatalf("first run = %v (%s), want a real run", first.err, first.why)
	}
	a.write(t, "etc/motd", "edited by hand\n")
	checkins := len(fs.checkinLog())
	audit := a.awaitRun(t, "an audit run", func(r ranRun) bool { return r.why == TriggerAudit })
	if audit.err != nil || audit.r == nil || !audit.r.Audit || !audit.r.Noop {
		t.Fatalf("audit run = %+v, %v; want a noop report marked audit", audit.r, audit.err)
	}
	statuses := map[string]Status{}
	for _, e := range audit.r.Events {
		statuses[e.ID] = e.Status
	}
	if statuses["file:/etc/motd"] != Changed || statuses["file:/etc/audited"] != Drift || audit.r.Summary.Drift != 2 {
		t.Errorf("audit run statuses %v, summary %+v; want motd would change, audited drift, drift 2", statuses, audit.r.Summary)
	}
	if got := a.read(t, "etc/motd"); got != "edited by hand\n" {
		t.Errorf("an audit run changed etc/motd: %q", got)
	}
	if got := len(fs.checkinLog()); got != checkins {
		t.Errorf("an audit run checked in (%d check-ins, want %d)", got, checkins)
	}
	waitFor(t, "the audit report at the server", func() bool {
		r := fs.lastReport()
		return r != nil && r.Audit && r.Summary.GetDrift() == 2
	})

	// A real run puts the edit back and the next audit off.
	a.d.Trigger(TriggerManual)
	manual := a.awaitRun(t, "a manual run", manualRun)
	if manual.err != nil || manual.r == nil {
		t.Fatalf("manual run: %v", manual.err)
	}
	// The run's own end is before the daemon noted it: a lower bound.
	ended := manual.r.Started.Add(manual.r.Duration)
	next := a.awaitRun(t, "the audit after the real run", func(r ranRun) bool { return r.why == TriggerAudit })
	if started := next.r.Started; started.Sub(ended) < every {
		t.Errorf("the audit after the real run started %s after it, want at least %s", started.Sub(ended), every)
	}
	if got := a.read(t, "etc/motd"); got != "managed by herd\n" || next.r.Summary.Drift != 1 {
		t.Errorf("after the real run: etc/motd = %q, audit drift %d; want put back, drift 1 (the audited file)", got, next.r.Summary.Drift)
	}
}
