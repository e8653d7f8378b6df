package server

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/dashboard"
	"github.com/herdcm/herd/server/store"
)

// startAuditServer is a server on the test site with extra site files
// (audit controls), its HTTP port open, after the auditor's first pass.
func startAuditServer(tb testing.TB, extra map[string]string) *Server {
	tb.Helper()
	site := tb.TempDir()
	files := maps.Clone(testSite)
	maps.Copy(files, extra)
	for name, content := range files {
		writeFilesTB(tb, site, name, content)
	}
	s, err := New(context.Background(), Options{Site: site, Dir: tb.TempDir(), Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.awaitAudits(ctx); err != nil {
		tb.Fatal(err)
	}
	return s
}

// storeAudit records results as the auditor would, for nodes that exist
// only in the store (the auditor evaluates the nodes it has facts or a
// catalog of, so it leaves these alone): node → control → state, and
// evidence for fail and error.
func storeAudit(tb testing.TB, s *Server, when time.Time, sets map[string]map[string]string, evidence string) {
	tb.Helper()
	ctx := context.Background()
	recs := map[string][]store.AuditRecord{}
	for node, states := range sets {
		if err := s.st.Checkin(ctx, node, when, "v", when); err != nil {
			tb.Fatal(err)
		}
		for control, state := range states {
			r := store.AuditRecord{Control: control, State: state, Evidence: []byte{}}
			switch state {
			case "fail":
				r.Evidence = []byte(fmt.Sprintf(`[{"message":%q,"resource":"file:/etc/motd"}]`, evidence))
			case "error":
				r.Evidence = []byte("policies/audit/x.rego:3: " + evidence)
			}
			recs[node] = append(recs[node], r)
		}
	}
	if _, err := s.st.SaveAudit(ctx, "v1", when, recs); err != nil {
		tb.Fatal(err)
	}
}

// apiAudits is every page of /api/v1/audits, decoded.
func apiAudits(t *testing.T, c *http.Client, s *Server) *herdv1.AuditResponse {
	t.Helper()
	all := &herdv1.AuditResponse{}
	for token := ""; ; {
		r := webDo(t, c, s, "GET", "/api/v1/audits?page_size=2&page_token="+url.QueryEscape(token), nil, nil)
		if r.code != http.StatusOK {
			t.Fatalf("GET /api/v1/audits = %d: %s", r.code, r.body)
		}
		var page herdv1.AuditResponse
		if err := protojson.Unmarshal([]byte(r.body), &page); err != nil {
			t.Fatalf("decoding /api/v1/audits: %v", err)
		}
		if token == "" {
			all.Controls, all.Version = page.Controls, page.Version
		}
		all.Results = append(all.Results, page.Results...)
		if token = page.NextPageToken; token == "" {
			return all
		}
	}
}

// controlRow reads one control's row of the compliance page: its cells'
// text.
func controlRow(t *testing.T, body, id string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<tr id="control-` + regexp.QuoteMeta(id) + `">(.*?)</tr>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the compliance page has no row for control %s", id)
	}
	var cells []string
	for _, c := range regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(m[1], -1) {
		text := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(c[1], "")
		cells = append(cells, strings.TrimSpace(html.UnescapeString(text)))
	}
	return cells
}

// TestDashboardComplianceAgreesWithAPI: the compliance page, its source
// and /api/v1/audits say the same of every control (counts, percent,
// failing nodes and their evidence); the page follows a change of the
// results and a deactivated node; node input on it is escaped.
func TestDashboardComplianceAgreesWithAPI(t *testing.T) {
	t.Parallel()
	s := startAuditServer(t, auditControls)
	adm := admin(t, s)
	c := webClient(t, s, &adm)
	evil := hostile[0] + " " + hostile[1] + " " + hostile[2]
	now := time.Now()
	storeAudit(t, s, now.Add(-2*time.Hour), map[string]map[string]string{
		"n-1": {"motd-clean": "pass", "last-run-clean": "pass", "no-drift": "pass"},
		"n-2": {"motd-clean": "fail", "last-run-clean": "pass", "no-drift": "pass"},
		"n-3": {"motd-clean": "pass", "last-run-clean": "error", "no-drift": "fail"},
		"n-4": {"motd-clean": "no-data", "last-run-clean": "no-data", "no-drift": "no-data"},
		"n-5": {"motd-clean": "pass", "last-run-clean": "pass", "no-drift": "fail"},
	}, evil)
	h := dashboard.New(s.Dashboard(), dashboard.Options{})
	src := s.Dashboard()

	agree := func(wantFailing map[string][]string) {
		t.Helper()
		api := apiAudits(t, c, s)
		page, err := src.Compliance(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		code, _, body := dashboardGet(t, h, "/compliance")
		if code != http.StatusOK {
			t.Fatalf("GET /compliance = %d:\n%s", code, body)
		}
		if len(page.Controls) != len(api.Controls) {
			t.Fatalf("the page has %d controls, the API %d", len(page.Controls), len(api.Controls))
		}
		failing := map[string][]string{}
		for _, r := range api.Results {
			if r.State == "fail" || r.State == "error" {
				failing[r.Control] = append(failing[r.Control], r.Node)
			}
		}
		if diff := cmp.Diff(wantFailing, failing); diff != "" {
			t.Errorf("the API's failing nodes (-want +got):\n%s", diff)
		}
		for i, ac := range api.Controls {
			pc := page.Controls[i]
			if pc.ID != ac.Id || pc.Pass != int(ac.Pass) || pc.Fail != int(ac.Fail) || pc.NoData != int(ac.NoData) || pc.Error != int(ac.Error) ||
				pc.Percent != ac.PercentCompliant || pc.Title != ac.Title || pc.Severity != ac.Severity || pc.Reference != ac.Reference {
				t.Errorf("control %d: the page's source says %+v, the API %v", i, pc, ac)
			}
			var nodes []string
			for _, r := range pc.Failing {
				nodes = append(nodes, r.Node)
				if len(r.Evidence) == 0 && r.Error == "" {
					t.Errorf("control %s on %s: failing without evidence or error", pc.ID, r.Node)
				}
			}
			if diff := cmp.Diff(failing[ac.Id], nodes); diff != "" {
				t.Errorf("control %s: the page's failing nodes against the API's (-api +page):\n%s", ac.Id, diff)
			}
			pct := "—"
			if j := ac.Pass + ac.Fail + ac.Error; j > 0 {
				pct = fmt.Sprintf("%.1f%%", ac.PercentCompliant)
			}
			want := []string{ac.Id, ac.Title, ac.Severity, ac.Reference, pct,
				fmt.Sprint(ac.Pass), fmt.Sprint(ac.Fail), fmt.Sprint(ac.NoData), fmt.Sprint(ac.Error)}
			if diff := cmp.Diff(want, controlRow(t, body, ac.Id)); diff != "" {
				t.Errorf("control %s: the page's row against the API (-api +page):\n%s", ac.Id, diff)
			}
		}
	}
	agree(map[string][]string{"motd-clean": {"n-2"}, "last-run-clean": {"n-3"}, "no-drift": {"n-3", "n-5"}})

	// The results change: the page follows.
	storeAudit(t, s, now.Add(-time.Hour), map[string]map[string]string{
		"n-1": {"motd-clean": "fail", "last-run-clean": "pass", "no-drift": "pass"},
		"n-5": {"motd-clean": "pass", "last-run-clean": "pass", "no-drift": "pass"},
	}, "changed")
	agree(map[string][]string{"motd-clean": {"n-1", "n-2"}, "last-run-clean": {"n-3"}, "no-drift": {"n-3"}})
	// A deactivated node leaves the results.
	if ok, err := s.st.Deactivate(context.Background(), "n-2", now); err != nil || !ok {
		t.Fatalf("Deactivate = %v, %v", ok, err)
	}
	agree(map[string][]string{"motd-clean": {"n-1"}, "last-run-clean": {"n-3"}, "no-drift": {"n-3"}})

	// herd nodes --where reads the same names (the JSON API's nodes, as
	// ListNodes answers), fresh: n-5 fails again, and no page was loaded
	// since.
	storeAudit(t, s, now.Add(-time.Minute), map[string]map[string]string{
		"n-5": {"motd-clean": "pass", "last-run-clean": "pass", "no-drift": "fail"},
	}, "again")
	var listed apiNodes
	apiGet(t, c, s, "/api/v1/nodes?where="+url.QueryEscape("controls_failed > 0"), http.StatusOK, &listed)
	var names []string
	for _, n := range listed.Nodes {
		names = append(names, n.Name)
	}
	if diff := cmp.Diff([]string{"n-1", "n-3", "n-5"}, names); diff != "" {
		t.Errorf("/api/v1/nodes where controls_failed > 0 (-want +got):\n%s", diff)
	}
	storeAudit(t, s, now.Add(-time.Minute), map[string]map[string]string{
		"n-5": {"motd-clean": "pass", "last-run-clean": "pass", "no-drift": "pass"},
	}, "")

	// The overview's column, its sort and its where names.
	_, _, body := dashboardGet(t, h, "/?where="+url.QueryEscape("controls_failed > 0")+"&sort=compliance&desc=1")
	if !strings.Contains(body, "nodes 1–2 of 2") {
		t.Errorf("overview where controls_failed > 0: want 2 nodes (n-1, n-3):\n%s", body)
	}
	if i, j := strings.Index(body, ">n-3<"), strings.Index(body, ">n-1<"); i < 0 || j < 0 || i > j {
		t.Errorf("overview sorted by compliance, descending: n-3 (2 failed) should come before n-1 (1)")
	}
	if !strings.Contains(body, "2 failed</span> / 1 passing") {
		t.Errorf("overview lacks n-3's compliance cell \"2 failed / 1 passing\"")
	}
	_, _, body = dashboardGet(t, h, "/?where="+url.QueryEscape(`name == "n-4"`))
	if !strings.Contains(body, `<td class="compliance"><span class="muted">no data</span></td>`) {
		t.Errorf("overview: n-4, whose controls have no data, should say no data")
	}

	// Node input is escaped on every page that shows it.
	tag := regexp.MustCompile(`(?i)<(script|img)\b`)
	for _, path := range []string{"/compliance", "/compliance?show=all", "/compliance/controls/no-drift", "/nodes/n-3"} {
		code, _, body := dashboardGet(t, h, path)
		if code != http.StatusOK {
			t.Errorf("GET %s = %d:\n%s", path, code, body)
			continue
		}
		if m := tag.FindString(body); m != "" {
			t.Errorf("GET %s: a %s tag from the evidence", path, m)
		}
		if strings.ContainsAny(body, "\x1b\x07") {
			t.Errorf("GET %s: a raw control character", path)
		}
		if !strings.Contains(body, `&lt;script&gt;alert(1)&lt;/script&gt;`) || !strings.Contains(body, `\x1b[2J`) {
			t.Errorf("GET %s: the evidence is not shown as text", path)
		}
	}
	_, _, node := dashboardGet(t, h, "/nodes/n-3")
	for _, want := range []string{`href="/compliance/controls/last-run-clean"`, "au-error", "au-fail", "2 failed</span> / 1 passing"} {
		if !strings.Contains(node, want) {
			t.Errorf("node page of n-3 lacks %q", want)
		}
	}
}

// TestDashboardCompliancePages: the nodes' selections and paging, the
// control page's paging, and strict query parsing.
func TestDashboardCompliancePages(t *testing.T) {
	t.Parallel()
	s := startAuditServer(t, auditControls)
	sets := map[string]map[string]string{}
	for i := range 25 {
		st := "pass"
		if i%2 == 0 {
			st = "fail"
		}
		sets[fmt.Sprintf("m-%02d", i)] = map[string]string{"motd-clean": st, "last-run-clean": "pass", "no-drift": "pass"}
	}
	storeAudit(t, s, time.Now().Add(-30*time.Minute), sets, "evil motd")
	h := dashboard.New(s.Dashboard(), dashboard.Options{})
	for _, tc := range []struct {
		path  string
		code  int
		wants []string
	}{
		{"/compliance", 200, []string{"failing nodes 1–13 of 13", "all 13 failing nodes →", `12 of 25 judged nodes comply`}},
		{"/compliance?show=compliant&limit=50", 200, []string{"compliant nodes 1–12 of 12"}},
		{"/compliance?show=no-data", 200, []string{"no no-data nodes"}},
		{"/compliance?show=all&limit=50&offset=20&nsort=name", 200, []string{"all nodes 21–25 of 25", `id="prev"`}},
		{"/compliance?where=" + url.QueryEscape(`name == "m-04"`), 200, []string{"failing nodes 1–1 of 1"}},
		{"/compliance?trend=30d&sort=failing&desc=1", 200, []string{"nodes compliant per day, last 30 days"}},
		{"/compliance/controls/motd-clean?limit=5&offset=10", 200, []string{"nodes 11–13 of 13", `id="prev"`, "evil motd"}},
		{"/compliance/controls/no-drift", 200, []string{"No node fails it."}},
		{"/compliance/controls/nope", 404, nil},
		{"/compliance?where=" + url.QueryEscape("((("), 400, []string{`id="where-error"`}},
		// Brackets typed into where cannot undo the page's own selection:
		// the two are compiled apart (once they were joined as text, and
		// this showed every node as failing).
		{"/compliance?where=" + url.QueryEscape(`true) || (true`), 400, []string{`id="where-error"`}},
		{"/compliance?where=" + url.QueryEscape(`true || true`), 200, []string{"failing nodes 1–13 of 13"}},
		{"/compliance?show=everything", 400, nil},
		{"/compliance?trend=1y", 400, nil},
		{"/compliance?nsort=drift", 400, nil},
		{"/compliance/controls/motd-clean?limit=-1", 400, nil},
	} {
		code, _, body := dashboardGet(t, h, tc.path)
		if code != tc.code {
			t.Errorf("GET %s = %d, want %d", tc.path, code, tc.code)
			continue
		}
		for _, want := range tc.wants {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s lacks %q", tc.path, want)
			}
		}
	}
	// Without a where, failing and compliant nodes come from the view;
	// with one, from the fleet: the same nodes in the same order.
	listed := func(path string) []string {
		t.Helper()
		_, _, body := dashboardGet(t, h, path)
		i := strings.Index(body, `id="compliance-nodes"`)
		if i < 0 {
			t.Fatalf("GET %s: no node list", path)
		}
		var names []string
		for _, m := range regexp.MustCompile(`<a class="node" href="/nodes/([^"]+)"`).FindAllStringSubmatch(body[i:], -1) {
			names = append(names, m[1])
		}
		return names
	}
	for _, q := range []string{"", "show=compliant", "nsort=name", "ndesc=1", "show=compliant&nsort=name&ndesc=1", "limit=50&offset=5"} {
		fast, slow := listed("/compliance?"+q), listed("/compliance?where=true&"+q)
		if len(fast) == 0 {
			t.Errorf("/compliance?%s lists no node", q)
		}
		if diff := cmp.Diff(slow, fast); diff != "" {
			t.Errorf("/compliance?%s from the view against the fleet (-fleet +view):\n%s", q, diff)
		}
	}
}

// BenchmarkCompliance10k is the compliance page over 10,000 nodes and 50
// controls (one result in 17 failing): Warm when the results did not
// change since the last load, Changed when one node's did before each
// load (the view and the trend are read again), Control a control's
// page, and the overview sorted by its compliance column.
func BenchmarkCompliance10k(b *testing.B) {
	const nodes = 10000
	s := startAuditServer(b, benchAuditFiles(b))
	seedNodes(b, s, nodes)
	var ids []string
	for _, c := range s.defaultSite().audit.Controls() {
		ids = append(ids, c.ID)
	}
	if len(ids) != 50 {
		b.Fatalf("%d controls, want 50", len(ids))
	}
	when := time.Now().Add(-3 * time.Hour)
	for from := 0; from < nodes; from += 500 {
		sets := map[string]map[string]string{}
		for i := from; i < from+500; i++ {
			states := map[string]string{}
			for j, id := range ids {
				states[id] = "pass"
				if (i+j)%17 == 0 {
					states[id] = "fail"
				}
			}
			sets[fmt.Sprintf("node-%05d", i)] = states
		}
		storeAudit(b, s, when, sets, "/etc/ssh/sshd_config has PermitRootLogin yes")
	}
	srv := httptestServer(b, dashboard.New(s.Dashboard(), dashboard.Options{Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}))
	get := func(b *testing.B, path string) {
		resp, err := http.Get(srv + path)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n == 0 {
			b.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
	}
	flip := 0
	for _, bc := range []struct {
		name, path string
		change     bool
	}{
		{"Warm", "/compliance", false},
		{"Changed", "/compliance", true},
		{"Control", "/compliance/controls/" + ids[len(ids)-1], false},
		{"OverviewSort", "/?sort=compliance&desc=1", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			get(b, bc.path) // the first build is not what is measured
			for b.Loop() {
				if bc.change {
					b.StopTimer()
					flip++
					st := map[string]string{ids[0]: []string{"pass", "fail"}[flip%2]}
					storeAudit(b, s, time.Now(), map[string]map[string]string{"node-00001": st}, "flipped")
					b.StartTimer()
				}
				get(b, bc.path)
			}
		})
	}
}

// httptestServer serves h on 127.0.0.1 until the benchmark ends and
// returns its URL.
func httptestServer(tb testing.TB, h http.Handler) string {
	tb.Helper()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv.URL
}
