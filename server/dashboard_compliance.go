package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/policies"
	"github.com/herdcm/herd/server/dashboard"
	"github.com/herdcm/herd/server/store"
)

// The dashboard's compliance page, the overview's compliance column and
// its where names (controls_failed, …) read one view of the audit
// results: counted as auditReport counts them for herd audit and
// /api/v1/audits (a test holds them to the same answer), and kept until
// the store's AuditMark or the served site moves. Reading the whole
// fleet's results costs most of a second at 10,000 nodes × 50 controls;
// an unchanged view costs nothing.

// complianceCache holds the newest view. Builds are serialized: a burst
// of page loads after a change builds once.
type complianceCache struct {
	build sync.Mutex
	mu    sync.Mutex
	view  *complianceView
	// follow guards follower, which keeps the trend (ComplianceTrend).
	follow   sync.Mutex
	follower *store.AuditFollower
}

// complianceView is the fleet's results at one mark.
type complianceView struct {
	mark  store.AuditMark
	site  *siteState
	page  *dashboard.Compliance
	nodes map[string]dashboard.AuditCounts
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
	site := s.defaultSite()
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

// buildCompliance reads every result now and arranges it for the
// pages, as auditReport answers for now (its controls: the served
// version's, or those with results when its controls do not compile;
// rows of other controls left out; percent = pass / judged; most serious
// first, then by id) but counted as the trend's follower read the rows
// (AuditFollower.Summary, equal to the store's AuditSummary): at 10,000
// nodes × 50 controls, auditReport's half a million records cost a few
// times more, and even counting them in SQL most of a second after each
// change.
// TestDashboardComplianceAgreesWithAPI holds the two to the same answer.
func (s *Server) buildCompliance(ctx context.Context) (*complianceView, error) {
	page := &dashboard.Compliance{}
	v := &complianceView{page: page, nodes: map[string]dashboard.AuditCounts{}}
	var wire []*herdv1.AuditControl
	st := s.defaultSite()
	if st != nil {
		page.Version, page.AuditError = st.version, st.auditErr
	}
	if st != nil && st.audit != nil {
		seen := map[string]bool{}
		for _, c := range st.audit.Controls() {
			wire = append(wire, wireControl(c))
			seen[c.ID] = true
		}
		// Each node is judged by its environment's controls: those of
		// the other environments too, as the Audit API lists them.
		for _, e := range s.envs.all() {
			if est := e.site.Load(); s.envs.branches && est != nil && est != st && est.audit != nil {
				for _, c := range est.audit.Controls() {
					if !seen[c.ID] {
						wire = append(wire, wireControl(c))
						seen[c.ID] = true
					}
				}
			}
		}
	} else if st != nil {
		// Controls that do not compile: those with results, with the
		// metadata they last had.
		ids, err := s.st.AuditControlIDs(ctx)
		if err != nil {
			return nil, err
		}
		meta, err := s.st.AuditControls(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			var c policies.Control
			if b, ok := meta[id]; ok {
				_ = json.Unmarshal(b, &c) // our own JSON; a bad row leaves the id alone
			}
			c.ID = id
			wire = append(wire, wireControl(c))
		}
	}
	slices.SortFunc(wire, func(a, b *herdv1.AuditControl) int {
		return cmp.Or(policies.Severity(b.Severity).Rank()-policies.Severity(a.Severity).Rank(), strings.Compare(a.Id, b.Id))
	})
	page.Controls = make([]dashboard.Control, len(wire))
	byID := map[string]*dashboard.Control{}
	ids := make([]string, len(wire))
	for i, c := range wire {
		page.Controls[i] = dashboardControl(c)
		byID[c.Id], ids[i] = &page.Controls[i], c.Id
	}
	sum, err := s.followedSummary(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, c := range sum.Controls {
		if ctl := byID[c.Key]; ctl != nil {
			addState(&ctl.AuditCounts, c.State, c.N)
		}
	}
	for _, c := range sum.Nodes {
		if len(page.Nodes) == 0 || page.Nodes[len(page.Nodes)-1].Node != c.Key {
			page.Nodes = append(page.Nodes, dashboard.NodeCompliance{Node: c.Key})
		}
		addState(&page.Nodes[len(page.Nodes)-1].AuditCounts, c.State, c.N)
	}
	for _, r := range sum.Failing {
		ctl := byID[r.Control]
		ctl.Failing = append(ctl.Failing, controlResult(wireResult(store.AuditRecord{Node: r.Node, Control: r.Control, At: r.At,
			Version: r.Version, State: r.State, Evidence: r.Evidence}), ctl))
	}
	for i := range page.Controls {
		c := &page.Controls[i]
		if j := c.Judged(); j > 0 {
			c.Percent = float64(c.Pass) * 100 / float64(j)
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

func countState(c *dashboard.AuditCounts, state string) { addState(c, state, 1) }

// addState counts n results of state into c.
func addState(c *dashboard.AuditCounts, state string, n int) {
	switch state {
	case "pass":
		c.Pass += n
	case "fail":
		c.Fail += n
	case "no-data":
		c.NoData += n
	case "error":
		c.Error += n
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

// ComplianceTrend follows the audit history (store.AuditFollower): the
// first call replays it all, later ones only what was recorded since.
func (d dashboardSource) ComplianceTrend(ctx context.Context, since time.Time, step time.Duration, n int) ([]dashboard.ComplianceBucket, error) {
	s := d.s
	c := &s.compliance
	c.follow.Lock()
	defer c.follow.Unlock()
	if err := s.followLocked(ctx); err != nil {
		return nil, err
	}
	ps := c.follower.Points(since, step, n)
	out := make([]dashboard.ComplianceBucket, len(ps))
	for i, p := range ps {
		out[i] = dashboard.ComplianceBucket{End: p.End, Compliant: p.Compliant, NonCompliant: p.NonCompliant, NodesNoData: p.NodesNoData,
			Results: dashboard.AuditCounts{Pass: p.Pass, Fail: p.Fail, NoData: p.NoData, Error: p.Error}}
	}
	return out, nil
}

// followLocked brings the compliance follower up to the history; the
// caller holds compliance.follow.
func (s *Server) followLocked(ctx context.Context) error {
	c := &s.compliance
	if c.follower == nil {
		c.follower = &store.AuditFollower{Step: time.Hour, Keep: 31 * 24 * time.Hour}
	}
	if err := s.st.Follow(ctx, c.follower, time.Now()); err != nil {
		// The next call starts over rather than trust a half-read
		// history.
		c.follower = nil
		return err
	}
	return nil
}

// followedSummary counts the results now over controls from the rows
// the follower read since its last call (AuditFollower.Summary), not
// the whole fleet's again.
func (s *Server) followedSummary(ctx context.Context, controls []string) (store.AuditSummary, error) {
	c := &s.compliance
	c.follow.Lock()
	defer c.follow.Unlock()
	if err := s.followLocked(ctx); err != nil {
		return store.AuditSummary{}, fmt.Errorf("counting audit results: %w", err)
	}
	return c.follower.Summary(controls), nil
}
