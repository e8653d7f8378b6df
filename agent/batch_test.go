package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	"github.com/herdcm/herd/api/herdv1"
)

// spoolRuns puts reports with the given run ids into a's spool, in order.
func spoolRuns(t *testing.T, a *testAgent, runs ...string) {
	t.Helper()
	for _, run := range runs {
		if _, err := a.d.st.spoolReport(context.Background(), &herdv1.Report{RunId: run, Summary: &herdv1.Summary{Resources: 1, InSync: 1}}); err != nil {
			t.Fatal(err)
		}
	}
}

func runIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return ids
}

// spoolLeft lists the run ids still in a's spool, oldest first.
func spoolLeft(t *testing.T, a *testAgent) []string {
	t.Helper()
	left, err := a.d.st.SpooledReports(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range left {
		ids = append(ids, r.RunID)
	}
	return ids
}

// TestSendSpooledBatches: a backlog goes in batches of maxBatch, in
// order, each report stored once; a batch whose answer was lost is sent
// again and stored once all the same (one receipt more, no second row).
func TestSendSpooledBatches(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.batches, fs.dropAcks = true, 1
	a := newTestAgent(t, fs)
	ctx := context.Background()
	runs := runIDs("run", 2*maxBatch+5)
	spoolRuns(t, a, runs...)

	n, err := sendSpooled(ctx, a.d.st, a.d.node, testLog(t))
	var re *RPCError
	if !errors.As(err, &re) || re.Code() != codes.Unavailable || n != 0 {
		t.Fatalf("sendSpooled with the first answer lost = %d, %v; want 0, UNAVAILABLE", n, err)
	}
	if diff := cmp.Diff(runs, spoolLeft(t, a)); diff != "" {
		t.Fatalf("spool after a lost answer (-want +got):\n%s", diff)
	}
	n, err = sendSpooled(ctx, a.d.st, a.d.node, testLog(t))
	if err != nil || n != len(runs) {
		t.Fatalf("sendSpooled again = %d, %v; want %d sent", n, err, len(runs))
	}
	if diff := cmp.Diff(runs, fs.storedIDs()); diff != "" {
		t.Errorf("stored at the server (-want +got):\n%s", diff)
	}
	fs.mu.Lock()
	calls, firstReceipts, lastReceipts := fs.batchCalls, fs.receipts[runs[0]], fs.receipts[runs[len(runs)-1]]
	fs.mu.Unlock()
	if calls != 4 || firstReceipts != 2 || lastReceipts != 1 {
		t.Errorf("%d SendReports calls, the first report received %d times, the last %d; want 4 calls (one lost, three of at most %d), 2 and 1",
			calls, firstReceipts, lastReceipts, maxBatch)
	}
	if left := spoolLeft(t, a); len(left) != 0 {
		t.Errorf("spool after sending: %v, want empty", left)
	}
}

// TestSendSpooledOldServer: a server without SendReports (UNIMPLEMENTED)
// gets every report one at a time with SendReport, after one try.
func TestSendSpooledOldServer(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t) // batches false: an older server
	a := newTestAgent(t, fs)
	runs := runIDs("old", 5)
	spoolRuns(t, a, runs...)
	n, err := sendSpooled(context.Background(), a.d.st, a.d.node, testLog(t))
	if err != nil || n != len(runs) {
		t.Fatalf("sendSpooled to an old server = %d, %v; want %d sent", n, err, len(runs))
	}
	if diff := cmp.Diff(runs, fs.storedIDs()); diff != "" {
		t.Errorf("stored at the server (-want +got):\n%s", diff)
	}
	if left := spoolLeft(t, a); len(left) != 0 {
		t.Errorf("spool after sending: %v, want empty", left)
	}
}

// TestSendSpooledBatchRefusals: a report refused as invalid is dropped
// alone; one refused for now (the quota) stays spooled with the server's
// retry hint, while the reports acknowledged beside it leave the spool.
func TestSendSpooledBatchRefusals(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.batches = true
	fs.refuseBatch = map[string]*herdv1.RefusedReport{
		"r-1": {RunId: "r-1", Code: int32(codes.InvalidArgument), Reason: "the report has 9 events, more than the 3 this server accepts"},
		"r-3": {RunId: "r-3", Code: int32(codes.ResourceExhausted), Reason: "node web-01 sent more reports than the 1 bytes an hour", RetryAfterMs: 90_000},
	}
	a := newTestAgent(t, fs)
	spoolRuns(t, a, "r-0", "r-1", "r-2", "r-3", "r-4")
	n, err := sendSpooled(context.Background(), a.d.st, a.d.node, testLog(t))
	var re *RPCError
	if !errors.As(err, &re) || re.Code() != codes.ResourceExhausted || re.RetryAfter != 90*time.Second || !strings.Contains(err.Error(), "r-3") {
		t.Fatalf("sendSpooled = %d, %v; want RESOURCE_EXHAUSTED for r-3 with a 90s retry hint", n, err)
	}
	if n != 3 {
		t.Errorf("sent = %d, want 3", n)
	}
	if diff := cmp.Diff([]string{"r-0", "r-2", "r-4"}, fs.storedIDs()); diff != "" {
		t.Errorf("stored at the server (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"r-3"}, spoolLeft(t, a)); diff != "" {
		t.Errorf("spool left (-want +got):\n%s", diff)
	}
}

// TestSpooledBatchBytes: a batch holds the oldest report however large,
// then only what fits maxBytes.
func TestSpooledBatchBytes(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	a := newTestAgent(t, fs)
	ctx := context.Background()
	for _, r := range []*herdv1.Report{
		{RunId: "big", Events: []*herdv1.Event{{Output: strings.Repeat("x", 3000)}}},
		{RunId: "small-1"}, {RunId: "small-2"},
		{RunId: "mid", Events: []*herdv1.Event{{Output: strings.Repeat("x", 1500)}}},
	} {
		if _, err := a.d.st.spoolReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		n, bytes int
		want     []string
	}{
		{10, 1000, []string{"big"}},
		{10, 3100, []string{"big", "small-1", "small-2"}},
		{2, 1 << 20, []string{"big", "small-1"}},
		{10, 1 << 20, []string{"big", "small-1", "small-2", "mid"}},
	} {
		got, err := a.d.st.spooledBatch(ctx, tc.n, tc.bytes)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range got {
			ids = append(ids, e.runID)
		}
		if diff := cmp.Diff(tc.want, ids); diff != "" {
			t.Errorf("spooledBatch(%d, %d) (-want +got):\n%s", tc.n, tc.bytes, diff)
		}
	}
}
