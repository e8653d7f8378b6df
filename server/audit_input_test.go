package server

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/policies"
	"github.com/herdcm/herd/server/store"
)

// TestApplyReport: the last run is the newest real run and the drift that
// of the newest report that checked the host, by start, whatever the
// order reports arrive in (a spooled one comes late); a plain noop run
// (a rehearsal) is neither.
func TestApplyReport(t *testing.T) {
	t.Parallel()
	at := func(s int) time.Time { return time.Unix(1_750_000_000+int64(s), 0) }
	drifted := func(id string) []store.Event {
		return []store.Event{{ID: id, Type: "file", Status: "drift", ChangesJSON: []byte(`[{"attr":"mode","from":"0600","to":"0644"}]`)}}
	}
	real1 := store.Report{RunID: "real-1", Started: at(10), Received: at(11), Events: drifted("file:/a")}
	audit2 := store.Report{RunID: "audit-2", Noop: true, Audit: true, Started: at(20), Received: at(21),
		Events: []store.Event{{ID: "file:/b", Type: "file", Status: "changed", Noop: true, ChangesJSON: []byte(`[{"attr":"content","from":"x","to":"y"}]`)}}}
	rehearsal := store.Report{RunID: "noop-3", Noop: true, Started: at(30), Received: at(31), Events: drifted("file:/c")}
	late := store.Report{RunID: "real-0", Started: at(5), Received: at(40), Events: []store.Event{{ID: "exec:x", Type: "exec", Status: "failed", Error: "boom"}}}

	n := &auditNode{}
	for _, r := range []store.Report{audit2, rehearsal, real1, late} {
		applyReport(n, r)
	}
	if n.report == nil || n.report.RunID != "real-1" {
		t.Errorf("last run = %+v, want real-1", n.report)
	}
	want := []policies.Drift{{ID: "file:/b", Attrs: []policies.DriftAttr{{Name: "content", From: "x", To: "y"}}}}
	if d := cmp.Diff(want, n.drift); d != "" {
		t.Errorf("drift (-want +got):\n%s", d)
	}
	if !n.received.Equal(at(40)) {
		t.Errorf("received = %v, want the late report's %v", n.received, at(40))
	}
	// A real run after the audit run: its own drift (none) wins.
	applyReport(n, store.Report{RunID: "real-4", Started: at(50), Received: at(51)})
	if n.drift != nil || n.report.RunID != "real-4" {
		t.Errorf("after real-4: drift %v, last run %s; want none, real-4", n.drift, n.report.RunID)
	}
}

// FuzzWireResult: whatever the store holds as a result's evidence (its
// own JSON, or a row written by another version), the answer is built
// without a panic, and a fail always has its evidence.
func FuzzWireResult(f *testing.F) {
	f.Add("fail", []byte(`[{"message":"m","resource":"file:/x"}]`))
	f.Add("fail", []byte(`not json`))
	f.Add("error", []byte("policies/audit/x.rego:3: boom"))
	f.Add("pass", []byte(nil))
	f.Fuzz(func(t *testing.T, state string, evidence []byte) {
		r := wireResult(store.AuditRecord{Node: "n", Control: "c", State: state, Evidence: evidence})
		if state == "fail" && len(evidence) > 0 && string(evidence) != "null" && string(evidence) != "[]" && len(r.Evidence) == 0 {
			t.Errorf("wireResult(fail, %q) has no evidence", evidence)
		}
	})
}
