package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/ca"
)

// NodeLifecycle deactivates, activates or purges a node (nodelife.go).
func (a *adminService) NodeLifecycle(ctx context.Context, req *herdv1.NodeLifecycleRequest) (*herdv1.NodeLifecycleResponse, error) {
	if err := ca.CheckName(req.Node); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "node %q: %v", req.Node, err)
	}
	by := "operator " + caller(ctx).name
	var err error
	switch req.Action {
	case "deactivate":
		err = a.s.deactivateNode(ctx, req.Node, time.Now(), by)
	case "activate":
		err = a.s.activateNode(ctx, req.Node, by)
	case "purge":
		err = a.s.purgeNode(ctx, req.Node, by)
	default:
		return nil, status.Errorf(codes.InvalidArgument, "action %q: want deactivate, activate or purge", req.Action)
	}
	switch {
	case errors.Is(err, errUnknownNode):
		return nil, status.Errorf(codes.NotFound, "%s %s: the server knows no such node", req.Action, req.Node)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "%s %s: %v", req.Action, req.Node, err)
	}
	out := &herdv1.NodeLifecycleResponse{}
	if req.Action == "purge" {
		return out, nil
	}
	n, ok, err := a.s.st.Node(ctx, req.Node)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading %s: %v", req.Node, err)
	}
	if ok {
		out.Node = &herdv1.NodeInfo{
			Name: n.Name, LastCheckinUnixMs: unixMs(n.LastCheckin), AppliedEtag: n.AppliedEtag,
			LastSummary: wireSummary(n.LastSummary), LastReportUnixMs: unixMs(n.LastReport),
			AppliedVersion: n.AppliedVersion, LastNoop: n.LastNoop, DeactivatedUnixMs: unixMs(n.Deactivated),
		}
		if cur, cerr := a.s.compiles.get(n.Name); cur != nil || cerr != "" {
			if cur != nil {
				out.Node.CatalogEtag, out.Node.CatalogVersion = cur.etag, cur.version
			}
			out.Node.CompileError = cerr
		}
	}
	return out, nil
}
