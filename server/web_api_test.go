package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// apiGet GETs path with the admin certificate c presents, wants code and
// decodes the body into v (when not nil).
func apiGet(t *testing.T, c *http.Client, s *Server, path string, code int, v any) webResp {
	t.Helper()
	r := webDo(t, c, s, "GET", path, nil, nil)
	if r.code != code {
		t.Fatalf("GET %s = %d, want %d: %s", path, r.code, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.body), v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, r.body)
		}
	}
	return r
}

type apiNodes struct {
	Nodes []struct {
		Name              string `json:"name"`
		DeactivatedUnixMs string `json:"deactivated_unix_ms"`
		CatalogEtag       string `json:"catalog_etag"`
	} `json:"nodes"`
	NextPageToken string `json:"next_page_token"`
}

// allNodes follows next_page_token from path (which has a query) and
// returns every name.
func allNodes(t *testing.T, c *http.Client, s *Server, path string) (names []string, pages int) {
	t.Helper()
	for token := ""; ; pages++ {
		p := path
		if token != "" {
			p += "&page_token=" + url.QueryEscape(token)
		}
		var resp apiNodes
		apiGet(t, c, s, p, http.StatusOK, &resp)
		for _, n := range resp.Nodes {
			names = append(names, n.Name)
		}
		if token = resp.NextPageToken; token == "" {
			return names, pages + 1
		}
	}
}

