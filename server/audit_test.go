package server

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/store"
)

// auditControls are small test controls: the motd must not mention an
// "evil" os family, the last run must have no failure, nothing may drift.
var auditControls = map[string]string{
	"policies/audit/motd.rego": `# METADATA
# title: motd names no evil family
# custom:
#   id: motd-clean
#   severity: high
#   reference: TEST-1.1
#   remediation: Stop being evil.
package herd.audit.motd

violations contains {"message": "motd mentions evil", "resource": r.id} if {
	r := input.resources["file:/etc/motd"]
	contains(r.attrs.content, "evil")
}
`,
	"policies/audit/run.rego": `# METADATA
# title: the last run failed nothing
# custom:
#   id: last-run-clean
#   severity: medium
package herd.audit.run

violations contains {"message": sprintf("%s failed: %s", [e.id, e.error]), "resource": e.id} if {
	some e in input.report.events
	e.status == "failed"
}
`,
	"policies/audit/drift.rego": `# METADATA
# title: nothing drifted
# custom:
#   id: no-drift
#   severity: low
package herd.audit.drift

violations contains {"message": sprintf("%s differs: %s is %q, want %q", [d.id, a.name, a.from, a.to]), "resource": d.id} if {
	some d in input.drift
	some a in d.attrs
}
`,
}

func auditSite(greeting string) map[string]string {
	files := rolloutSite("", greeting)
	maps.Copy(files, auditControls)
	return files
}

// audit awaits the auditor's pass and asks the server for req.
func (h *rolloutHarness) audit(req *herdv1.AuditRequest) *herdv1.AuditResponse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.s.awaitAudits(ctx); err != nil {
		h.t.Fatalf("awaiting the audits: %v", err)
	}
	resp, err := h.admin.Audit(ctx, req)
	if err != nil {
		h.t.Fatalf("Audit(%v): %v", req, err)
	}
	return resp
}

// verdicts flattens an answer: "control pass/fail/no-data/error percent"
// per control, "node control state: evidence" per result.
func verdicts(resp *herdv1.AuditResponse) []string {
	var out []string
	for _, c := range resp.Controls {
		out = append(out, fmt.Sprintf("%s %d/%d/%d/%d %.0f%%", c.Id, c.Pass, c.Fail, c.NoData, c.Error, c.PercentCompliant))
	}
	for _, r := range resp.Results {
		var ev []string
		for _, e := range r.Evidence {
			ev = append(ev, e.Resource+" "+e.Message)
		}
		line := r.Node + " " + r.Control + " " + r.State
		if len(ev) > 0 || r.Error != "" {
			line += ": " + strings.Join(ev, "; ") + r.Error
		}
		out = append(out, line)
	}
	return out
}

