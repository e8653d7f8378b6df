package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/server/store"
)

// Fleet queries: `herd nodes --where` and `herd facts --all`. A where
// expression is in the language of the site's conditions and is compiled
// once per call, then run per node over the facts the server holds in
// memory (factsCache) and the node's status from the store, so that a
// query over the fleet decodes no JSON.

// whereDecl declares the status names of a where expression with their
// types: comparing one with a value of another type is an error when the
// expression compiles, not a silent false on every node. Any other name
// is a top-level fact.
var whereDecl = map[string]any{
	"facts":           map[string]any{},
	"name":            "",
	"version":         "",
	"applied_version": "",
	"agent_version":   "",
	"status":          "",
	"rollout_state":   "",
	"compile_error":   "",
	// The environment the server placed the node in (env.go).
	"environment":  "",
	"last_checkin": time.Time{},
	"checkin_age":  0.0,
	"last_report":  time.Time{},
	"changed":      0,
	"failed":       0,
	"noop":         false,
	"drift":        0,
	// The node's audit results (dashboard_compliance.go): controls
	// failed (fail or error), passed, and without data.
	"controls_failed":  0,
	"controls_passed":  0,
	"controls_no_data": 0,
}

const (
	// maxWhereScan bounds the nodes one filtered call reads: a page that
	// finds few matches ends there, with a token to go on from, so that no
	// call's work grows with the fleet.
	maxWhereScan = 20000
	// whereChunk is how many nodes a filtered call reads from the store at
	// once.
	whereChunk = 1000
	// maxWhereLen bounds an expression's text.
	maxWhereLen = 4096
)

// compileWhere compiles a request's where expression; nil when it is
// empty. A bad one is InvalidArgument naming the column.
func compileWhere(src string) (*catalogs.Filter, error) {
	if src == "" {
		return nil, nil
	}
	if len(src) > maxWhereLen {
		return nil, status.Errorf(codes.InvalidArgument, "where: the expression is %d bytes, more than the %d this server accepts", len(src), maxWhereLen)
	}
	f, err := catalogs.CompileFilter(src, whereDecl)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "where %q: %v", src, err)
	}
	return f, nil
}

// runStatus is a node's last run in one word: unreported, failed,
// changed, pending (a noop run that would change something) or
// unchanged.
func runStatus(n store.Node) string {
	switch {
	case n.LastReport.IsZero():
		return "unreported"
	case n.LastSummary.Failed > 0:
		return "failed"
	case n.LastSummary.Changed > 0 && n.LastNoop:
		return "pending"
	case n.LastSummary.Changed > 0:
		return "changed"
	}
	return "unchanged"
}

// whereEnv is what a where expression sees of one node: its facts at the
// top level and under facts, and its status, which wins over a fact of
// the same name (a node must not pose as failed, or as another node).
// Only the names the expression reads are filled in (every one when
// names is nil), so that a query over the fleet builds small maps.
func (s *Server) whereEnv(names []string, n store.Node, f facts.Facts, rolloutState string, now time.Time) map[string]any {
	if names == nil {
		env := make(map[string]any, len(f)+len(whereDecl))
		for k, v := range f {
			env[k] = v
		}
		for k := range whereDecl {
			env[k], _ = s.whereValue(k, n, f, rolloutState, now)
		}
		return env
	}
	env := make(map[string]any, len(names))
	for _, k := range names {
		if v, ok := s.whereValue(k, n, f, rolloutState, now); ok {
			env[k] = v
		}
	}
	return env
}

// whereValue is the value of one top-level name of a node's env; false
// for a fact the node does not have.
func (s *Server) whereValue(name string, n store.Node, f facts.Facts, rolloutState string, now time.Time) (any, bool) {
	switch name {
	case "facts":
		if f == nil {
			return map[string]any{}, true
		}
		return map[string]any(f), true
	case "name":
		return n.Name, true
	case "version", "compile_error":
		cur, cerr := s.compiles.get(n.Name)
		if name == "compile_error" {
			return cerr, true
		}
		if cur == nil {
			return "", true
		}
		return cur.version, true
	case "environment":
		return s.shownEnv(n.Name), true
	case "applied_version":
		return n.AppliedVersion, true
	case "agent_version":
		return n.AgentVersion, true
	case "status":
		return runStatus(n), true
	case "rollout_state":
		return rolloutState, true
	case "last_checkin":
		return n.LastCheckin, true
	case "checkin_age":
		if n.LastCheckin.IsZero() {
			return -1.0, true
		}
		return now.Sub(n.LastCheckin).Seconds(), true
	case "last_report":
		return n.LastReport, true
	case "changed":
		return n.LastSummary.Changed, true
	case "failed":
		return n.LastSummary.Failed, true
	case "noop":
		return n.LastNoop, true
	case "drift":
		return n.Drift, true
	case "controls_failed":
		return s.auditCounts(n.Name).Failed(), true
	case "controls_passed":
		return s.auditCounts(n.Name).Pass, true
	case "controls_no_data":
		return s.auditCounts(n.Name).NoData, true
	}
	v, ok := f[name]
	return v, ok
}

