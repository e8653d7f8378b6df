package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/dashboard"
	"github.com/herdcm/herd/server/store"
)

// The dashboard's compliance page, the overview's compliance column and
// its where names (controls_failed, …) read one view of the audit
// results: built from auditReport, the very answer of herd audit and
// /api/v1/audits (so that the three agree), and kept until the store's
// AuditMark or the served site moves. Reading the whole fleet's results
// costs about a second at 10,000 nodes × 50 controls; an unchanged view
// costs nothing.

// complianceCache holds the newest view. Builds are serialized: a burst
// of page loads after a change builds once.
type complianceCache struct {
	build sync.Mutex
	mu    sync.Mutex
	view  *complianceView
	// trend is the newest trend read, kept under the same key.
	trend *complianceTrend
}

// complianceView is the fleet's results at one mark.
type complianceView struct {
	mark  store.AuditMark
	site  *siteState
	page  *dashboard.Compliance
	nodes map[string]dashboard.AuditCounts
}

type complianceTrend struct {
	mark    store.AuditMark
	since   time.Time
	step    time.Duration
	n       int
	buckets []dashboard.ComplianceBucket
}

// complianceNow returns the view of the results as they are, building it
// when they changed since the last.
func (s *Server) complianceNow(ctx context.Context) (*complianceView, error) {
	c := &s.compliance
	c.build.Lock()
	defer c.build.Unlock()
	mark, err := s.st.AuditMark(ctx)
	if err != nil {
		return nil, err
	}
	site := s.site.Load()
	c.mu.Lock()
	v := c.view
	c.mu.Unlock()
	if v != nil && v.mark == mark && v.site == site {
		return v, nil
	}
	v, err = s.buildCompliance(ctx)
	if err != nil {
		return nil, err
	}
	v.mark, v.site = mark, site
	c.mu.Lock()
	c.view = v
	c.mu.Unlock()
	return v, nil
}

// lastCompliance is the newest view built, without looking for changes;
// nil before the first. The where names read it after their caller made
// it fresh (complianceNow).
func (s *Server) lastCompliance() *complianceView {
	s.compliance.mu.Lock()
	defer s.compliance.mu.Unlock()
	return s.compliance.view
}

// auditCounts is node's results counted in the newest view; all zero
// when it has none.
func (s *Server) auditCounts(node string) dashboard.AuditCounts {
	if v := s.lastCompliance(); v != nil {
		return v.nodes[node]
	}
	return dashboard.AuditCounts{}
}

// buildCompliance reads every page of auditReport and arranges it for
// the pages.
func (s *Server) buildCompliance(ctx context.Context) (*complianceView, error) {
	page := &dashboard.Compliance{}
	v := &complianceView{page: page, nodes: map[string]dashboard.AuditCounts{}}
	byID := map[string]*dashboard.Control{}
	var nc *dashboard.NodeCompliance
	for token, first := "", true; first || token != ""; first = false {
		resp, err := s.auditReport(ctx, &herdv1.AuditRequest{PageToken: token, PageSize: maxAuditPage})
		if err != nil {
			return nil, fmt.Errorf("reading the audit results: %w", err)
		}
		token = resp.NextPageToken
		if first {
			page.Version, page.AuditError = resp.Version, resp.AuditError
			page.Controls = make([]dashboard.Control, len(resp.Controls))
			for i, c := range resp.Controls {
				page.Controls[i] = dashboardControl(c)
				byID[c.Id] = &page.Controls[i]
			}
		}
		for _, r := range resp.Results {
			if nc == nil || nc.Node != r.Node {
				page.Nodes = append(page.Nodes, dashboard.NodeCompliance{Node: r.Node})
				nc = &page.Nodes[len(page.Nodes)-1]
			}
			ctl := byID[r.Control]
			if ctl == nil {
				continue
			}
			countState(&nc.AuditCounts, r.State)
			if r.State == "fail" || r.State == "error" {
				ctl.Failing = append(ctl.Failing, controlResult(r, ctl))
			}
		}
	}
	// A node's failing controls in the controls' order: most serious
	// first.
	idx := map[string]int{}
	for i := range page.Nodes {
		idx[page.Nodes[i].Node] = i
	}
	for _, c := range page.Controls {
		for _, r := range c.Failing {
			n := &page.Nodes[idx[r.Node]]
			n.Failing = append(n.Failing, c.ID)
		}
	}
	for _, n := range page.Nodes {
		v.nodes[n.Node] = n.AuditCounts
	}
	return v, nil
}