// TestAuditFleet: a compliant and a non-compliant node, a failed run, a
// node made non-compliant by a hand edit (drift), the history at a past
// time, one control, one node, and paging.
func TestAuditFleet(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, auditSite("hello"), "n-0", "n-1")
	h.checkinFacts("n-1", "evil")
	h.report("n-1", h.nodes["n-1"].etag, false, []string{"file:/etc/motd"})

	got := verdicts(h.audit(&herdv1.AuditRequest{}))
	want := []string{
		"motd-clean 1/1/0/0 50%",
		"last-run-clean 1/1/0/0 50%",
		"no-drift 2/0/0/0 100%",
		"n-0 last-run-clean pass", "n-0 motd-clean pass", "n-0 no-drift pass",
		"n-1 last-run-clean fail: file:/etc/motd file:/etc/motd failed: permission denied",
		"n-1 motd-clean fail: file:/etc/motd motd mentions evil",
		"n-1 no-drift pass",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("Audit() (-want +got):\n%s", d)
	}
	before := time.Now()
	time.Sleep(2 * time.Millisecond) // the store's times are nanoseconds, the request's milliseconds

	// A hand edit on n-0: its audit run finds the motd differing.
	fn := h.nodes["n-0"]
	fn.runs++
	r := &herdv1.Report{RunId: "n-0-audit", CatalogDigest: fn.etag, Noop: true, Audit: true, StartedUnixNs: time.Now().UnixNano(),
		Summary: &herdv1.Summary{Resources: 1, Drift: 1},
		Events: []*herdv1.Event{{Id: "file:/etc/motd", Type: "file", Status: "drift",
			Changes: []*herdv1.Change{{Attr: "content", From: "hacked\n", To: "hello n-0 on debian\n"}}}}}
	if _, err := fn.c.SendReport(context.Background(), &herdv1.SendReportRequest{Report: r}); err != nil {
		t.Fatal(err)
	}
	got = verdicts(h.audit(&herdv1.AuditRequest{Node: "n-0"}))
	want = []string{
		"motd-clean 1/0/0/0 100%",
		"last-run-clean 1/0/0/0 100%",
		"no-drift 0/1/0/0 0%",
		"n-0 last-run-clean pass", "n-0 motd-clean pass",
		`n-0 no-drift fail: file:/etc/motd file:/etc/motd differs: content is "hacked\n", want "hello n-0 on debian\n"`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Audit(n-0) after the hand edit (-want +got):\n%s", d)
	}
	// As it stood before the edit.
	got = verdicts(h.audit(&herdv1.AuditRequest{Control: "no-drift", AtUnixMs: before.UnixMilli()}))
	want = []string{"no-drift 2/0/0/0 100%", "n-0 no-drift pass", "n-1 no-drift pass"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Audit(no-drift, at before the edit) (-want +got):\n%s", d)
	}
	// Pages of one node.
	p1 := h.audit(&herdv1.AuditRequest{PageSize: 1})
	p2 := h.audit(&herdv1.AuditRequest{PageSize: 1, PageToken: p1.NextPageToken})
	if len(p1.Results) != 3 || p1.Results[0].Node != "n-0" || p1.NextPageToken != "n-0" || len(p2.Results) != 3 || p2.Results[0].Node != "n-1" || p2.NextPageToken != "" {
		t.Errorf("pages of one node: %v then %v", verdicts(p1), verdicts(p2))
	}
	if _, err := h.admin.Audit(context.Background(), &herdv1.AuditRequest{Control: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Audit(control nope) = %v, want NotFound", err)
	}

	// A real run that repairs it: the drift and the failure are gone.
	h.report("n-0", fn.etag, false, nil)
	h.report("n-1", h.nodes["n-1"].etag, false, nil)
	got = verdicts(h.audit(&herdv1.AuditRequest{Control: "no-drift"}))
	if d := cmp.Diff([]string{"no-drift 2/0/0/0 100%", "n-0 no-drift pass", "n-1 no-drift pass"}, got); d != "" {
		t.Errorf("Audit(no-drift) after a real run (-want +got):\n%s", d)
	}

	// A deactivated node is left out.
	if _, err := h.lifecycle("n-1", "deactivate"); err != nil {
		t.Fatal(err)
	}
	got = verdicts(h.audit(&herdv1.AuditRequest{Control: "motd-clean"}))
	if d := cmp.Diff([]string{"motd-clean 1/0/0/0 100%", "n-0 motd-clean pass"}, got); d != "" {
		t.Errorf("Audit(motd-clean) with n-1 deactivated (-want +got):\n%s", d)
	}

	// A purged node is forgotten, its history too.
	if _, err := h.lifecycle("n-1", "purge"); err != nil {
		t.Fatal(err)
	}
	got = verdicts(h.audit(&herdv1.AuditRequest{Control: "no-drift", AtUnixMs: before.UnixMilli()}))
	if d := cmp.Diff([]string{"no-drift 1/0/0/0 100%", "n-0 no-drift pass"}, got); d != "" {
		t.Errorf("Audit(no-drift, at before the edit) after purging n-1 (-want +got):\n%s", d)
	}
	delete(h.nodes, "n-1")

	// After a restart, the results are those stored, and a new site
	// version evaluates the fleet again from the store's reports.
	h.restart()
	h.commit(auditSite("evil greetings"))
	h.checkin("n-0")
	got = verdicts(h.audit(&herdv1.AuditRequest{Control: "motd-clean"}))
	if d := cmp.Diff([]string{"motd-clean 0/1/0/0 0%", "n-0 motd-clean fail: file:/etc/motd motd mentions evil"}, got); d != "" {
		t.Errorf("Audit(motd-clean) at the evil version (-want +got):\n%s", d)
	}
}

// TestAuditBrokenControl: controls that do not compile leave the results
// as they were, say why in Audit and SiteStatus, and never block the
// version.
func TestAuditBrokenControl(t *testing.T) {
	t.Parallel()
	h := newRolloutHarness(t, auditSite("hello"), "n-0")
	h.audit(&herdv1.AuditRequest{})
	broken := auditSite("changed")
	broken["policies/audit/bad.rego"] = "# METADATA\n# title: bad\n# custom:\n#   id: bad\n#   severity: high\npackage herd.audit.bad\n\nviolations contains x if { x := input.reprot }\n"
	h.commit(broken)
	resp := h.audit(&herdv1.AuditRequest{})
	if !strings.Contains(resp.AuditError, "bad.rego:") {
		t.Errorf("Audit().AuditError = %q, want the bad control's file:line", resp.AuditError)
	}
	if got := len(resp.Results); got != 3 {
		t.Errorf("Audit() with broken controls has %d results, want the 3 judged before", got)
	}
	ss, err := h.admin.SiteStatus(context.Background(), &herdv1.SiteStatusRequest{})
	if err != nil || ss.AuditError != resp.AuditError {
		t.Errorf("SiteStatus().AuditError = %q, %v; want %q", ss.GetAuditError(), err, resp.AuditError)
	}
	before := h.nodes["n-0"].etag
	if h.checkin("n-0"); h.nodes["n-0"].etag == before {
		t.Errorf("the version with broken controls did not ship to n-0")
	}
}

