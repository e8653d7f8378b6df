package server

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/policies"
	"github.com/herdcm/herd/server/store"
)

// Node results per Audit page (counted in nodes: a node's results are
// never split over two pages).
const (
	defaultAuditPage = 1000
	maxAuditPage     = 10000
)

// Audit answers `herd audit`: see auditReport.
func (a *adminService) Audit(ctx context.Context, req *herdv1.AuditRequest) (*herdv1.AuditResponse, error) {
	return a.s.auditReport(ctx, req)
}

// auditReport is the site's compliance as req selects it: per control its
// metadata and counts over every selected node, and a page of per-node
// results, now or at req.AtUnixMs. The HTTP API calls it too. Controls
// are those of the served version (now), or those with results at the
// time asked (then, with the metadata they last had).
func (s *Server) auditReport(ctx context.Context, req *herdv1.AuditRequest) (*herdv1.AuditResponse, error) {
	if req.AtUnixMs < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "audit: at %d is before 1970", req.AtUnixMs)
	}
	if len(req.Control) > 64 || len(req.Node) > 253 || len(req.PageToken) > 253 {
		return nil, status.Error(codes.InvalidArgument, "audit: the control, node or page token is too long")
	}
	q := store.AuditQuery{Node: req.Node, Control: req.Control}
	if req.AtUnixMs > 0 {
		q.At = time.UnixMilli(req.AtUnixMs)
	}
	recs, err := s.st.AuditResults(ctx, q)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "audit: %v", err)
	}
	st := s.defaultSite()
	out := &herdv1.AuditResponse{}
	byID := map[string]*herdv1.AuditControl{}
	if st != nil {
		out.Version, out.AuditError = st.version, st.auditErr
		if q.At.IsZero() && st.audit != nil {
			for _, c := range st.audit.Controls() {
				byID[c.ID] = wireControl(c)
			}
		}
	}
	if q.At.IsZero() && s.envs.branches {
		// Each node is judged by its environment's controls: those of
		// the other environments too (the default's metadata wins).
		for _, e := range s.envs.all() {
			if est := e.site.Load(); est != nil && est.audit != nil {
				for _, c := range est.audit.Controls() {
					if byID[c.ID] == nil {
						byID[c.ID] = wireControl(c)
					}
				}
			}
		}
	}
	if !q.At.IsZero() || (st != nil && st.audit == nil) {
		// Controls as they were: those with results then.
		meta, err := s.st.AuditControls(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "audit: %v", err)
		}
		for _, r := range recs {
			if byID[r.Control] != nil {
				continue
			}
			var c policies.Control
			if b, ok := meta[r.Control]; ok {
				_ = json.Unmarshal(b, &c) // our own JSON; a bad row leaves the id alone
			}
			c.ID = r.Control
			byID[r.Control] = wireControl(c)
		}
	}
	if req.Control != "" {
		for id := range byID {
			if id != req.Control {
				delete(byID, id)
			}
		}
		if len(byID) == 0 {
			return nil, status.Errorf(codes.NotFound, "audit: no control %q", req.Control)
		}
	}
	for _, r := range recs {
		c := byID[r.Control]
		if c == nil {
			// A stale row of a control the version no longer has (the
			// next evaluation drops it).
			continue
		}
		switch policies.State(r.State) {
		case policies.StatePass:
			c.Pass++
		case policies.StateFail:
			c.Fail++
		case policies.StateNoData:
			c.NoData++
		case policies.StateError:
			c.Error++
		}
	}
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		c := byID[id]
		if judged := c.Pass + c.Fail + c.Error; judged > 0 {
			c.PercentCompliant = float64(c.Pass) * 100 / float64(judged)
		}
		out.Controls = append(out.Controls, c)
	}
	// Most serious first, then by id.
	slices.SortStableFunc(out.Controls, func(a, b *herdv1.AuditControl) int {
		return policies.Severity(b.Severity).Rank() - policies.Severity(a.Severity).Rank()
	})
	size := pageSize(req.PageSize, defaultAuditPage, maxAuditPage)
	nodes := 0
	last := ""
	for _, r := range recs {
		if byID[r.Control] == nil || r.Node <= req.PageToken {
			continue
		}
		if r.Node != last {
			if nodes == size {
				out.NextPageToken = last
				break
			}
			nodes++
			last = r.Node
		}
		out.Results = append(out.Results, wireResult(r))
	}
	return out, nil
}

func wireControl(c policies.Control) *herdv1.AuditControl {
	loc := ""
	if c.File != "" {
		loc = fmt.Sprintf("%s:%d", c.File, c.Line)
	}
	return &herdv1.AuditControl{Id: c.ID, Title: c.Title, Severity: string(c.Severity), Reference: c.Reference,
		Remediation: c.Remediation, Description: c.Description, Location: loc}
}

func wireResult(r store.AuditRecord) *herdv1.AuditResult {
	out := &herdv1.AuditResult{Node: r.Node, Control: r.Control, State: r.State, SinceUnixMs: unixMs(r.At), Version: r.Version}
	switch policies.State(r.State) {
	case policies.StateError:
		out.Error = string(r.Evidence)
	case policies.StateFail:
		var ev []policies.Message
		if err := json.Unmarshal(r.Evidence, &ev); err != nil {
			out.Evidence = []*herdv1.AuditEvidence{{Message: strings.TrimSpace(string(r.Evidence))}}
			break
		}
		for _, m := range ev {
			out.Evidence = append(out.Evidence, &herdv1.AuditEvidence{Message: m.Message, Resource: m.Resource})
		}
	}
	return out
}