func countState(c *dashboard.AuditCounts, state string) {
	switch state {
	case "pass":
		c.Pass++
	case "fail":
		c.Fail++
	case "no-data":
		c.NoData++
	case "error":
		c.Error++
	}
}

func dashboardControl(c *herdv1.AuditControl) dashboard.Control {
	return dashboard.Control{ID: c.Id, Title: c.Title, Severity: c.Severity, Reference: c.Reference, Remediation: c.Remediation,
		Description: c.Description, Location: c.Location, Percent: c.PercentCompliant,
		AuditCounts: dashboard.AuditCounts{Pass: int(c.Pass), Fail: int(c.Fail), NoData: int(c.NoData), Error: int(c.Error)}}
}

func controlResult(r *herdv1.AuditResult, c *dashboard.Control) dashboard.ControlResult {
	out := dashboard.ControlResult{Node: r.Node, Control: r.Control, State: r.State, Version: r.Version, Error: r.Error,
		Since: time.UnixMilli(r.SinceUnixMs)}
	if c != nil {
		out.Title, out.Severity = c.Title, c.Severity
	}
	for _, e := range r.Evidence {
		out.Evidence = append(out.Evidence, dashboard.Evidence{Message: e.Message, Resource: e.Resource})
	}
	return out
}

func (d dashboardSource) Compliance(ctx context.Context) (*dashboard.Compliance, error) {
	v, err := d.s.complianceNow(ctx)
	if err != nil {
		return nil, err
	}
	return v.page, nil
}

// nodeControls is one node's results, as auditReport answers for it.
func (s *Server) nodeControls(ctx context.Context, node string) ([]dashboard.ControlResult, error) {
	resp, err := s.auditReport(ctx, &herdv1.AuditRequest{Node: node, PageSize: 1})
	if err != nil {
		return nil, fmt.Errorf("reading the audit results of %s: %w", node, err)
	}
	byID := map[string]*dashboard.Control{}
	order := map[string]int{}
	for i, c := range resp.Controls {
		dc := dashboardControl(c)
		byID[c.Id], order[c.Id] = &dc, i
	}
	var out []dashboard.ControlResult
	for _, r := range resp.Results {
		if c := byID[r.Control]; c != nil {
			out = append(out, controlResult(r, c))
		}
	}
	// The controls' order: most serious first, then by id.
	slices.SortStableFunc(out, func(a, b dashboard.ControlResult) int { return cmp.Compare(order[a.Control], order[b.Control]) })
	return out, nil
}

func (d dashboardSource) ComplianceTrend(ctx context.Context, since time.Time, step time.Duration, n int) ([]dashboard.ComplianceBucket, error) {
	s := d.s
	c := &s.compliance
	mark, err := s.st.AuditMark(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	t := c.trend
	c.mu.Unlock()
	if t != nil && t.mark == mark && t.since.Equal(since) && t.step == step && t.n == n {
		return t.buckets, nil
	}
	ps, err := s.st.AuditTrend(ctx, since, step, n)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.ComplianceBucket, len(ps))
	for i, p := range ps {
		out[i] = dashboard.ComplianceBucket{End: p.End, Compliant: p.Compliant, NonCompliant: p.NonCompliant, NodesNoData: p.NodesNoData,
			Results: dashboard.AuditCounts{Pass: p.Pass, Fail: p.Fail, NoData: p.NoData, Error: p.Error}}
	}
	c.mu.Lock()
	c.trend = &complianceTrend{mark: mark, since: since, step: step, n: n, buckets: out}
	c.mu.Unlock()
	return out, nil
}