// TestAPIEndpoints drives every endpoint of /api/v1 against a real
// server with six nodes that checked in, reported and are in a rollout,
// with paging, filters and errors.
func TestAPIEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, func(o *Options) { o.HTTPListen = "127.0.0.1:0" }, rolloutSite(canaryHalfRest, "hello"), sixNodes...)
	s := h.s
	h.commit(rolloutSite(canaryHalfRest, "good morning"))
	h.checkinFacts("n-3", "redhat")
	c := webClient(t, s, h.adminCert)

	// Nodes: paged one by one, every node once, in order.
	names, pages := allNodes(t, c, s, "/api/v1/nodes?page_size=1")
	if !slices.Equal(names, sixNodes) || pages < 6 {
		t.Errorf("nodes by pages of 1 = %v in %d pages, want %v", names, pages, sixNodes)
	}
	// A where filter over facts, as herd nodes --where.
	names, _ = allNodes(t, c, s, "/api/v1/nodes?page_size=2&where="+url.QueryEscape(`os.family == "redhat"`))
	if !slices.Equal(names, []string{"n-3"}) {
		t.Errorf("nodes where os.family == redhat = %v, want [n-3]", names)
	}
	// Deactivated nodes only with inactive=true.
	if err := s.deactivateNode(t.Context(), "n-5", time.Now(), "test"); err != nil {
		t.Fatal(err)
	}
	if names, _ := allNodes(t, c, s, "/api/v1/nodes?page_size=100"); slices.Contains(names, "n-5") {
		t.Errorf("nodes without inactive = %v, lists the deactivated n-5", names)
	}
	if names, _ := allNodes(t, c, s, "/api/v1/nodes?inactive=true"); !slices.Contains(names, "n-5") {
		t.Errorf("nodes with inactive=true = %v, lacks n-5", names)
	}

	// One node's facts, inlined as JSON.
	var facts struct {
		Node  string
		Facts map[string]any
	}
	apiGet(t, c, s, "/api/v1/nodes/n-3/facts", http.StatusOK, &facts)
	if os, _ := facts.Facts["os"].(map[string]any); facts.Node != "n-3" || os["family"] != "redhat" {
		t.Errorf("facts of n-3 = %+v", facts)
	}
	// Facts across the fleet, filtered and paged.
	var fleet struct {
		Facts []struct {
			Node  string
			Value json.RawMessage
		}
		NextPageToken string `json:"next_page_token"`
	}
	apiGet(t, c, s, "/api/v1/facts?fact=os.family&where="+url.QueryEscape(`os.family == "debian"`)+"&page_size=2", http.StatusOK, &fleet)
	if len(fleet.Facts) != 2 || fleet.NextPageToken == "" || string(fleet.Facts[0].Value) != `"debian"` || fleet.Facts[0].Node != "n-0" {
		t.Errorf("first page of fleet facts = %+v", fleet)
	}
	seen := len(fleet.Facts)
	for token := fleet.NextPageToken; token != ""; {
		fleet.NextPageToken = ""
		apiGet(t, c, s, "/api/v1/facts?fact=os.family&where="+url.QueryEscape(`os.family == "debian"`)+"&page_size=2&page_token="+url.QueryEscape(token), http.StatusOK, &fleet)
		for _, f := range fleet.Facts {
			if f.Node == "n-3" || f.Node == "n-5" {
				t.Errorf("fleet facts where debian list %s", f.Node)
			}
		}
		seen += len(fleet.Facts)
		token = fleet.NextPageToken
	}
	if seen != 4 {
		t.Errorf("fleet facts where debian: %d nodes, want 4 (n-0, n-1, n-2, n-4)", seen)
	}

	var missing struct {
		Facts []map[string]any
	}
	apiGet(t, c, s, "/api/v1/facts?fact=no.such.fact", http.StatusOK, &missing)
	if len(missing.Facts) != 5 || missing.Facts[0]["missing"] != true || missing.Facts[0]["value"] != nil {
		t.Errorf("fleet facts of a fact nobody has = %+v, want 5 nodes marked missing", missing.Facts)
	}

	// Reports, newest first, paged.
	h.report("n-0", h.nodes["n-0"].etag, false, []string{"file:/etc/motd"})
	var reports struct {
		Reports []struct {
			Node   string
			Report struct {
				RunID  string `json:"run_id"`
				Events []struct{ ID, Source string }
			}
		}
		NextPageToken string `json:"next_page_token"`
	}
	apiGet(t, c, s, "/api/v1/nodes/n-0/reports?page_size=1", http.StatusOK, &reports)
	if len(reports.Reports) != 1 || reports.Reports[0].Report.RunID != "n-0-2" || reports.NextPageToken == "" {
		t.Fatalf("first page of n-0's reports = %+v", reports)
	}
	// A failed resource names where the site declares it.
	if ev := reports.Reports[0].Report.Events; len(ev) != 1 || ev[0].Source != "roles/web.toml:4" {
		t.Errorf("events of n-0's newest report = %+v, want file:/etc/motd with source roles/web.toml:4", ev)
	}
	apiGet(t, c, s, "/api/v1/nodes/n-0/reports?page_size=1&page_token="+url.QueryEscape(reports.NextPageToken), http.StatusOK, &reports)
	if len(reports.Reports) != 1 || reports.Reports[0].Report.RunID != "n-0-1" {
		t.Errorf("second page of n-0's reports = %+v", reports)
	}

	// A node's catalog, inlined.
	var cat struct {
		Node, Etag string
		Catalog    map[string]any
	}
	apiGet(t, c, s, "/api/v1/nodes/n-1/catalog", http.StatusOK, &cat)
	if cat.Node != "n-1" || !strings.HasPrefix(cat.Etag, "sha256:") || cat.Catalog == nil || !strings.Contains(mustJSON(t, cat.Catalog), "/etc/motd") {
		t.Errorf("catalog of n-1 = %+v", cat)
	}

	// Rollouts: the list and one with its nodes.
	var rollouts struct {
		Rollouts []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
	}
	apiGet(t, c, s, "/api/v1/rollouts?page_size=10", http.StatusOK, &rollouts)
	if len(rollouts.Rollouts) < 2 {
		t.Fatalf("rollouts = %+v, want the first load's and the commit's", rollouts)
	}
	newest := rollouts.Rollouts[0].ID
	var one struct {
		Rollout struct {
			ID string `json:"id"`
		}
		Nodes []map[string]any
	}
	apiGet(t, c, s, "/api/v1/rollouts/"+newest+"?nodes=all", http.StatusOK, &one)
	if one.Rollout.ID != newest || len(one.Nodes) == 0 {
		t.Fatalf("rollout %s = %+v", newest, one)
	}
	stages := map[string]string{}
	for _, n := range one.Nodes {
		name, _ := n["node"].(string)
		stages[name], _ = n["stage"].(string)
	}
	if stages["n-0"] != "canary" || len(stages) != len(sixNodes) {
		t.Errorf("rollout %s nodes by stage = %v, want all six, n-0 in canary", newest, stages)
	}

	// Errors: JSON, with the status the Admin service's code maps to.
	for _, tc := range []struct {
		path string
		code int
		says string
	}{
		{"/api/v1/nodes?where=" + url.QueryEscape("os.family =="), http.StatusBadRequest, "where"},
		{"/api/v1/nodes?wher=x", http.StatusBadRequest, "unknown query parameter"},
		{"/api/v1/nodes?page_size=-1", http.StatusBadRequest, "page_size"},
		{"/api/v1/nodes?inactive=maybe", http.StatusBadRequest, "inactive"},
		{"/api/v1/nodes?page_size=1&page_size=2", http.StatusBadRequest, "2 times"},
		{"/api/v1/nodes/nobody/facts", http.StatusNotFound, "no node nobody: the server knows no such node"},
		{"/api/v1/nodes/nobody/catalog", http.StatusNotFound, "no catalog"},
		{"/api/v1/nodes/n-0/reports?page_token=xyz", http.StatusBadRequest, "page token"},
		{"/api/v1/facts", http.StatusBadRequest, "fact"},
		{"/api/v1/rollouts/999", http.StatusNotFound, "999"},
		{"/api/v1/rollouts/abc", http.StatusBadRequest, "rollout id"},
		{"/api/v1/nodes/n-0", http.StatusNotFound, "no API endpoint"},
	} {
		r := webDo(t, c, s, "GET", tc.path, nil, nil)
		if r.code != tc.code {
			t.Errorf("GET %s = %d, want %d: %s", tc.path, r.code, tc.code, r.body)
			continue
		}
		if msg := apiError(t, r); !strings.Contains(msg, tc.says) {
			t.Errorf("GET %s: error %q, want it to say %q", tc.path, msg, tc.says)
		}
	}
	// Read-only: no method but GET reaches an endpoint.
	if r := webDo(t, c, s, "POST", "/api/v1/nodes", url.Values{}, nil); r.code == http.StatusOK {
		t.Errorf("POST /api/v1/nodes = %d: %s", r.code, r.body)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
