package server

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/server/store"
)

// adminService serves operators (admin certificates only).
type adminService struct {
	herdv1.UnimplementedAdminServer
	s *Server
}

// Page sizes of the list calls: the default, and the cap the server
// holds to whatever a client asks, so that no list builds a response in
// proportion to the fleet or its history.
const (
	defaultNodesPage   = 500
	maxNodesPage       = 1000
	defaultCertsPage   = 500
	maxCertsPage       = 1000
	defaultReportsPage = 50
	maxReportsPage     = 200
	// maxReportsPageBytes ends a page of reports once their events' text
	// passes it.
	maxReportsPageBytes = 4 << 20
)

// pageSize is asked, or def when not positive, capped at most.
func pageSize(asked int32, def, most int) int {
	if asked <= 0 {
		return def
	}
	return min(int(asked), most)
}

func (a *adminService) ListNodes(ctx context.Context, req *herdv1.ListNodesRequest) (*herdv1.ListNodesResponse, error) {
	where, err := compileWhere(req.Where)
	if err != nil {
		return nil, err
	}
	// The token is the last name of the page (or, for a filtered page,
	// the last node read).
	page, err := a.s.scanNodes(ctx, req.PageToken, where, pageSize(req.PageSize, defaultNodesPage, maxNodesPage))
	if err != nil {
		return nil, queryStatus(err, "listing nodes")
	}
	out := &herdv1.ListNodesResponse{NextPageToken: page.next}
	nodes := page.nodes
	// Where the newest rollout has each node of the page.
	var inRollout map[string]string
	var rollouts map[string]int64
	if len(nodes) > 0 {
		if inRollout, rollouts, err = a.s.rolloutStates(ctx, req.PageToken, nodes[len(nodes)-1].Name); err != nil {
			return nil, status.Errorf(codes.Internal, "listing nodes: %v", err)
		}
	}
	for _, n := range nodes {
		// Filtered after the page is cut, so that the token stays a
		// name of the store's order; a page may come out short.
		if !n.Deactivated.IsZero() && !req.Inactive {
			continue
		}
		info := &herdv1.NodeInfo{
			Name: n.Name, LastCheckinUnixMs: unixMs(n.LastCheckin), AppliedEtag: n.AppliedEtag,
			LastSummary: wireSummary(n.LastSummary), LastReportUnixMs: unixMs(n.LastReport),
			AppliedVersion: n.AppliedVersion, LastNoop: n.LastNoop, DeactivatedUnixMs: unixMs(n.Deactivated), Drift: int32(n.Drift),
			Environment: a.s.shownEnv(n.Name),
		}
		if st, ok := inRollout[n.Name]; ok {
			info.RolloutState, info.RolloutId = st, rollouts[n.Name]
		}
		if cur, cerr := a.s.compiles.get(n.Name); cur != nil || cerr != "" {
			if cur != nil {
				info.CatalogEtag, info.CatalogVersion = cur.etag, cur.version
			}
			info.CompileError = cerr
		}
		out.Nodes = append(out.Nodes, info)
	}
	return out, nil
}

func (a *adminService) GetFacts(ctx context.Context, req *herdv1.GetFactsRequest) (*herdv1.GetFactsResponse, error) {
	_, b, updated, ok, err := a.s.st.Facts(ctx, req.Node)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading facts: %v", err)
	}
	if !ok {
		if _, known, err := a.s.st.Node(ctx, req.Node); err == nil && !known {
			return nil, status.Errorf(codes.NotFound, "no node %s: the server knows no such node (herd nodes --all lists them)", req.Node)
		}
		return nil, status.Errorf(codes.NotFound, "no facts for node %s: it has not checked in with facts yet", req.Node)
	}
	return &herdv1.GetFactsResponse{FactsJson: b, UpdatedUnixMs: unixMs(updated)}, nil
}