// TestAuditStale: a node without a report within AuditStale is no-data
// for every control.
func TestAuditStale(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(o *Options) { o.AuditStale = time.Nanosecond }, auditSite("hello"), "n-0")
	got := verdicts(h.audit(&herdv1.AuditRequest{}))
	want := []string{
		"motd-clean 0/0/1/0 0%", "last-run-clean 0/0/1/0 0%", "no-drift 0/0/1/0 0%",
		"n-0 last-run-clean no-data", "n-0 motd-clean no-data", "n-0 no-drift no-data",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Audit() of a stale node (-want +got):\n%s", d)
	}
}

// TestAPIAudits: GET /api/v1/audits answers what Admin.Audit answers, with
// its filters, and refuses a time it cannot read.
func TestAPIAudits(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(o *Options) { o.HTTPListen = "127.0.0.1:0" }, auditSite("hello"), "n-0", "n-1")
	h.checkinFacts("n-1", "evil")
	want := h.audit(&herdv1.AuditRequest{})
	c := webClient(t, h.s, h.adminCert)
	var got struct {
		Controls []struct {
			ID   string `json:"id"`
			Pass int    `json:"pass"`
			Fail int    `json:"fail"`
		} `json:"controls"`
		Results []struct {
			Node, Control, State string
		} `json:"results"`
	}
	apiGet(t, c, h.s, "/api/v1/audits", http.StatusOK, &got)
	if len(got.Controls) != len(want.Controls) || len(got.Results) != len(want.Results) {
		t.Fatalf("GET /api/v1/audits = %+v, want the %d controls and %d results of Admin.Audit", got, len(want.Controls), len(want.Results))
	}
	for i, c := range want.Controls {
		if g := got.Controls[i]; g.ID != c.Id || g.Pass != int(c.Pass) || g.Fail != int(c.Fail) {
			t.Errorf("control %d = %+v, want %s %d/%d", i, g, c.Id, c.Pass, c.Fail)
		}
	}
	apiGet(t, c, h.s, "/api/v1/audits?control=motd-clean&node=n-1&at="+url.QueryEscape(time.Now().Add(time.Second).UTC().Format(time.RFC3339)), http.StatusOK, &got)
	if len(got.Results) != 1 || got.Results[0].Node != "n-1" || got.Results[0].Control != "motd-clean" || got.Results[0].State != "fail" {
		t.Errorf("one control of one node = %+v, want n-1 motd-clean fail", got.Results)
	}
	apiGet(t, c, h.s, "/api/v1/audits?at=yesterday", http.StatusBadRequest, nil)
}

// TestAuditPrefetch: a fleet's audit reads the approved catalogs that are
// no longer in memory in one query a chunk, and judges each node as
// reading its catalog alone does; the catalogs read so are not kept in
// the recent cache.
func TestAuditPrefetch(t *testing.T) {
	t.Parallel()
	s, names := benchAuditServer(t, auditChunk+5)
	ctx := context.Background()
	st := s.defaultSite()
	s.recent = newByteCache(64 << 20)
	pre := s.prefetchCatalogs(ctx, st, names)
	if len(pre) != len(names) {
		t.Fatalf("prefetchCatalogs read %d catalogs, want %d (one a node)", len(pre), len(names))
	}
	for _, node := range names {
		cur, _ := s.compiles.get(node)
		if _, ok := s.recent.get(cur.etag); ok {
			t.Errorf("%s: a prefetched catalog went into the recent cache", node)
		}
	}
	now := time.Now()
	for _, node := range names {
		// Forget the digest so that both evaluations return their
		// records.
		s.audits.mu.Lock()
		s.audits.nodes[node].digest = [32]byte{}
		s.audits.mu.Unlock()
		got, _, changed := s.auditNode(ctx, st, node, now, pre)
		if !changed {
			t.Fatalf("%s: not judged", node)
		}
		want, _, _ := s.auditNode(ctx, st, node, now, nil)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: judged over the prefetched catalog (-alone +prefetched):\n%s", node, diff)
		}
		if !slices.ContainsFunc(got, func(r store.AuditRecord) bool { return r.State == "fail" }) {
			t.Errorf("%s: no control fails; the bench controls fail on the drifted file", node)
		}
	}
}
