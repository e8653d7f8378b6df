package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/server/dashboard"
	"github.com/herdcm/herd/server/store"
)

// The dashboard reads the server's state through dashboardSource, the
// server's implementation of dashboard.Source: nodes from the store,
// facts and catalogs from memory, rollouts from the store.

// Dashboard returns the source the dashboard's pages read (see
// dashboard.New); the HTTP port mounts the handler behind its
// authentication.
func (s *Server) Dashboard() dashboard.Source { return dashboardSource{s} }

type dashboardSource struct{ s *Server }

var _ dashboard.Source = dashboardSource{}

// nodeServices is a node's service health as its newest run (by start
// time) reported it.
type nodeServices struct {
	started time.Time
	health  []*herdv1.ServiceHealth
}

// noteServices keeps the service health of a stored report unless a run
// that started later already said otherwise (a spooled report arriving
// late). Audit runs say nothing of services.
func (s *Server) noteServices(node string, rep store.Report, health []*herdv1.ServiceHealth) {
	if rep.Audit || rep.Partial {
		return
	}
	v := &nodeServices{started: rep.Started, health: health}
	for {
		old, ok := s.services.Load(node)
		if !ok {
			if _, loaded := s.services.LoadOrStore(node, v); !loaded {
				return
			}
			continue
		}
		if old.(*nodeServices).started.After(rep.Started) || s.services.CompareAndSwap(node, old, v) {
			return
		}
	}
}

// Nodes reads the whole fleet, filters, sorts and cuts a page: sorting by
// any column needs every node, and reading 10,000 rows and facts from
// memory stays within the overview's budget (BenchmarkOverview10k).
func (d dashboardSource) Nodes(ctx context.Context, q dashboard.NodeQuery) (dashboard.NodePage, error) {
	s := d.s
	where, err := compileWhere(q.Where)
	if err != nil {
		return dashboard.NodePage{}, &dashboard.BadQueryError{Err: errors.New(whereMessage(err))}
	}
	and, err := compileWhere(q.And)
	if err != nil {
		return dashboard.NodePage{}, fmt.Errorf("the page's own selection %q: %w", q.And, err)
	}
	nodes, err := s.st.Nodes(ctx)
	if err != nil {
		return dashboard.NodePage{}, fmt.Errorf("listing nodes: %w", err)
	}
	states, _, err := s.rolloutStates(ctx, "", "")
	if err != nil {
		return dashboard.NodePage{}, fmt.Errorf("listing nodes: %w", err)
	}
	// The compliance column, and the where names that read it.
	if _, err := s.complianceNow(ctx); err != nil {
		return dashboard.NodePage{}, fmt.Errorf("listing nodes: %w", err)
	}
	var matchers []func(map[string]any) (bool, error)
	var names []string
	wholeEnv := false // an expression reads the environment whole: Names is nil
	for _, f := range []*catalogs.Filter{where, and} {
		if f != nil {
			matchers = append(matchers, f.Matcher())
			fn := f.Names()
			wholeEnv = wholeEnv || fn == nil
			names = append(names, fn...)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if wholeEnv {
		names = nil
	}
	match := func(env map[string]any) bool {
		for _, m := range matchers {
			// A node an expression fails on is not selected, as in
			// herd nodes --where.
			if ok, _ := m(env); !ok {
				return false
			}
		}
		return true
	}
	now := time.Now()
	rows := make([]dashboard.NodeRow, 0, len(nodes))
	for _, n := range nodes {
		if !n.Deactivated.IsZero() && !q.Inactive {
			continue
		}
		if len(matchers) > 0 {
			cf, _ := s.facts.get(n.Name)
			if !match(s.whereEnv(names, n, cf.facts, states[n.Name], now)) {
				continue
			}
		}
		rows = append(rows, s.dashboardRow(n, states[n.Name]))
	}
	if err := ctx.Err(); err != nil {
		return dashboard.NodePage{}, err
	}
	sortRows(rows, q.Sort, q.Desc)
	page := dashboard.NodePage{Total: len(rows)}
	if q.Offset < len(rows) {
		page.Nodes = rows[q.Offset:min(len(rows), q.Offset+q.Limit)]
	}
	return page, nil
}

// whereMessage is a where error without its gRPC dress.
func whereMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "desc = "); i >= 0 {
		msg = msg[i+len("desc = "):]
	}
	return msg
}

