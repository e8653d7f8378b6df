package server

import (
	"context"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/api/herdv1"
)

// storedRuns lists the run ids the store holds for node, one entry a row.
func storedRuns(t *testing.T, s *Server, node string) []string {
	t.Helper()
	reps, err := s.st.Reports(context.Background(), node, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	for _, r := range reps {
		runs = append(runs, r.RunID)
	}
	slices.Sort(runs)
	return runs
}

// TestSendReportsStoredOnce: a batch sent again after its answer was lost
// (the agent keeps its spool until acknowledged) is acknowledged again
// and stored once: one row per run id.
func TestSendReportsStoredOnce(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	checkin(t, nc, map[string]any{}, "")
	batch := func(runs ...string) *herdv1.SendReportsRequest {
		req := &herdv1.SendReportsRequest{}
		for i, run := range runs {
			req.Reports = append(req.Reports, &herdv1.Report{RunId: run, StartedUnixNs: int64(i + 1), Summary: &herdv1.Summary{Resources: 2, InSync: 1, Changed: 1},
				Events: []*herdv1.Event{{Id: "file:/etc/motd", Type: "file", Status: "changed", Changes: []*herdv1.Change{{Attr: "content", From: "a", To: run}}}}})
		}
		return req
	}
	for i, step := range []struct {
		runs, wantDup []string
	}{
		{runs: []string{"run-1", "run-2", "run-3"}},
		// The answer to the first was lost: the same batch again.
		{runs: []string{"run-1", "run-2", "run-3"}, wantDup: []string{"run-1", "run-2", "run-3"}},
		// Part of it again, with a new report.
		{runs: []string{"run-3", "run-4"}, wantDup: []string{"run-3"}},
	} {
		resp, err := nc.SendReports(ctx, batch(step.runs...))
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if len(resp.Refused) != 0 {
			t.Errorf("send %d refused %v", i, resp.Refused)
		}
		if diff := cmp.Diff(step.runs, resp.AckedRunIds); diff != "" {
			t.Errorf("send %d acked (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(step.wantDup, resp.DuplicateRunIds); diff != "" {
			t.Errorf("send %d duplicates (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff([]string{"run-1", "run-2", "run-3", "run-4"}, storedRuns(t, s, "a-01")); diff != "" {
		t.Errorf("stored reports (-want +got):\n%s", diff)
	}
	// The single-report call sees the batch's rows: no second store.
	resp, err := nc.SendReport(ctx, &herdv1.SendReportRequest{Report: batch("run-2").Reports[0]})
	if err != nil || !resp.Duplicate {
		t.Errorf("SendReport of a run sent in a batch = %v, %v; want a duplicate", resp, err)
	}
	// Each report's events were kept, not only the first's.
	reps, err := s.st.Reports(ctx, "a-01", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if len(r.Events) != 1 || !strings.Contains(string(r.Events[0].ChangesJSON), r.RunID) {
			t.Errorf("report %s kept events %+v, want its own change", r.RunID, r.Events)
		}
	}
}

// TestSendReportsRefusesOneAlone: each bad report of a batch is refused
// with its reason and the rest are stored; past the node's quota a report
// is refused for a while, with the time to wait.
func TestSendReportsRefusesOneAlone(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) {
		o.MaxReportEvents = 3
		o.ReportBytesPerHour = 1 << 20
	})
	ctx := context.Background()
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	ok := func(run string) *herdv1.Report {
		return &herdv1.Report{RunId: run, Summary: &herdv1.Summary{Resources: 1, InSync: 1}}
	}
	big := func(run string, kib int) *herdv1.Report {
		return &herdv1.Report{RunId: run, Events: []*herdv1.Event{{Id: "exec:x", Type: "exec", Status: "failed", Output: strings.Repeat("o", kib<<10)}}}
	}
	manyEvents := ok("too-many-events")
	for i := range 4 {
		manyEvents.Events = append(manyEvents.Events, &herdv1.Event{Id: "file:/f" + strconv.Itoa(i), Status: "changed"})
	}
	resp, err := nc.SendReports(ctx, &herdv1.SendReportsRequest{Reports: []*herdv1.Report{
		ok("good-1"),
		{Summary: &herdv1.Summary{Resources: 1}}, // no run id
		manyEvents,
		{RunId: "audit-not-noop", Audit: true},
		big("more-than-an-hour", 1100), // never fits the 1 MiB an hour
		ok("good-2"),
		ok("good-1"), // twice in one batch
		big("fills-the-quota", 700),
		big("past-the-quota", 700),
		ok("good-3"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"good-1", "good-2", "fills-the-quota", "good-3"}, resp.AckedRunIds); diff != "" {
		t.Errorf("acked (-want +got):\n%s", diff)
	}
	type refusal struct {
		Run  string
		Code codes.Code
		Says string
	}
	want := []refusal{
		{"", codes.InvalidArgument, "needs a run id"},
		{"too-many-events", codes.InvalidArgument, "4 events, more than the 3"},
		{"audit-not-noop", codes.InvalidArgument, "must be a noop run"},
		{"more-than-an-hour", codes.InvalidArgument, "bytes an hour"},
		{"good-1", codes.InvalidArgument, "in the batch twice"},
		{"past-the-quota", codes.ResourceExhausted, "more reports than"},
	}
	var got []refusal
	for _, r := range resp.Refused {
		got = append(got, refusal{r.RunId, codes.Code(r.Code), ""})
		if i := len(got) - 1; i < len(want) && strings.Contains(r.Reason, want[i].Says) {
			got[i].Says = want[i].Says
		} else {
			got[i].Says = r.Reason
		}
		if codes.Code(r.Code) == codes.ResourceExhausted && r.RetryAfterMs < 60_000 {
			t.Errorf("%s: retry_after_ms = %d, want at least the minute 700 KiB of quota takes to refill", r.RunId, r.RetryAfterMs)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refused (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"fills-the-quota", "good-1", "good-2", "good-3"}, storedRuns(t, s, "a-01")); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
}

// TestSendReportsBounded: a batch past MaxBatchReports is refused whole,
// and one past the largest message by gRPC, before any of it is stored.
func TestSendReportsBounded(t *testing.T) {
	t.Parallel()
	s := startWith(t, func(o *Options) { o.MaxMessageBytes = 256 << 10 })
	ctx := context.Background()
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	var many herdv1.SendReportsRequest
	for i := range MaxBatchReports + 1 {
		many.Reports = append(many.Reports, &herdv1.Report{RunId: "run-" + strconv.Itoa(i)})
	}
	if _, err := nc.SendReports(ctx, &many); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "more than the 100") {
		t.Errorf("a batch of %d = %v, want INVALID_ARGUMENT naming the bound", len(many.Reports), err)
	}
	var large herdv1.SendReportsRequest
	for i := range 3 {
		large.Reports = append(large.Reports, &herdv1.Report{RunId: "large-" + strconv.Itoa(i),
			Events: []*herdv1.Event{{Id: "exec:x", Status: "failed", Output: strings.Repeat("o", 100<<10)}}})
	}
	if n := proto.Size(&large); n <= 256<<10 {
		t.Fatalf("the large batch is only %d bytes", n)
	}
	if _, err := nc.SendReports(ctx, &large); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a batch past the largest message = %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := storedRuns(t, s, "a-01"); len(got) != 0 {
		t.Errorf("a refused batch stored %v", got)
	}
}

// TestSendReportsIsANodeCall: the authorization table gives SendReports
// to nodes only, and the server holds to it on the wire.
func TestSendReportsIsANodeCall(t *testing.T) {
	t.Parallel()
	if r := methodRoles[herdv1.Node_SendReports_FullMethodName]; r != nodeRole {
		t.Errorf("methodRoles[SendReports] = %v, want nodeRole", r)
	}
	s, _ := startServer(t)
	ctx := context.Background()
	req := &herdv1.SendReportsRequest{Reports: []*herdv1.Report{{RunId: "r1"}}}
	if _, err := herdv1.NewNodeClient(dial(t, s, nil)).SendReports(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a certificate: %v, want Unauthenticated", err)
	}
	adm := admin(t, s)
	if _, err := herdv1.NewNodeClient(dial(t, s, &adm)).SendReports(ctx, req); status.Code(err) != codes.PermissionDenied {
		t.Errorf("with an admin certificate: %v, want PermissionDenied", err)
	}
	c := enroll(t, s, "a-01")
	nc := herdv1.NewNodeClient(dial(t, s, &c))
	if err := s.ca.Revoke(ctx, "a-01"); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.SendReports(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("with a revoked certificate: %v, want Unauthenticated", err)
	}
}

// FuzzSendReports feeds SendReports, a network entry point, whatever
// bytes a node could send: every report of a batch it takes is either
// acknowledged or refused with a code the agent acts on, never both,
// never lost, never a panic.
func FuzzSendReports(f *testing.F) {
	seed := func(req *herdv1.SendReportsRequest) {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&herdv1.SendReportsRequest{})
	seed(&herdv1.SendReportsRequest{Reports: []*herdv1.Report{{RunId: "r1", Summary: &herdv1.Summary{Resources: 1}},
		{RunId: "r2", Events: []*herdv1.Event{{Id: "file:/x", Status: "changed", Changes: []*herdv1.Change{{Attr: "mode", From: "1", To: "2", Sensitive: true}}}}},
		{RunId: "r1"}, {}, {RunId: "a", Audit: true}}})
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0xff})
	site := f.TempDir()
	writeFiles(f, site, testSite)
	s, err := New(context.Background(), Options{Site: site, Dir: f.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		MaxReportEvents: 8, ReportBytesPerHour: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	n := &nodeService{s: s}
	ctx := context.WithValue(context.Background(), identityKey{}, identity{name: "fuzz-01"})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req herdv1.SendReportsRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return // gRPC refuses it before the handler
		}
		resp, err := n.SendReports(ctx, &req)
		if err != nil {
			if c := status.Code(err); c != codes.InvalidArgument && c != codes.ResourceExhausted {
				t.Fatalf("SendReports = %v", err)
			}
			return
		}
		if got := len(resp.AckedRunIds) + len(resp.Refused); got != len(req.Reports) {
			t.Fatalf("%d reports: %d acked, %d refused", len(req.Reports), len(resp.AckedRunIds), len(resp.Refused))
		}
		for _, r := range resp.Refused {
			switch codes.Code(r.Code) {
			case codes.InvalidArgument, codes.ResourceExhausted:
			default:
				t.Fatalf("refused %q with code %v: %s", r.RunId, codes.Code(r.Code), r.Reason)
			}
			if r.Reason == "" {
				t.Fatalf("refused %q without a reason", r.RunId)
			}
		}
		for _, run := range resp.AckedRunIds {
			if run == "" {
				t.Fatal("acked a report without a run id")
			}
		}
	})
}

// TestNextCheckinSlot: a node's slot is FNV-1a of its name, as it was
// with hash/fnv (the inline hash must not move a fleet's slots), at least
// half an interval ahead and within one and a half.
func TestNextCheckinSlot(t *testing.T) {
	t.Parallel()
	s := &Server{opts: Options{CheckinInterval: 30 * time.Minute}}
	now := time.Date(2026, 12, 3, 14, 7, 11, 0, time.UTC)
	for _, node := range []string{"", "a-01", "web-01.example.com", "ünïcode", strings.Repeat("x", 300)} {
		h := fnv.New64a()
		h.Write([]byte(node))
		want := now.Truncate(s.opts.CheckinInterval).Add(time.Duration(h.Sum64() % uint64(s.opts.CheckinInterval)))
		for want.Before(now.Add(s.opts.CheckinInterval / 2)) {
			want = want.Add(s.opts.CheckinInterval)
		}
		if got := s.nextCheckin(node, now); !got.Equal(want) {
			t.Errorf("nextCheckin(%q) = %s, want %s", node, got, want)
		}
	}
}
