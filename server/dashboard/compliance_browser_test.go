package dashboard_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/auditreport"
	"github.com/herdcm/herd/server/dashboard"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// complianceSite manages a motd naming the node, with two controls: one
// that node-2's motd fails (it names node-2) and one every node passes.
var complianceSite = map[string]string{
	"nodes.toml": "[[node]]\nroles = [\"base\"]\n",
	"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "hello {{ .node }}\n"
`,
	"policies/audit/motd.rego": `# METADATA
# title: the motd names no second node
# custom:
#   id: motd-no-second
#   severity: high
#   reference: TEST-1.1
#   remediation: Rename the node.
package herd.audit.motd

violations contains {"message": sprintf("%s names <b>node-2</b>", [r.id]), "resource": r.id} if {
	r := input.resources["file:/etc/motd"]
	contains(r.attrs.content, "node-2")
}
`,
	"policies/audit/run.rego": `# METADATA
# title: the last run failed nothing
# custom:
#   id: last-run-clean
#   severity: medium
package herd.audit.run

violations contains sprintf("%s failed", [e.id]) if {
	some e in input.report.events
	e.status == "failed"
}
`,
}

// awaitAudit waits until the server has judged every control on n nodes
// and returns its whole answer.
func awaitAudit(t *testing.T, f *fleet.Fleet, n int) *herdv1.AuditResponse {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := f.Admin.Audit(context.Background(), &herdv1.AuditRequest{})
		if err != nil {
			t.Fatal(err)
		}
		judged := 0
		for _, r := range resp.Results {
			if r.State != "no-data" {
				judged++
			}
		}
		if len(resp.Controls) > 0 && judged == n*len(resp.Controls) {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit judged %d results, want %d: %v", judged, n*len(resp.Controls), resp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requests records the URL of every request a tab sends.
type requests struct {
	mu   sync.Mutex
	urls []string
}

func (r *requests) listen(t *testing.T, tab context.Context) {
	t.Helper()
	err := chromedp.Listen(tab, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			r.mu.Lock()
			r.urls = append(r.urls, e.Request.URL)
			r.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("enabling the network domain: %v", err)
	}
}

// take returns the URLs recorded since the last take.
func (r *requests) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.urls
	r.urls = nil
	return out
}

// TestBrowserCompliance runs a real fleet of two nodes, one compliant and
// one not, and walks the compliance page in headless Chromium: the nav
// links to it, the controls show their counts, the failing node is
// listed with its evidence (as text) and links to its node page, which
// lists its control results; the overview's compliance column says the
// same. Then it opens the HTML report herd audit --format html writes,
// from a file:// URL with the network offline, and checks that it shows
// the controls and the failing node and loads nothing but itself.
func TestBrowserCompliance(t *testing.T) {
	t.Parallel()
	tab := needBrowser(t)
	f := fleet.NewFleet(t, testkit.WriteSite(t, complianceSite), 2)
	f.AwaitConverged(60*time.Second, nil)
	resp := awaitAudit(t, f, 2)
	srv := httptest.NewServer(dashboard.New(f.Server.Dashboard(), dashboard.Options{}))
	t.Cleanup(srv.Close)
	dir := artifacts(t)
	var reqs requests
	reqs.listen(t, tab)

	do(t, tab, "overview → compliance",
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(css(`#nodes`)),
		chromedp.Click(css(`header a[href="/compliance"]`)),
		chromedp.WaitVisible(css(`#controls`)),
	)
	row := get(t, tab, chromedp.Text(css(`#control-motd-no-second`)))
	for _, want := range []string{"motd-no-second", "the motd names no second node", "high", "TEST-1.1", "50.0%"} {
		if !strings.Contains(row, want) {
			t.Errorf("the motd control's row lacks %q: %q", want, row)
		}
	}
	if row := get(t, tab, chromedp.Text(css(`#control-last-run-clean`))); !strings.Contains(row, "100.0%") {
		t.Errorf("the last-run control's row = %q, want 100.0%%", row)
	}
	failing := get(t, tab, chromedp.Text(css(`#failing-motd-no-second`)))
	if !strings.Contains(failing, "node-2") || strings.Contains(failing, "node-1") || !strings.Contains(failing, "names <b>node-2</b>") {
		t.Errorf("the motd control's failing nodes = %q, want node-2 alone, its evidence as text", failing)
	}
	if nodes := get(t, tab, chromedp.Text(css(`#compliance-nodes tbody`))); !strings.Contains(nodes, "node-2") || strings.Contains(nodes, "node-1") {
		t.Errorf("the failing nodes = %q, want node-2 alone", nodes)
	}
	if title := get(t, tab, chromedp.AttributeValue(css(`#trend`), "aria-label")); !strings.Contains(title.Value, "nodes compliant per hour") {
		t.Errorf("the trend chart's label = %q", title.Value)
	}
	if header := get(t, tab, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("td.sev-high")).color`)); header != "rgb(198, 40, 40)" {
		t.Errorf("a high severity's colour = %q, want the stylesheet's rgb(198, 40, 40)", header)
	}
	screenshot(t, tab, dir, "compliance")

	do(t, tab, "compliance → all nodes",
		chromedp.Navigate(srv.URL+"/compliance?show=all"),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="count" and contains(., " of 2")]`)),
	)
	if nodes := get(t, tab, chromedp.Text(css(`#compliance-nodes tbody`))); !strings.Contains(nodes, "node-1") || !strings.Contains(nodes, "0 failed / 2 passing") {
		t.Errorf("all nodes = %q, want node-1 passing both", nodes)
	}

	do(t, tab, "compliance → control",
		chromedp.Navigate(srv.URL+"/compliance"),
		chromedp.WaitVisible(css(`#controls`)),
		chromedp.Click(css(`#control-motd-no-second a.control`)),
		chromedp.WaitVisible(css(`#control`)),
	)
	if counts := get(t, tab, chromedp.Text(css(`#counts`))); counts != "1 pass, 1 fail, 0 no data, 0 error" {
		t.Errorf("the control page's counts = %q", counts)
	}
	screenshot(t, tab, dir, "control")

	do(t, tab, "control → failing node",
		chromedp.Click(css(`.results a.node`)),
		chromedp.WaitVisible(css(`#controls`)),
	)
	if title := get(t, tab, chromedp.Text(css(`h1`))); title != "node-2" {
		t.Errorf("the failing node's link opened %q, want node-2", title)
	}
	if controls := get(t, tab, chromedp.Text(css(`#controls`))); !strings.Contains(controls, "motd-no-second") || !strings.Contains(controls, "fail") || !strings.Contains(controls, "names <b>node-2</b>") {
		t.Errorf("node-2's control results lack the failing motd control with its evidence:\n%s", controls)
	}
	if st := get(t, tab, chromedp.Text(css(`#status`))); !strings.Contains(st, "1 failed / 1 passing") {
		t.Errorf("node-2's status lacks its compliance: %q", st)
	}
	screenshot(t, tab, dir, "compliance-node")

	do(t, tab, "overview sorted by compliance",
		chromedp.Navigate(srv.URL+"/?sort=compliance&desc=1"),
		chromedp.WaitVisible(css(`#nodes`)),
	)
	if first := get(t, tab, chromedp.Text(css(`#nodes tbody tr:first-child`))); !strings.Contains(first, "node-2") || !strings.Contains(first, "1 failed / 1 passing") {
		t.Errorf("the overview sorted by compliance starts with %q, want node-2, 1 failed / 1 passing", first)
	}
	// The listener sees what pages load: the stylesheet.
	if seen := reqs.take(); !containsSuffix(seen, "/static/style.css") {
		t.Fatalf("the request listener saw no stylesheet among %q: it cannot count the report's", seen)
	}

	// The report an auditor keeps, as herd audit --format html writes it.
	var b bytes.Buffer
	if err := auditreport.WriteHTML(&b, auditreport.View{Resp: resp, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "compliance-report.html")
	if err := os.WriteFile(report, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	offline := []chromedp.Action[chromedp.Void]{
		func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
				MatchedNetworkConditions: []*network.Conditions{{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}}})
			return chromedp.Void{}, err
		},
		func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Call(ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
			return chromedp.Void{}, err
		},
	}
	do(t, tab, "going offline", offline...)
	if online := get(t, tab, chromedp.Evaluate[bool](`navigator.onLine`)); online {
		t.Fatal("the browser is still online")
	}
	fileURL := (&url.URL{Scheme: "file", Path: report}).String()
	do(t, tab, "opening the report", chromedp.Navigate(fileURL), chromedp.WaitVisible(css(`h1`)))
	body := get(t, tab, chromedp.Text(css(`body`)))
	for _, want := range []string{"Compliance report", "motd-no-second", "the motd names no second node", "last-run-clean", "node-2", "names <b>node-2</b>", "TEST-1.1"} {
		if !strings.Contains(body, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if n := get(t, tab, chromedp.Evaluate[int](`document.querySelectorAll("script, img, link, iframe, object").length`)); n != 0 {
		t.Errorf("the report has %d elements that load something", n)
	}
	if n := get(t, tab, chromedp.Evaluate[int](`performance.getEntriesByType("resource").length`)); n != 0 {
		t.Errorf("the report loaded %d resources", n)
	}
	screenshot(t, tab, dir, "compliance-report")
	for _, u := range reqs.take() {
		if u != fileURL {
			t.Errorf("opening the report requested %s: it must load nothing but itself", u)
		}
	}
}

func containsSuffix(ss []string, suffix string) bool {
	for _, s := range ss {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}