func (s *Server) dashboardRow(n store.Node, rolloutState string) dashboard.NodeRow {
	row := dashboard.NodeRow{
		Name: n.Name, LastCheckin: n.LastCheckin, LastReport: n.LastReport, LastRunID: n.LastRunID,
		Status: runStatus(n), AppliedVersion: n.AppliedVersion, AgentVersion: n.AgentVersion,
		RolloutState: rolloutState, Environment: s.shownEnv(n.Name), Drift: n.Drift, Changed: n.LastSummary.Changed, Failed: n.LastSummary.Failed,
		Deactivated: n.Deactivated, Audit: s.auditCounts(n.Name),
	}
	cur, cerr := s.compiles.get(n.Name)
	if cur != nil {
		row.Version = cur.version
	}
	row.CompileError = cerr
	return row
}

// sortRows sorts by key, then by name, so that the order is total and a
// page boundary stays put between two loads.
func sortRows(rows []dashboard.NodeRow, key string, desc bool) {
	by := func(a, b dashboard.NodeRow) int {
		switch key {
		case dashboard.SortLastRun:
			return a.LastReport.Compare(b.LastReport)
		case dashboard.SortCheckin:
			return a.LastCheckin.Compare(b.LastCheckin)
		case dashboard.SortStatus:
			return cmp.Compare(a.Status, b.Status)
		case dashboard.SortVersion:
			return cmp.Compare(a.Version, b.Version)
		case dashboard.SortDrift:
			return cmp.Compare(a.Drift, b.Drift)
		case dashboard.SortRollout:
			return cmp.Compare(a.RolloutState, b.RolloutState)
		case dashboard.SortAgent:
			return cmp.Compare(a.AgentVersion, b.AgentVersion)
		case dashboard.SortCompliance:
			return cmp.Compare(complianceKey(a.Audit), complianceKey(b.Audit))
		}
		return 0
	}
	slices.SortStableFunc(rows, func(a, b dashboard.NodeRow) int {
		c := cmp.Or(by(a, b), strings.Compare(a.Name, b.Name))
		if desc {
			return -c
		}
		return c
	})
}

// complianceKey orders nodes by the controls they fail; a node no
// control judged comes before one that passes them all.
func complianceKey(c dashboard.AuditCounts) int {
	if c.Judged() == 0 {
		return -1
	}
	return c.Failed()
}

func (d dashboardSource) Node(ctx context.Context, name string) (dashboard.NodeDetail, bool, error) {
	s := d.s
	n, ok, err := s.st.Node(ctx, name)
	if err != nil || !ok {
		return dashboard.NodeDetail{}, false, err
	}
	controls, err := s.nodeControls(ctx, name)
	if err != nil {
		return dashboard.NodeDetail{}, false, err
	}
	state, err := s.rolloutState(ctx, name)
	if err != nil {
		return dashboard.NodeDetail{}, false, fmt.Errorf("reading node %s: %w", name, err)
	}
	out := dashboard.NodeDetail{Row: s.dashboardRow(n, state), FactsUpdated: n.FactsUpdated, Controls: controls}
	// The row's counts from the node's own results, not from a view
	// that may be older.
	out.Row.Audit = dashboard.AuditCounts{}
	for _, c := range controls {
		countState(&out.Row.Audit, c.State)
	}
	if cf, ok := s.facts.get(name); ok {
		out.Facts = flattenFacts(cf.facts)
	} else if _, b, updated, ok, err := s.st.Facts(ctx, name); err != nil {
		return out, false, fmt.Errorf("reading facts of %s: %w", name, err)
	} else if ok {
		var f facts.Facts
		if err := json.Unmarshal(b, &f); err != nil {
			return out, false, fmt.Errorf("decoding facts of %s: %w", name, err)
		}
		out.Facts, out.FactsUpdated = flattenFacts(f), updated
	}
	if cur, _ := s.compiles.get(name); cur != nil {
		b, err := s.catalogBytes(ctx, cur)
		if err != nil {
			return out, false, fmt.Errorf("reading the catalog of %s: %w", name, err)
		}
		c, err := catalogs.Decode(b)
		if err != nil {
			return out, false, fmt.Errorf("decoding the catalog of %s: %w", name, err)
		}
		dc := &dashboard.Catalog{Etag: cur.etag, Version: cur.version}
		for i := range c.Resources {
			r := &c.Resources[i]
			dc.Resources = append(dc.Resources, dashboard.Resource{ID: r.ID, Source: r.Source, Attrs: resourceAttrs(r)})
		}
		out.Catalog = dc
	}
	if v, ok := s.services.Load(name); ok {
		for _, h := range v.(*nodeServices).health {
			out.Services = append(out.Services, dashboard.Service{Name: h.Name, Health: h.Health, Detail: h.Detail})
		}
	}
	return out, true, nil
}