// nodePage is one page of nodes after a cursor that a filter selects.
type nodePage struct {
	nodes []store.Node
	// next is the cursor of the next call; "" when the fleet is done.
	next string
}

// scanNodes reads the nodes after the cursor in name order and keeps
// those where selects (every node when where is nil), up to size. A call
// reads at most maxWhereScan nodes: it may end with fewer than size, even
// none, and a next cursor.
func (s *Server) scanNodes(ctx context.Context, after string, where *catalogs.Filter, size int) (nodePage, error) {
	if where == nil {
		// One more than the page: whether it comes says whether there is
		// a next page.
		nodes, err := s.st.NodesAfter(ctx, after, size+1)
		if err != nil {
			return nodePage{}, err
		}
		if len(nodes) > size {
			return nodePage{nodes: nodes[:size], next: nodes[size-1].Name}, nil
		}
		return nodePage{nodes: nodes}, nil
	}
	limit := cmp.Or(s.queryScan, maxWhereScan)
	match := where.Matcher()
	names := where.Names()
	if factsOnly(names) {
		// A node the server holds no facts for sees an empty env. When
		// the expression is false there, only nodes with facts can
		// match, and the facts in memory are all it needs.
		if ok, _ := match(s.whereEnv(names, store.Node{}, nil, "", time.Time{})); !ok {
			return s.scanFacts(ctx, after, names, match, size, limit)
		}
	}
	withRollout := where.Uses("rollout_state")
	if where.Uses("controls_failed") || where.Uses("controls_passed") || where.Uses("controls_no_data") {
		// The view the controls_* names read, fresh.
		if _, err := s.complianceNow(ctx); err != nil {
			return nodePage{}, err
		}
	}
	now := time.Now()
	var page nodePage
	for scanned, cursor := 0, after; ; {
		chunk, err := s.st.NodesAfter(ctx, cursor, whereChunk)
		if err != nil {
			return nodePage{}, err
		}
		if len(chunk) == 0 {
			return page, nil
		}
		var states map[string]string
		if withRollout {
			if states, _, err = s.rolloutStates(ctx, cursor, chunk[len(chunk)-1].Name); err != nil {
				return nodePage{}, err
			}
		}
		for _, n := range chunk {
			scanned++
			// A node the expression fails on (a path through a fact it
			// lacks) is not selected.
			cf, _ := s.facts.get(n.Name)
			if ok, _ := match(s.whereEnv(names, n, cf.facts, states[n.Name], now)); ok {
				if len(page.nodes) == size {
					// One match past the page: there is a next page.
					page.next = page.nodes[size-1].Name
					return page, nil
				}
				page.nodes = append(page.nodes, n)
			}
			if scanned >= limit {
				page.next = n.Name
				return page, nil
			}
		}
		if len(chunk) < whereChunk {
			return page, nil
		}
		cursor = chunk[len(chunk)-1].Name
		if err := ctx.Err(); err != nil {
			return nodePage{}, err
		}
	}
}

// factsOnly says whether an expression that reads names reads facts
// only: no status name (not even name), no $env.
func factsOnly(names []string) bool {
	if names == nil {
		return false
	}
	for _, n := range names {
		if _, status := whereDecl[n]; status && n != "facts" {
			return false
		}
	}
	return true
}

