package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/testkit"
)

// startCluster starts n real servers on 127.0.0.1:0 sharing one
// PostgreSQL schema and one CA (the first server's, copied into each
// other's directory), each with its own copy of testSite. It returns the
// servers and their site directories.
func startCluster(t *testing.T, n int) ([]*Server, []string) {
	t.Helper()
	return startClusterOf(t, n, testSite)
}

// startClusterOf is startCluster on a site of these files.
func startClusterOf(t *testing.T, n int, files map[string]string) ([]*Server, []string) {
	t.Helper()
	dsn := testkit.Postgres(t)
	var servers []*Server
	var sites []string
	var caDir string
	for i := range n {
		site, dir := t.TempDir(), t.TempDir()
		writeFiles(t, site, files)
		if caDir != "" {
			if err := os.CopyFS(filepath.Join(dir, "ca"), os.DirFS(caDir)); err != nil {
				t.Fatal(err)
			}
		}
		opts := Options{
			Site: site, Dir: dir, Store: dsn, Listen: "127.0.0.1:0", HTTPListen: "off", Debounce: 50 * time.Millisecond,
			Log: slog.New(slog.NewTextHandler(testLog{t}, nil)).With("server", i),
		}
		s, err := New(context.Background(), opts)
		if err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
		if err := s.Start(context.Background()); err != nil {
			s.Close()
			t.Fatalf("server %d: %v", i, err)
		}
		t.Cleanup(func() { s.Close() })
		if caDir == "" {
			caDir = filepath.Join(dir, "ca")
		}
		servers = append(servers, s)
		sites = append(sites, site)
	}
	return servers, sites
}

// TestRevokedOnOneServerRefusedByAnother: a node revoked through server A
// is refused by server B at its very next call (B's per-call check reads
// the store), and another node's Watch stream on B, which makes no call,
// ends as soon as B hears of its revocation (sooner than B's periodic
// re-read).
func TestRevokedOnOneServerRefusedByAnother(t *testing.T) {
	t.Parallel()
	ss, _ := startCluster(t, 2)
	a, b := ss[0], ss[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	caller := enroll(t, a, "w-01")
	watcher := enroll(t, a, "w-02")
	onB := herdv1.NewNodeClient(dial(t, b, &caller))
	// B has verified the certificate once: it is in B's cache.
	resp := checkin(t, onB, map[string]any{}, "")
	w := herdv1.NewNodeClient(dial(t, b, &watcher))
	wresp := checkin(t, w, map[string]any{}, "")
	stream := openWatch(ctx, t, b, w, wresp.Etag)

	if err := a.ca.Revoke(ctx, "w-01"); err != nil {
		t.Fatal(err)
	}
	// At once: no waiting for B to hear of it.
	fb, d := factsJSON(t, map[string]any{})
	_, err := onB.Checkin(ctx, &herdv1.CheckinRequest{FactsDigest: d, FactsJson: fb, CatalogEtag: resp.Etag})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("check-in on B right after A revoked = %v; want Unauthenticated naming the revocation", err)
	}

	if err := a.ca.Revoke(ctx, "w-02"); err != nil {
		t.Fatal(err)
	}
	heard, cancelHeard := context.WithTimeout(ctx, revokeResync/2)
	defer cancelHeard()
	done := make(chan error, 1)
	go func() { _, err := stream.Recv(); done <- err }()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("Recv on B after the revocation = %v; want Unauthenticated", err)
		}
	case <-heard.Done():
		t.Fatalf("the revoked node's Watch stream on B still open after %s", revokeResync/2)
	}
	if !b.ca.IsRevoked(ca.SerialHex(watcher.Leaf)) {
		t.Error("B's own view does not hold the revocation")
	}
}

// TestWatchHearsAnotherServersRelease: a node watching on B hears of the
// catalog A released to it, and B's check-in answers it. A is the server
// that leads the rollouts: it alone plans a new version.
func TestWatchHearsAnotherServersRelease(t *testing.T) {
	t.Parallel()
	a, b, siteA := leaderAndFollower(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert := enroll(t, a, "a-01")
	onA := herdv1.NewNodeClient(dial(t, a, &cert))
	onB := herdv1.NewNodeClient(dial(t, b, &cert))
	checkin(t, onA, map[string]any{}, "")
	resp := checkin(t, onB, map[string]any{}, "")
	stream := openWatch(ctx, t, b, onB, resp.Etag)
	// Only A's site changes: B compiles nothing new.
	writeFiles(t, siteA, map[string]string{"roles/r.toml": strings.Replace(testSite["roles/r.toml"], "hello", "welcome", 1)})
	ev, err := stream.Recv()
	if err != nil {
		t.Fatalf("Watch on B: %v", err)
	}
	cur, _ := a.compiles.get("a-01")
	if ev.Etag == resp.Etag || cur == nil || ev.Etag != cur.etag {
		t.Fatalf("Watch on B announced %s; want A's new catalog (A serves %v, old %s)", ev.Etag, cur, resp.Etag)
	}
	again := checkin(t, onB, map[string]any{}, resp.Etag)
	if again.Etag != ev.Etag || again.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Errorf("check-in on B after A's release = %v %s; want NEW_CATALOG %s", again.Status, again.Etag, ev.Etag)
	}

	// A late announcement of the old catalog (batches from two servers
	// cross) puts nothing back: the store says which is current.
	for _, s := range []*Server{a, b} {
		s.heardReleases(ctx, "a-01 "+resp.Etag)
		if cur, _ := s.compiles.get("a-01"); cur == nil || cur.etag != ev.Etag {
			t.Errorf("after a late announcement of the old catalog a server serves %v, want %s", cur, ev.Etag)
		}
	}
}