// rolloutState is where the newest rollout has one node; "" when it is
// not in it or there is no rollout.
func (s *Server) rolloutState(ctx context.Context, node string) (string, error) {
	id := s.envs.defaultEnv().ctl.newest.Load()
	if e := s.envs.get(s.nodeEnv(node)); e != nil {
		id = e.ctl.newest.Load()
	}
	if id == 0 {
		return "", nil
	}
	r, ok, err := s.st.Rollout(ctx, id)
	if err != nil || !ok {
		return "", err
	}
	rns, err := s.st.RolloutNodes(ctx, store.RolloutNodeQuery{Rollout: id, Node: node})
	if err != nil || len(rns) == 0 {
		return "", err
	}
	return rolloutNodeState(r, rns[0]), nil
}

// flattenFacts lists the leaves of a JSON tree by dotted path, each value
// as JSON, sorted by path.
func flattenFacts(m map[string]any) []dashboard.Fact {
	var out []dashboard.Fact
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, sub := range m {
				walk(prefix+k+".", sub)
			}
			return
		}
		// The page escapes the value; JSON's own \u003c escapes would
		// only make it harder to read.
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		val := ""
		if err := enc.Encode(v); err != nil {
			val = fmt.Sprintf("%v", v)
		} else {
			val = strings.TrimSuffix(b.String(), "\n")
		}
		out = append(out, dashboard.Fact{Path: strings.TrimSuffix(prefix, "."), Value: val})
	}
	for k, v := range m {
		walk(k+".", v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func (d dashboardSource) Reports(ctx context.Context, node string, limit int) ([]dashboard.Report, error) {
	rs, _, err := d.s.st.ReportsPage(ctx, store.ReportQuery{Node: node, Limit: limit, MaxBytes: maxReportsPageBytes})
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Report, 0, len(rs))
	for _, r := range rs {
		out = append(out, dashboardReport(r))
	}
	return out, nil
}

func (d dashboardSource) Run(ctx context.Context, node, runID string) (dashboard.Report, bool, error) {
	r, ok, err := d.s.st.ReportByRun(ctx, node, runID)
	if err != nil || !ok {
		return dashboard.Report{}, false, err
	}
	return dashboardReport(r), true, nil
}

// dashboardReport is a stored report as the pages show it. Changes the
// store holds as JSON that does not decode are shown as their text.
func dashboardReport(r store.Report) dashboard.Report {
	sm := r.Summary
	out := dashboard.Report{
		Node: r.Node, RunID: r.RunID, Version: r.Version, Noop: r.Noop, Audit: r.Audit,
		Started: r.Started, Received: r.Received, Duration: r.Duration,
		Summary: dashboard.Summary{Resources: sm.Resources, InSync: sm.InSync, Changed: sm.Changed, Failed: sm.Failed,
			Skipped: sm.Skipped, Unknown: sm.Unknown, Refreshed: sm.Refreshed, Drift: sm.Drift},
	}
	for _, e := range r.Events {
		ev := dashboard.Event{ID: e.ID, Type: e.Type, Status: e.Status, Refresh: e.Refresh, Noop: e.Noop,
			Error: e.Error, Cause: e.Cause, Output: e.Output, Duration: e.Duration, Source: e.Source}
		if len(e.ChangesJSON) > 0 {
			var cs []*herdv1.Change
			if err := json.Unmarshal(e.ChangesJSON, &cs); err != nil {
				ev.Changes = []dashboard.Change{{Attr: "(changes)", Diff: string(e.ChangesJSON)}}
			}
			for _, c := range cs {
				ev.Changes = append(ev.Changes, dashboard.Change{Attr: c.Attr, From: c.From, To: c.To, Diff: c.Diff, Action: c.Action, Sensitive: c.Sensitive})
			}
		}
		out.Events = append(out.Events, ev)
	}
	return out
}

func (d dashboardSource) RunHistory(ctx context.Context, node string, since time.Time, step time.Duration) ([]dashboard.RunBucket, error) {
	bs, err := d.s.st.ReportCounts(ctx, node, since, step)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.RunBucket, len(bs))
	for i, b := range bs {
		out[i] = dashboard.RunBucket{Start: b.Start, Runs: b.Runs, Failed: b.Failed}
	}
	return out, nil
}

