package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/api/herdv1"
)

// bigReport is the report of a run that changed n files of size bytes
// each, with a diff of the whole content.
func bigReport(n, size int) *Report {
	r := &Report{RunID: NewRunID(), Node: "web-01", Version: "v1"}
	for i := range n {
		// Multi-byte runes, so that a cut in the middle of one shows.
		diff := strings.Repeat("+é", size/3)
		r.Events = append(r.Events, Event{ID: fmt.Sprintf("file:/srv/f%02d", i), Type: "file", Status: Changed,
			Changes: []resources.Change{{Attr: "content", Diff: diff, Action: resources.Update}}})
		r.Summary.add(r.Events[i])
	}
	return r
}

// TestReportBound: twenty changed 900 KB files make a report of about a
// megabyte, not twenty; every event is still there, each cut diff says
// how much was left out, and the text stays valid UTF-8.
func TestReportBound(t *testing.T) {
	t.Parallel()
	r := bigReport(20, 900<<10)
	r.bound()
	b, err := proto.Marshal(r.Proto())
	if err != nil {
		t.Fatalf("marshalling the bounded report: %v", err)
	}
	if len(b) > maxReportText+64<<10 {
		t.Errorf("bounded report is %d bytes, want at most about %d", len(b), maxReportText)
	}
	if len(r.Events) != 20 || r.Summary.Changed != 20 {
		t.Errorf("bound dropped events: %d events, %d changed", len(r.Events), r.Summary.Changed)
	}
	for _, e := range r.Events {
		d := e.Changes[0].Diff
		if !strings.Contains(d, "bytes more") {
			t.Errorf("%s: diff of %d bytes has no \"bytes more\" note", e.ID, len(d))
		}
		if !utf8.ValidString(d) {
			t.Errorf("%s: cut diff is not valid UTF-8", e.ID)
		}
		if len(d) > maxEventText+64 {
			t.Errorf("%s: diff is %d bytes, more than the event bound %d", e.ID, len(d), maxEventText)
		}
	}
	small := bigReport(2, 100)
	want := small.Events[0].Changes[0].Diff
	small.bound()
	if got := small.Events[0].Changes[0].Diff; got != want {
		t.Errorf("a small diff was changed: %q, want %q", got, want)
	}
}

// TestSendSpooledTooLarge: a report the server refuses for its size (one
// an older agent spooled before reports were bounded) is cut down and
// sent, in its place in the order, and the reports behind it follow; it
// is never retried as it was.
func TestSendSpooledTooLarge(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t) // gRPC's default limit: 4 MiB received
	a := newTestAgent(t, fs)
	ctx := context.Background()
	huge := bigReport(20, 900<<10).Proto() // about 20 MB, not bounded
	huge.RunId = "huge"
	for _, p := range []*herdv1.Report{huge, {RunId: "after"}} {
		if _, err := a.d.st.spoolReport(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	n, err := sendSpooled(ctx, a.d.st, a.d.node, testLog(t))
	if err != nil || n != 2 {
		t.Fatalf("sendSpooled = %d, %v; want both sent", n, err)
	}
	if diff := cmp.Diff([]string{"huge", "after"}, fs.storedIDs()); diff != "" {
		t.Errorf("reports at the server (-want +got):\n%s", diff)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.receipts["huge"] != 1 {
		t.Errorf("the cut report was received %d times, want once", fs.receipts["huge"])
	}
	left, err := a.d.st.SpooledReports(ctx)
	if err != nil || len(left) != 0 {
		t.Errorf("spool after sending = %v, %v; want empty", left, err)
	}
}

// TestCutDownIdempotent: a report with nothing left to cut is not cut
// again (else a report refused even when cut would go round for ever).
func TestCutDownIdempotent(t *testing.T) {
	t.Parallel()
	r := bigReport(3, 1000).Proto()
	r.Events[0].Error = strings.Repeat("x", 5000)
	c := cutDown(r)
	if c == nil {
		t.Fatal("cutDown of a report with diffs = nil")
	}
	if c.Events[0].Changes[0].Diff != droppedText || len(c.Events[0].Error) > 1100 || len(c.Events) != 3 {
		t.Errorf("cut report: diff %q, error %d bytes, %d events", c.Events[0].Changes[0].Diff, len(c.Events[0].Error), len(c.Events))
	}
	if again := cutDown(c); again != nil {
		t.Error("cutDown cut an already cut report again")
	}
}

// FuzzReportBound: whatever text a resource puts in its events, the
// bounded report stays within its bounds, valid UTF-8 where the input was,
// and marshals.
func FuzzReportBound(f *testing.F) {
	f.Add("-a\n+b\n", "out", 1, 10)
	f.Add(strings.Repeat("é", 40000), "", 3, 70000)
	f.Add("\xff\xfe", strings.Repeat("x", 1<<17), 2, 0)
	f.Fuzz(func(t *testing.T, diff, output string, n, pad int) {
		n = 1 + abs(n)%40
		pad = abs(pad) % (200 << 10)
		r := &Report{RunID: "r"}
		for i := range n {
			r.Events = append(r.Events, Event{ID: fmt.Sprintf("file:/f%d", i), Status: Changed, Output: output,
				Changes: []resources.Change{{Attr: "content", Diff: diff + strings.Repeat("y", pad)}}})
		}
		r.bound()
		total := 0
		for _, e := range r.Events {
			size := len(e.Output) + len(e.Error)
			for _, c := range e.Changes {
				size += len(c.From) + len(c.To) + len(c.Diff)
				if utf8.ValidString(diff) && !utf8.ValidString(c.Diff) {
					t.Fatalf("a cut made valid UTF-8 invalid: %q", c.Diff)
				}
			}
			// Each cut adds a short note past the budget.
			if size > maxEventText+5*40 {
				t.Fatalf("%s carries %d bytes of text, more than %d", e.ID, size, maxEventText)
			}
			total += size
		}
		if total > maxReportText+n*5*40 {
			t.Fatalf("the report carries %d bytes of text, more than %d", total, maxReportText)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