// TestReleasesOfOtherNodesComeAfter: a follower takes at once the
// release of a node watching on it, and later, in the background, that
// of a node with no stream there; a check-in of that node on the
// follower meanwhile is answered with the released catalog all the same.
func TestReleasesOfOtherNodesComeAfter(t *testing.T) {
	t.Parallel()
	a, b, siteA := leaderAndFollower(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watching, other := enroll(t, a, "w-01"), enroll(t, a, "o-01")
	wOnB := herdv1.NewNodeClient(dial(t, b, &watching))
	oOnA, oOnB := herdv1.NewNodeClient(dial(t, a, &other)), herdv1.NewNodeClient(dial(t, b, &other))
	resp := checkin(t, wOnB, map[string]any{}, "")
	old := checkin(t, oOnA, map[string]any{}, "")
	stream := openWatch(ctx, t, b, wOnB, resp.Etag)

	writeFiles(t, siteA, map[string]string{"roles/r.toml": strings.Replace(testSite["roles/r.toml"], "hello", "welcome", 1)})
	ev, err := stream.Recv()
	if err != nil {
		t.Fatalf("Watch on B: %v", err)
	}
	if cur, _ := a.compiles.get("w-01"); cur == nil || ev.Etag != cur.etag || ev.Etag == resp.Etag {
		t.Fatalf("Watch on B announced %s; want A's new catalog (A serves %v)", ev.Etag, cur)
	}
	// The other node's release reaches B too, without a stream there.
	var want string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		onA, _ := a.compiles.get("o-01")
		onB, _ := b.compiles.get("o-01")
		if onA != nil && onA.etag != old.Etag && onB != nil && onB.etag == onA.etag {
			want = onA.etag
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never took o-01's release: A serves %v, B %v", onA, onB)
		}
	}
	if got := checkin(t, oOnB, map[string]any{}, old.Etag); got.Status != herdv1.CheckinResponse_NEW_CATALOG || got.Etag != want {
		t.Errorf("o-01's check-in on B = %v %s, want NEW_CATALOG %s", got.Status, got.Etag, want)
	}

	// A release waiting its turn is taken by the node's own check-in:
	// B is made to serve the old catalog again with the release queued.
	prev, err := b.storedCatalog(ctx, old.Etag)
	if err != nil {
		t.Fatal(err)
	}
	b.compiles.mu.Lock()
	b.compiles.catalogs["o-01"] = prev
	b.compiles.mu.Unlock()
	b.later.add("o-01", want)
	if got := checkin(t, oOnB, map[string]any{}, old.Etag); got.Status != herdv1.CheckinResponse_NEW_CATALOG || got.Etag != want {
		t.Errorf("o-01's check-in on B with its release queued = %v %s, want NEW_CATALOG %s", got.Status, got.Etag, want)
	}
}

// leaderAndFollower starts two servers on one store and returns the one
// that leads the rollouts, the other, and the leader's site.
func leaderAndFollower(t *testing.T) (a, b *Server, siteA string) {
	t.Helper()
	ss, sites := startCluster(t, 2)
	a, followers := rolloutLeader(t, ss)
	siteA = sites[0]
	if a == ss[1] {
		siteA = sites[1]
	}
	return a, followers[0], siteA
}

func TestReleasePayloads(t *testing.T) {
	t.Parallel()
	m := map[string]string{}
	for i := range 500 {
		m[strings.Repeat("n", 40)+string(rune('a'+i%26))+strings.Repeat("x", i%7)+"-"+strconv.Itoa(i)] = strings.Repeat("e", 64)
	}
	got := releasePayloads(m, 2000)
	seen := 0
	for _, p := range got {
		if len(p) > 2000 {
			t.Errorf("a payload of %d bytes, past 2000", len(p))
		}
		for line := range strings.SplitSeq(p, "\n") {
			node, etag, ok := strings.Cut(line, " ")
			if !ok || m[node] != etag {
				t.Errorf("line %q is not one of the releases", line)
			}
			seen++
		}
	}
	if seen != len(m) {
		t.Errorf("the payloads carry %d releases, want %d", seen, len(m))
	}
}