func (d dashboardSource) Site(ctx context.Context) (dashboard.SiteStatus, error) {
	var out dashboard.SiteStatus
	if st := d.s.defaultSite(); st != nil {
		out.Version, out.Loaded, out.LoadError = st.version, st.loaded, st.loadErr
		out.Newest, out.NewestAttempt = st.newest, st.attempted
	}
	d.s.compiles.mu.RLock()
	for n, e := range d.s.compiles.errors {
		out.CompileErrors = append(out.CompileErrors, dashboard.CompileError{Node: n, Error: e})
	}
	d.s.compiles.mu.RUnlock()
	slices.SortFunc(out.CompileErrors, func(a, b dashboard.CompileError) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}

// blockingShown bounds the messages a rollout lists as holding it.
const blockingShown = 20

func (d dashboardSource) Rollouts(ctx context.Context, limit int) ([]dashboard.Rollout, error) {
	rs, err := d.s.st.Rollouts(ctx, 0, limit)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Rollout, 0, len(rs))
	for _, r := range rs {
		dr := dashboard.Rollout{ID: r.ID, Version: r.Version, PreviousVersion: r.PreviousVersion, State: r.State,
			Reason: r.Reason, Created: r.Created, Updated: r.Updated}
		for _, st := range r.Stages {
			dr.Stages = append(dr.Stages, dashboard.Stage{Name: st.Name, State: st.State})
		}
		counts, err := d.s.st.RolloutCounts(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		for _, c := range counts {
			if c.Stage < 0 || c.Stage >= len(dr.Stages) {
				continue
			}
			st := &dr.Stages[c.Stage]
			st.Nodes += c.Nodes
			switch c.State {
			case nodeHealthy, nodeUnchanged:
				st.Done += c.Nodes
			case nodeFailed, nodeDenied, nodeCompileError:
				st.Failed += c.Nodes
			}
		}
		switch r.State {
		case "done", "aborted", "superseded":
		default:
			// What holds a live rollout: its denied, failed and
			// uncompiled nodes.
			ns, err := d.s.st.RolloutNodes(ctx, store.RolloutNodeQuery{Rollout: r.ID, Interesting: true, Limit: blockingShown})
			if err != nil {
				return nil, err
			}
			for _, n := range ns {
				for _, m := range n.Deny {
					dr.Blocking = append(dr.Blocking, n.Node+": denied: "+m.Message)
				}
				for _, f := range n.Failures {
					dr.Blocking = append(dr.Blocking, n.Node+": "+f)
				}
				if n.CompileError != "" {
					dr.Blocking = append(dr.Blocking, n.Node+": compile error: "+firstLine(n.CompileError))
				}
			}
		}
		out = append(out, dr)
	}
	return out, nil
}