func (a *adminService) ListReports(ctx context.Context, req *herdv1.ListReportsRequest) (*herdv1.ListReportsResponse, error) {
	asked := req.PageSize
	if asked <= 0 {
		asked = req.Limit // clients from before pages asked with limit
	}
	q := store.ReportQuery{Node: req.Node, Limit: pageSize(asked, defaultReportsPage, maxReportsPage), MaxBytes: maxReportsPageBytes}
	if req.PageToken != "" {
		before, err := strconv.ParseInt(req.PageToken, 10, 64)
		if err != nil || before <= 0 {
			return nil, status.Errorf(codes.InvalidArgument, "page token %q: not one this server gave", req.PageToken)
		}
		q.Before = before
	}
	rs, next, err := a.s.st.ReportsPage(ctx, q)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "listing reports: %v", err)
	}
	if len(rs) == 0 && req.Node != "" && req.PageToken == "" {
		// No reports for a name the server never heard of is a typo, not
		// a quiet node: say so, rather than an empty list.
		if _, ok, err := a.s.st.Node(ctx, req.Node); err != nil {
			return nil, status.Errorf(codes.Internal, "reading node %s: %v", req.Node, err)
		} else if !ok {
			return nil, status.Errorf(codes.NotFound, "no node %s: the server knows no such node (herd nodes --all lists them)", req.Node)
		}
	}
	out := &herdv1.ListReportsResponse{}
	if next > 0 {
		out.NextPageToken = strconv.FormatInt(next, 10)
	}
	for _, r := range rs {
		out.Reports = append(out.Reports, &herdv1.StoredReport{Node: r.Node, ReceivedUnixMs: unixMs(r.Received), Report: wireReport(r)})
	}
	return out, nil
}

func (a *adminService) GetCatalog(ctx context.Context, req *herdv1.GetCatalogRequest) (*herdv1.GetCatalogResponse, error) {
	cur, _ := a.s.compiles.get(req.Node)
	if cur == nil {
		return nil, status.Errorf(codes.NotFound, "no catalog for node %s", req.Node)
	}
	b, err := a.s.catalogBytes(ctx, cur)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	return &herdv1.GetCatalogResponse{Catalog: b, Etag: cur.etag}, nil
}

func (a *adminService) SiteStatus(context.Context, *herdv1.SiteStatusRequest) (*herdv1.SiteStatusResponse, error) {
	st := a.s.defaultSite()
	out := &herdv1.SiteStatusResponse{CompileErrors: map[string]string{}}
	if st != nil {
		out.Version, out.LoadedUnixMs, out.LoadError = st.version, unixMs(st.loaded), st.loadErr
		out.NewestVersion, out.NewestAttemptUnixMs = st.newest, unixMs(st.attempted)
		out.AuditError = st.auditErr
	}
	if a.s.envs.branches {
		for _, e := range a.s.envs.all() {
			es := &herdv1.EnvironmentStatus{Name: e.name}
			if st := e.site.Load(); st != nil {
				es.Version, es.LoadedUnixMs, es.LoadError = st.version, unixMs(st.loaded), st.loadErr
				es.NewestVersion, es.NewestAttemptUnixMs, es.AuditError = st.newest, unixMs(st.attempted), st.auditErr
			} else {
				es.LoadError = "never loaded: see the server's log"
			}
			out.Environments = append(out.Environments, es)
		}
	}
	a.s.compiles.mu.RLock()
	for n, e := range a.s.compiles.errors {
		out.CompileErrors[n] = e
	}
	a.s.compiles.mu.RUnlock()
	return out, nil
}

func (a *adminService) ListCertificates(ctx context.Context, req *herdv1.ListCertificatesRequest) (*herdv1.ListCertificatesResponse, error) {
	list, next, err := a.s.ca.ListPage(ctx, req.PageToken, pageSize(req.PageSize, defaultCertsPage, maxCertsPage))
	if err != nil {
		return nil, caStatus(err, "listing certificates")
	}
	out := &herdv1.ListCertificatesResponse{NextPageToken: next}
	for _, c := range list {
		out.Certificates = append(out.Certificates, wireCert(c))
	}
	return out, nil
}