// TestOneServerLeadsTheAudits: of three servers on one store exactly one
// leads the audits; when it stops, another takes over within a few
// retries, and again exactly one leads.
func TestOneServerLeadsTheAudits(t *testing.T) {
	t.Parallel()
	ss, _ := startCluster(t, 3)
	leaders := func(ss []*Server) []*Server {
		var out []*Server
		for _, s := range ss {
			if s.auditLead.Leading() {
				out = append(out, s)
			}
		}
		return out
	}
	// The bound: a retry to notice, one to take it, and slack for a
	// loaded machine; PostgreSQL frees a closed session's locks at once.
	waitOne := func(ss []*Server) *Server {
		t.Helper()
		deadline := time.Now().Add(5*leaderRetry + 10*time.Second)
		for {
			l := leaders(ss)
			if len(l) == 1 {
				// No second leader appears on a further retry.
				time.Sleep(leaderRetry + leaderRetry/2)
				if again := leaders(ss); len(again) != 1 || again[0] != l[0] {
					t.Fatalf("leaders changed to %d servers without a failure", len(again))
				}
				return l[0]
			}
			if len(l) > 1 {
				t.Fatalf("%d servers lead the audits at once", len(l))
			}
			if time.Now().After(deadline) {
				t.Fatal("no server leads the audits")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	first := waitOne(ss)
	holder, ok, err := first.st.LeaseHolder(context.Background(), "audit")
	if err != nil || !ok || holder != first.Addr {
		t.Errorf("LeaseHolder = %q, %v, %v; want %s", holder, ok, err, first.Addr)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	rest := slices.DeleteFunc(slices.Clone(ss), func(s *Server) bool { return s == first })
	if next := waitOne(rest); next == first {
		t.Fatal("the stopped server still leads")
	}
}

// TestFollowerHandsItsReportsToTheAuditLeader: a report received by a
// server that does not lead the audits is judged by the one that does.
func TestFollowerHandsItsReportsToTheAuditLeader(t *testing.T) {
	t.Parallel()
	ss, _ := startClusterOf(t, 2, auditSite("hello"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var leader, follower *Server
	for leader == nil {
		for i, s := range ss {
			if s.auditLead.Leading() {
				leader, follower = s, ss[1-i]
			}
		}
		if ctx.Err() != nil {
			t.Fatal("no server leads the audits")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cert := enroll(t, follower, "n-0")
	nc := herdv1.NewNodeClient(dial(t, follower, &cert))
	resp := checkin(t, nc, map[string]any{"os": map[string]any{"family": "debian"}}, "")
	adm := admin(t, follower)
	ac := herdv1.NewAdminClient(dial(t, follower, &adm))
	await := func(want string) {
		t.Helper()
		for {
			got, err := ac.Audit(ctx, &herdv1.AuditRequest{Node: "n-0"})
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(verdicts(got), want) {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("never judged %q: %v", want, verdicts(got))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	send := func(id string, events ...*herdv1.Event) {
		t.Helper()
		if _, err := nc.SendReport(ctx, &herdv1.SendReportRequest{Report: &herdv1.Report{RunId: id, CatalogDigest: resp.Etag,
			StartedUnixNs: time.Now().UnixNano(), Summary: &herdv1.Summary{Resources: 1, Failed: int32(len(events))}, Events: events}}); err != nil {
			t.Fatal(err)
		}
	}
	send("r-1")
	await("n-0 last-run-clean pass")
	// The leader has judged the node and holds its input: only the
	// follower's word makes it read the new report.
	send("r-2", &herdv1.Event{Id: "file:/etc/motd", Type: "file", Status: "failed", Error: "permission denied"})
	await("n-0 last-run-clean fail: file:/etc/motd file:/etc/motd failed: permission denied")
	if follower.auditLead.Leading() || !leader.auditLead.Leading() {
		t.Error("the leadership moved during the test")
	}
}

// FuzzParseReleases: any payload parses without panicking into valid
// node names, and what releasePayloads writes parses back to itself.
func FuzzParseReleases(f *testing.F) {
	f.Add("web-01 abc\ndb-01 def")
	f.Add("*")
	f.Add("bad name\n\n../x y z")
	f.Add(strings.Repeat("a", 300) + " e")
	f.Fuzz(func(t *testing.T, payload string) {
		got := parseReleases(payload)
		for node := range got {
			if ca.CheckName(node) != nil {
				t.Fatalf("parsed an invalid node name %q", node)
			}
		}
		for _, p := range releasePayloads(got, maxNotify) {
			for node, etag := range parseReleases(p) {
				if got[node] != etag {
					t.Fatalf("round trip of %q: %q != %q", node, etag, got[node])
				}
			}
		}
		for _, s := range parseSerials(payload) {
			if s == "" || len(s) > 64 || strings.Trim(s, "0123456789abcdefABCDEF") != "" {
				t.Fatalf("parsed a serial that is not hex: %q", s)
			}
		}
	})
}
