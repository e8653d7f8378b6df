package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/store"
)

// TestListCallsArePaged: the list calls return pages the server caps,
// and following next_page_token visits every item once.
func TestListCallsArePaged(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	const nodes = maxNodesPage + 5
	for i := range nodes {
		if err := s.st.Checkin(ctx, fmt.Sprintf("n-%04d", i), time.Now(), "v", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	const reports = maxReportsPage + 7
	for i := range reports {
		rec := store.Report{Node: fmt.Sprintf("n-%04d", i%3), RunID: fmt.Sprintf("run-%d", i), Received: time.Now(),
			Events: []store.Event{{ID: "file:/x", Type: "file", Status: "failed", Error: "boom"}}}
		if _, err := s.st.SaveReport(ctx, rec.Node, rec); err != nil {
			t.Fatal(err)
		}
	}
	adm := admin(t, s)
	ac := herdv1.NewAdminClient(dial(t, s, &adm))

	// Asking for everything at once gets the capped page.
	big, err := ac.ListNodes(ctx, &herdv1.ListNodesRequest{PageSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if len(big.Nodes) != maxNodesPage || big.NextPageToken == "" {
		t.Errorf("ListNodes(page size 1<<30) = %d nodes, next %q; want %d and a next page", len(big.Nodes), big.NextPageToken, maxNodesPage)
	}
	seen := map[string]bool{}
	pages := 0
	for token := ""; ; pages++ {
		resp, err := ac.ListNodes(ctx, &herdv1.ListNodesRequest{PageSize: 300, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Nodes) > 300 {
			t.Fatalf("a page of 300 holds %d nodes", len(resp.Nodes))
		}
		for _, n := range resp.Nodes {
			if seen[n.Name] {
				t.Fatalf("node %s on two pages", n.Name)
			}
			seen[n.Name] = true
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if len(seen) != nodes {
		t.Errorf("pages listed %d nodes, want %d", len(seen), nodes)
	}

	big2, err := ac.ListReports(ctx, &herdv1.ListReportsRequest{Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if len(big2.Reports) != maxReportsPage || big2.NextPageToken == "" {
		t.Errorf("ListReports(limit 1<<30) = %d reports, next %q; want %d and a next page", len(big2.Reports), big2.NextPageToken, maxReportsPage)
	}
	runs := map[string]bool{}
	for token := ""; ; {
		resp, err := ac.ListReports(ctx, &herdv1.ListReportsRequest{PageSize: 64, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.Reports {
			if runs[r.Report.RunId] {
				t.Fatalf("report %s on two pages", r.Report.RunId)
			}
			runs[r.Report.RunId] = true
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if len(runs) != reports {
		t.Errorf("pages listed %d reports, want %d", len(runs), reports)
	}
	if _, err := ac.ListReports(ctx, &herdv1.ListReportsRequest{PageToken: "nonsense"}); err == nil {
		t.Error("ListReports with a forged page token = nil error")
	}
}

// TestSiteLoadFailureIsShown: a site version that does not load shows in
// SiteStatus (served and newest versions, the error with file:line) and
// in /metrics, while /healthz stays ok.
func TestSiteLoadFailureIsShown(t *testing.T) {
	t.Parallel()
	s, site := startServer(t)
	ctx := context.Background()
	adm := admin(t, s)
	ac := herdv1.NewAdminClient(dial(t, s, &adm))
	v1 := s.defaultSite().version
	writeFiles(t, site, map[string]string{"roles/r.toml": "[[file]]\npath = \"relative\"\n"})
	deadline := time.Now().Add(20 * time.Second)
	var st *herdv1.SiteStatusResponse
	for {
		var err error
		if st, err = ac.SiteStatus(ctx, &herdv1.SiteStatusRequest{}); err != nil {
			t.Fatal(err)
		}
		if st.LoadError != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the broken edit never showed in SiteStatus")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Version != v1 || !strings.Contains(st.LoadError, "roles/r.toml:2:1") || st.NewestAttemptUnixMs == 0 {
		t.Errorf("SiteStatus = version %s (want %s), newest attempt %d, error %q", st.Version, v1, st.NewestAttemptUnixMs, st.LoadError)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.HTTPAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while the newest version fails = %d, want 200", code)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{"herd_site_load_failing 1", `herd_site_served_version{version="` + v1 + `"} 1`, `herd_site_loads_total{result="error"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Fixed: the failure clears.
	writeFiles(t, site, testSite)
	for s.defaultSite().loadErr != "" {
		if time.Now().After(deadline) {
			t.Fatal("the fix never loaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, "herd_site_load_failing 0") {
		t.Error("/metrics still says the site fails to load")
	}
}
