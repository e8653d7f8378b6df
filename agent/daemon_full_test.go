package agent

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"
)

// TestDaemonFullDisk: when the run cannot be recorded or spooled (sqlite's
// "database or disk is full"), the server still gets the report, from
// memory when the spool failed, with a failed herd:state event, so that it
// shows the node failing rather than its last green run.
func TestDaemonFullDisk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(t *testing.T, db *sql.DB)
		want   string // in the herd:state event's error
	}{
		{"disk full", func(t *testing.T, db *sql.DB) {
			// The database may not grow by one more page.
			var pages int
			if err := db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(`PRAGMA max_page_count = ` + strconv.Itoa(pages)); err != nil {
				t.Fatal(err)
			}
		}, "full"},
		{"spool unwritable", func(t *testing.T, db *sql.DB) {
			// The history takes the run; only the spool fails, so the
			// report can reach the server only from memory.
			if _, err := db.Exec(`DROP TABLE report_spool`); err != nil {
				t.Fatal(err)
			}
		}, "spooling the report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFakeServer(t)
			big := strings.Repeat("a line of the managed file\n", 4000) // ~100 KB: overflow pages
			fs.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", big)), nil, false)
			a := newTestAgent(t, fs)
			ctx := context.Background()
			if _, err := a.d.RunOnce(ctx); err != nil {
				t.Fatalf("first run: %v", err)
			}
			tt.damage(t, a.d.st.db)
			a.write(t, "etc/motd", strings.Repeat("edited by hand\n", 8000))
			r, _ := a.d.RunOnce(ctx)
			if r == nil {
				t.Fatal("no report from the run")
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
			if !strings.Contains(state, tt.want) {
				t.Errorf("herd:state event error = %q, want a failed event saying %q", state, tt.want)
			}
			if got.Summary.GetFailed() == 0 {
				t.Errorf("summary %v: want failures counted", got.Summary)
			}
		})
	}
}
