package agent

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// TestDaemonFullDisk: when the run can be neither recorded nor spooled
// (sqlite's "database or disk is full"), the server still gets the report,
// from memory, with a failed herd:state event, so that it shows the node
// failing rather than its last green run.
func TestDaemonFullDisk(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	big := strings.Repeat("a line of the managed file\n", 4000) // ~100 KB: overflow pages
	fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", big)), nil, false)
	a := newTestAgent(t, fs)
	ctx := context.Background()
	if _, err := a.d.RunOnce(ctx); err != nil {
		t.Fatalf("first run: %v", err)
	}
	// Fill the disk: the database may not grow by one more page.
	var pages int
	if err := a.d.st.db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := a.d.st.db.Exec(`PRAGMA max_page_count = ` + strconv.Itoa(pages)); err != nil {
		t.Fatal(err)
	}
	a.write(t, "etc/motd", strings.Repeat("edited by hand\n", 8000))
	r, _ := a.d.RunOnce(ctx)
	if r == nil {
		t.Fatal("no report from the run on a full disk")
	}
	got := fs.lastReport()
	if got == nil || got.RunId != r.RunID {
		t.Fatalf("the server's last report = %v, want run %s", got.GetRunId(), r.RunID)
	}
	var state string
	for _, e := range got.Events {
		if e.Id == "herd:state" && e.Status == string(Failed) {
			state = e.Error
		}
	}
	if !strings.Contains(state, "full") {
		t.Errorf("herd:state event error = %q, want a failed event saying the disk is full", state)
	}
	if got.Summary.GetFailed() == 0 {
		t.Errorf("summary %v: want failures counted", got.Summary)
	}
}