func (a *adminService) SignCertificate(ctx context.Context, req *herdv1.SignCertificateRequest) (*herdv1.SignCertificateResponse, error) {
	c, err := a.s.ca.Sign(ctx, req.Name, req.Fingerprint)
	if err != nil {
		return nil, caStatus(err, "signing "+req.Name)
	}
	return &herdv1.SignCertificateResponse{Certificate: &herdv1.Certificate{
		Name: c.Name, Serial: c.Serial, State: "issued", NotAfterUnixMs: unixMs(c.NotAfter), Admin: c.Admin,
	}}, nil
}

func (a *adminService) RevokeCertificate(ctx context.Context, req *herdv1.RevokeCertificateRequest) (*herdv1.RevokeCertificateResponse, error) {
	if err := a.s.ca.Revoke(ctx, req.Name); err != nil {
		return nil, caStatus(err, "revoking "+req.Name)
	}
	return &herdv1.RevokeCertificateResponse{}, nil
}

func (a *adminService) CreateJoinToken(ctx context.Context, req *herdv1.CreateJoinTokenRequest) (*herdv1.CreateJoinTokenResponse, error) {
	secret, expires, err := a.s.ca.NewToken(ctx, req.NamePattern, time.Duration(req.TtlMs)*time.Millisecond, req.SingleUse)
	if err != nil {
		return nil, caStatus(err, "creating a join token")
	}
	return &herdv1.CreateJoinTokenResponse{Token: secret, ExpiresUnixMs: unixMs(expires), Id: ca.TokenID(secret)}, nil
}

// caStatus maps the CA's errors to gRPC codes at the edge.
func caStatus(err error, doing string) error {
	code := codes.Internal
	switch {
	case errors.Is(err, ca.ErrExists), errors.Is(err, ca.ErrPendingOther):
		code = codes.AlreadyExists
	case errors.Is(err, ca.ErrFingerprint), errors.Is(err, ca.ErrRotation):
		code = codes.FailedPrecondition
	case errors.Is(err, ca.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ca.ErrInvalid):
		code = codes.InvalidArgument
	}
	return status.Errorf(code, "%s: %v", doing, err)
}

func wireCert(c ca.Listed) *herdv1.Certificate {
	return &herdv1.Certificate{Name: c.Name, Serial: c.Serial, State: string(c.State), NotAfterUnixMs: unixMs(c.NotAfter), Admin: c.Admin,
		Fingerprint: c.Fingerprint, Source: c.Source, TimeUnixMs: unixMs(c.Time)}
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func wireSummary(s store.Summary) *herdv1.Summary {
	return &herdv1.Summary{Resources: int32(s.Resources), InSync: int32(s.InSync), Changed: int32(s.Changed),
		Failed: int32(s.Failed), Skipped: int32(s.Skipped), Unknown: int32(s.Unknown), Refreshed: int32(s.Refreshed),
		Drift: int32(s.Drift)}
}

func wireReport(r store.Report) *herdv1.Report {
	out := &herdv1.Report{RunId: r.RunID, Version: r.Version, CatalogDigest: r.CatalogDigest, Noop: r.Noop, Audit: r.Audit, Partial: r.Partial,
		StartedUnixNs: r.Started.UnixNano(), DurationNs: int64(r.Duration), Summary: wireSummary(r.Summary)}
	for _, e := range r.Events {
		ev := &herdv1.Event{Id: e.ID, Type: e.Type, Status: e.Status, Noop: e.Noop, Refresh: e.Refresh,
			Error: e.Error, Cause: e.Cause, Output: e.Output, DurationNs: int64(e.Duration), Source: e.Source}
		if len(e.ChangesJSON) > 0 {
			_ = json.Unmarshal(e.ChangesJSON, &ev.Changes)
		}
		out.Events = append(out.Events, ev)
	}
	return out
}