// scanFacts is scanNodes for an expression over facts only: it runs over
// the facts in memory, in name order, and reads from the store only the
// rows of the nodes it selects, so that a query over the fleet reads a
// page's worth of rows, not the fleet's. A node with facts in memory but
// no row in the store is not listed.
func (s *Server) scanFacts(ctx context.Context, after string, names []string, match func(map[string]any) (bool, error), size, limit int) (nodePage, error) {
	type candidate struct {
		name  string
		facts facts.Facts
	}
	s.facts.mu.RLock()
	cands := make([]candidate, 0, len(s.facts.m))
	for name, cf := range s.facts.m {
		if name > after {
			cands = append(cands, candidate{name, cf.facts})
		}
	}
	s.facts.mu.RUnlock()
	slices.SortFunc(cands, func(a, b candidate) int { return strings.Compare(a.name, b.name) })

	var page nodePage
	var picked []string
	// take reads the picked nodes' rows onto the page; true once it holds
	// one more than the page, which says there is a next page.
	take := func() (bool, error) {
		if len(picked) == 0 {
			return false, nil
		}
		rows, err := s.st.NodesNamed(ctx, picked)
		picked = picked[:0]
		if err != nil {
			return false, err
		}
		for _, n := range rows {
			if len(page.nodes) == size {
				page.next = page.nodes[size-1].Name
				return true, nil
			}
			page.nodes = append(page.nodes, n)
		}
		return false, nil
	}
	for i, c := range cands {
		if ok, _ := match(s.whereEnv(names, store.Node{Name: c.name}, c.facts, "", time.Time{})); ok {
			picked = append(picked, c.name)
			if len(page.nodes)+len(picked) > size {
				if full, err := take(); err != nil || full {
					return page, err
				}
			}
		}
		if i+1 >= limit {
			if full, err := take(); err != nil || full {
				return page, err
			}
			page.next = c.name
			return page, nil
		}
	}
	_, err := take()
	return page, err
}

// rolloutStates says where the newest rollout of its environment has
// each node with a name in (after, through], and that rollout's id; nil
// when there is no rollout.
func (s *Server) rolloutStates(ctx context.Context, after, through string) (map[string]string, map[string]int64, error) {
	var states map[string]string
	var ids map[string]int64
	for _, e := range s.envs.all() {
		id := e.ctl.newest.Load()
		if id == 0 {
			continue
		}
		r, ok, err := s.st.Rollout(ctx, id)
		if err != nil || !ok {
			return nil, nil, err
		}
		rns, err := s.st.RolloutNodes(ctx, store.RolloutNodeQuery{Rollout: id, After: after, Through: through})
		if err != nil {
			return nil, nil, err
		}
		if states == nil {
			states, ids = make(map[string]string, len(rns)), make(map[string]int64, len(rns))
		}
		for _, rn := range rns {
			// A node that moved to another environment is its new
			// environment's.
			if s.envs.branches && s.nodeEnv(rn.Node) != e.name {
				continue
			}
			states[rn.Node], ids[rn.Node] = rolloutNodeState(r, rn), id
		}
	}
	return states, ids, nil
}

func (a *adminService) FleetFacts(ctx context.Context, req *herdv1.FleetFactsRequest) (*herdv1.FleetFactsResponse, error) {
	if req.Fact == "" {
		return nil, status.Error(codes.InvalidArgument, "fleet facts: no fact named (a dotted path such as os.family)")
	}
	if len(req.Fact) > maxWhereLen {
		return nil, status.Errorf(codes.InvalidArgument, "fleet facts: the fact path is %d bytes, more than the %d this server accepts", len(req.Fact), maxWhereLen)
	}
	where, err := compileWhere(req.Where)
	if err != nil {
		return nil, err
	}
	page, err := a.s.scanNodes(ctx, req.PageToken, where, pageSize(req.PageSize, defaultNodesPage, maxNodesPage))
	if err != nil {
		return nil, queryStatus(err, "listing fleet facts")
	}
	out := &herdv1.FleetFactsResponse{NextPageToken: page.next}
	for _, n := range page.nodes {
		// As in ListNodes: deactivated nodes only when asked for.
		if !n.Deactivated.IsZero() && !req.Inactive {
			continue
		}
		ff := &herdv1.FleetFact{Node: n.Name}
		cf, _ := a.s.facts.get(n.Name)
		if v, ok := cf.facts.Lookup(req.Fact); ok {
			// Facts came from JSON: they encode again.
			if ff.ValueJson, err = json.Marshal(v); err != nil {
				return nil, status.Errorf(codes.Internal, "encoding %s of %s: %v", req.Fact, n.Name, err)
			}
		}
		out.Facts = append(out.Facts, ff)
	}
	return out, nil
}

// queryStatus maps a scan's error to a gRPC status: the caller's own end
// stays its own.
func queryStatus(err error, doing string) error {
	switch {
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", doing, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", doing, err)
	}
	return status.Error(codes.Internal, fmt.Sprintf("%s: %v", doing, err))
}
