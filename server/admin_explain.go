package server

import (
	"context"
	"encoding/json"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/server/store"
)

// Explain compiles the node with its environment's served site and its stored
// facts, recording why its catalog is what it is (catalogs.Explain), and
// adds where the node stands in the rollout. The compile is the node's
// real one (its secrets opened and sealed, as a check-in's), but nothing
// of it is stored or handed to the node: an explanation changes nothing.
func (a *adminService) Explain(ctx context.Context, req *herdv1.ExplainRequest) (*herdv1.ExplainResponse, error) {
	if err := catalogs.ValidNodeName(req.Node); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "node: %v", err)
	}
	f, err := a.s.nodeFacts(ctx, req.Node)
	if err != nil {
		return nil, err
	}
	// The node's own environment's version, as its check-in compiles:
	// read only, so that explaining never moves a node.
	env, why := a.s.envName(req.Node, f)
	if why != "" {
		return nil, status.Error(codes.FailedPrecondition, why)
	}
	e := a.s.envs.get(env)
	if e == nil || e.site.Load() == nil {
		return nil, status.Errorf(codes.Unavailable, "environment %q of node %s has no site version served", env, req.Node)
	}
	st := e.site.Load()
	ex, _, err := st.site.Explain(req.Node, f, a.s.compileOptions(req.Node), req.Resource)
	if err != nil {
		var unknown *catalogs.UnknownResourceError
		if errors.As(err, &unknown) {
			return nil, status.Error(codes.NotFound, err.Error())
		}
		if req.Resource != "" && !errors.As(err, new(catalogs.Diagnostics)) {
			return nil, status.Errorf(codes.InvalidArgument, "resource: %v", err)
		}
		return nil, status.Errorf(codes.FailedPrecondition, "compiling node %s at %s: %v", req.Node, st.version, err)
	}
	if ex.Rollout, err = a.rolloutPosition(ctx, req.Node, env); err != nil {
		return nil, err
	}
	b, err := json.Marshal(ex)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding the explanation: %v", err)
	}
	return &herdv1.ExplainResponse{ExplanationJson: b}, nil
}

// nodeFacts are the node's newest facts: the ones its last check-in
// brought, else the store's.
func (s *Server) nodeFacts(ctx context.Context, node string) (facts.Facts, error) {
	if cf, ok := s.facts.get(node); ok {
		return cf.facts, nil
	}
	_, b, _, ok, err := s.st.Facts(ctx, node)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the facts of %s: %v", node, err)
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no facts for node %s: it has not checked in", node)
	}
	f, err := facts.FromJSON(b)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the stored facts of %s: %v", node, err)
	}
	return f, nil
}

// rolloutPosition says which version the node is approved at, and where
// it stands in the newest rollout of its environment env.
func (a *adminService) rolloutPosition(ctx context.Context, node, env string) (*catalogs.RolloutPosition, error) {
	pos := &catalogs.RolloutPosition{}
	if cur, _ := a.s.compiles.get(node); cur != nil {
		pos.Approved = cur.version
	}
	r, err := a.rollout(ctx, 0, env)
	if status.Code(err) == codes.NotFound {
		return pos, nil
	}
	if err != nil {
		return nil, err
	}
	pos.ID, pos.Version, pos.State = r.ID, r.Version, r.State
	nodes, err := a.s.st.RolloutNodes(ctx, store.RolloutNodeQuery{Rollout: r.ID, Node: node})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading node %s of rollout %d: %v", node, r.ID, err)
	}
	if len(nodes) == 0 {
		return pos, nil
	}
	n := nodes[0]
	pos.NodeState, pos.Decision = rolloutNodeState(r, n), n.Decision
	if n.Stage >= 0 && n.Stage < len(r.Stages) {
		pos.Stage, pos.StageIndex, pos.StageState = r.Stages[n.Stage].Name, n.Stage+1, r.Stages[n.Stage].State
	}
	if pos.Approved != r.Version && (r.State == rolloutRunning || r.State == rolloutPaused || r.State == rolloutAwaiting || r.State == rolloutHalted) {
		pos.Pending = r.Version
	}
	return pos, nil
}
