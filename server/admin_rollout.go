package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/server/store"
)

// Page sizes of the rollout calls (see pageSize).
const (
	defaultRolloutsPage     = 50
	maxRolloutsPage         = 200
	defaultRolloutNodesPage = 200
	maxRolloutNodesPage     = 1000
	defaultDiffPage         = 100
	maxDiffPage             = 500
)

func (a *adminService) ListRollouts(ctx context.Context, req *herdv1.ListRolloutsRequest) (*herdv1.ListRolloutsResponse, error) {
	before, err := idToken(req.PageToken)
	if err != nil {
		return nil, err
	}
	size := pageSize(req.PageSize, defaultRolloutsPage, maxRolloutsPage)
	list, err := a.s.st.Rollouts(ctx, before, size+1)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "listing rollouts: %v", err)
	}
	out := &herdv1.ListRolloutsResponse{}
	if len(list) > size {
		list = list[:size]
		out.NextPageToken = strconv.FormatInt(list[size-1].ID, 10)
	}
	for _, r := range list {
		w, err := a.wireRollout(ctx, r)
		if err != nil {
			return nil, err
		}
		out.Rollouts = append(out.Rollouts, w)
	}
	return out, nil
}

// idToken reads a page token that is a rollout id.
func idToken(tok string) (int64, error) {
	if tok == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(tok, 10, 64)
	if err != nil || id <= 0 {
		return 0, status.Errorf(codes.InvalidArgument, "page token %q: not one this server gave", tok)
	}
	return id, nil
}

// rollout reads rollout id (0: the newest of environment env, "" the
// default) or answers NotFound.
func (a *adminService) rollout(ctx context.Context, id int64, env string) (store.Rollout, error) {
	if id < 0 {
		return store.Rollout{}, status.Errorf(codes.InvalidArgument, "rollout id %d: ids are positive (0 is the newest)", id)
	}
	var r store.Rollout
	var ok bool
	var err error
	if id == 0 {
		e, serr := a.env(env)
		if serr != nil {
			return r, serr
		}
		envs := []string{e.name}
		if e.name == a.s.envs.def {
			envs = append(envs, "")
		}
		r, ok, err = a.s.st.NewestRollout(ctx, envs...)
	} else {
		r, ok, err = a.s.st.Rollout(ctx, id)
	}
	if err != nil {
		return r, status.Errorf(codes.Internal, "reading rollout %d: %v", id, err)
	}
	if !ok {
		if id == 0 {
			return r, status.Errorf(codes.NotFound, "no rollout yet in environment %s", cmp.Or(env, a.s.envs.def))
		}
		return r, status.Errorf(codes.NotFound, "no rollout %d", id)
	}
	if env != "" && rolloutEnv(r, a.s.envs.def) != env {
		return r, status.Errorf(codes.InvalidArgument, "rollout %d is environment %s's, not %s's", id, rolloutEnv(r, a.s.envs.def), env)
	}
	return r, nil
}

// env is the served environment name ("" the default), or NotFound
// naming the ones served.
func (a *adminService) env(name string) (*environment, error) {
	if name == "" {
		name = a.s.envs.def
	}
	e := a.s.envs.get(name)
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "environment %q is not served (served: %s)", name, strings.Join(a.s.envs.names(), ", "))
	}
	return e, nil
}

// rolloutEnv is r's environment; a rollout from before environments is
// the default's.
func rolloutEnv(r store.Rollout, def string) string {
	if r.Environment == "" {
		return def
	}
	return r.Environment
}

func (a *adminService) GetRollout(ctx context.Context, req *herdv1.GetRolloutRequest) (*herdv1.GetRolloutResponse, error) {
	q := store.RolloutNodeQuery{After: req.PageToken}
	switch req.Nodes {
	case "":
		q.Interesting = true
	case "all":
	default:
		return nil, status.Errorf(codes.InvalidArgument, "nodes %q: want \"\" (the ones worth a look) or \"all\"", req.Nodes)
	}
	r, err := a.rollout(ctx, req.Id, req.Environment)
	if err != nil {
		return nil, err
	}
	out := &herdv1.GetRolloutResponse{}
	if out.Rollout, err = a.wireRollout(ctx, r); err != nil {
		return nil, err
	}
	size := pageSize(req.PageSize, defaultRolloutNodesPage, maxRolloutNodesPage)
	q.Rollout, q.Limit = r.ID, size+1
	nodes, err := a.s.st.RolloutNodes(ctx, q)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "listing the nodes of rollout %d: %v", r.ID, err)
	}
	if len(nodes) > size {
		nodes = nodes[:size]
		out.NextPageToken = nodes[size-1].Node
	}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, wireRolloutNode(r, n))
	}
	return out, nil
}

func (a *adminService) RolloutAction(ctx context.Context, req *herdv1.RolloutActionRequest) (*herdv1.RolloutActionResponse, error) {
	switch req.Action {
	case "pause", "resume", "approve", "abort":
	default:
		return nil, status.Errorf(codes.InvalidArgument, "rollout action %q: want pause, resume, approve or abort", req.Action)
	}
	if req.Id < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "rollout id %d: ids are positive (0 is the newest)", req.Id)
	}
	// The controller of the rollout's environment: the newest of the one
	// asked for, or the one rollout id belongs to.
	name := req.Environment
	if req.Id != 0 {
		r, err := a.rollout(ctx, req.Id, req.Environment)
		if err != nil {
			return nil, err
		}
		name = rolloutEnv(r, a.s.envs.def)
	}
	e, err := a.env(name)
	if err != nil {
		return nil, err
	}
	var rec store.Rollout
	var actErr error
	if a.s.leadsRollouts() {
		rec, actErr = a.s.rolloutAction(ctx, e.name, req.Id, req.Action)
	} else {
		// Another server drives the rollouts: it acts, and its answer
		// is read back from the store.
		var id int64
		if id, actErr = a.s.callLeader(ctx, e.name, req.Id, req.Action); actErr == nil {
			var ok bool
			if rec, ok, actErr = a.s.st.Rollout(ctx, id); actErr == nil && !ok {
				actErr = fmt.Errorf("rollout %d: %w", id, errNoRollout)
			}
		}
	}
	switch {
	case errors.Is(actErr, errNoRollout):
		return nil, status.Error(codes.NotFound, actErr.Error())
	case errors.Is(actErr, errBadAction):
		return nil, status.Error(codes.InvalidArgument, actErr.Error())
	case errors.Is(actErr, errRolloutState):
		return nil, status.Error(codes.FailedPrecondition, actErr.Error())
	case errors.Is(actErr, errNotLeading), errors.Is(actErr, errController), errors.Is(actErr, context.DeadlineExceeded):
		return nil, status.Errorf(codes.Unavailable, "%s: %v", req.Action, actErr)
	case actErr != nil:
		return nil, status.Errorf(codes.Internal, "%s: %v", req.Action, actErr)
	}
	w, err := a.wireRollout(ctx, rec)
	if err != nil {
		return nil, err
	}
	return &herdv1.RolloutActionResponse{Rollout: w}, nil
}

func (a *adminService) RolloutDiff(ctx context.Context, req *herdv1.RolloutDiffRequest) (*herdv1.RolloutDiffResponse, error) {
	r, err := a.rollout(ctx, req.Id, req.Environment)
	if err != nil {
		return nil, err
	}
	size := pageSize(req.PageSize, defaultDiffPage, maxDiffPage)
	nodes, err := a.s.st.RolloutNodes(ctx, store.RolloutNodeQuery{Rollout: r.ID, After: req.PageToken, Node: req.Node, Changed: true, WithChange: true, Limit: size + 1})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "listing the changes of rollout %d: %v", r.ID, err)
	}
	out := &herdv1.RolloutDiffResponse{Version: r.Version, PreviousVersion: r.PreviousVersion}
	if len(nodes) > size {
		nodes = nodes[:size]
		out.NextPageToken = nodes[size-1].Node
	}
	for _, n := range nodes {
		out.Changes = append(out.Changes, &herdv1.NodeChange{Node: n.Node, ChangeJson: a.fullChange(ctx, n)})
	}
	return out, nil
}

// fullChange is node n's change with its text: the rollout keeps brief
// changes (catalogs.DiffBrief), and the unified diffs of content are made
// here from the two catalogs, for the nodes someone reads. When either
// catalog is gone (pruned), the brief change is what there is.
func (a *adminService) fullChange(ctx context.Context, n store.RolloutNode) []byte {
	if n.PreviousEtag == "" || n.Etag == "" || n.Etag == n.PreviousEtag {
		return n.Change
	}
	decode := func(etag string) *catalogs.Catalog {
		rec, ok, err := a.s.st.CatalogByEtag(ctx, etag)
		if err != nil || !ok {
			return nil
		}
		c, err := catalogs.Decode(rec.Catalog)
		if err != nil {
			return nil
		}
		return c
	}
	prev, next := decode(n.PreviousEtag), decode(n.Etag)
	if prev == nil || next == nil {
		return n.Change
	}
	b, err := json.Marshal(catalogs.Diff(prev, next, a.s.content))
	if err != nil {
		return n.Change
	}
	return b
}

// wireRollout is r with its counts, over the whole rollout and per stage.
func (a *adminService) wireRollout(ctx context.Context, r store.Rollout) (*herdv1.Rollout, error) {
	counts, err := a.s.st.RolloutCounts(ctx, r.ID)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "counting the nodes of rollout %d: %v", r.ID, err)
	}
	out := &herdv1.Rollout{Id: r.ID, Version: r.Version, PreviousVersion: r.PreviousVersion, State: r.State, Reason: r.Reason,
		CreatedUnixMs: unixMs(r.Created), UpdatedUnixMs: unixMs(r.Updated), SupersededBy: r.SupersededBy, Counts: map[string]int32{},
		Environment: rolloutEnv(r, a.s.envs.def)}
	for _, st := range r.Stages {
		out.Stages = append(out.Stages, &herdv1.RolloutStage{Name: st.Name, State: st.State, Noop: st.Noop, Manual: st.Manual,
			BakeNs: int64(st.Bake), MaxFailed: maxFailedText(&st), StartedUnixMs: unixMs(st.Started), BakeUntilUnixMs: unixMs(st.BakeUntil),
			Counts: map[string]int32{}})
	}
	for _, c := range counts {
		n := int32(c.Nodes)
		out.Counts[c.State] += n
		if c.Decision == decisionAllowed {
			out.Counts[decisionAllowed] += n
		}
		if c.Rehearsed {
			out.Counts["rehearsed"] += n
		}
		if c.Stage >= 0 && c.Stage < len(out.Stages) {
			st := out.Stages[c.Stage]
			st.Nodes += n
			st.Counts[c.State] += n
		}
		if c.Rehearse >= 0 && c.Rehearse < len(out.Stages) {
			st := out.Stages[c.Rehearse]
			st.Nodes += n
			switch {
			case c.Rehearsed:
				st.Counts["rehearsed"] += n
			case c.Decision == decisionAllowed && c.State == nodePending:
				st.Counts["rehearsing"] += n
			default:
				st.Counts[c.State] += n
			}
		}
	}
	return out, nil
}

// rolloutNodeState is the state a node shows: a pending node says
// whether it rehearsed.
func rolloutNodeState(r store.Rollout, n store.RolloutNode) string {
	if n.State != nodePending {
		return n.State
	}
	if n.Rehearsal != nil {
		return "rehearsed"
	}
	if n.Rehearse >= 0 && n.Rehearse < len(r.Stages) && r.Stages[n.Rehearse].State == stageRehearsing {
		return "rehearsing"
	}
	return n.State
}

func wireRolloutNode(r store.Rollout, n store.RolloutNode) *herdv1.RolloutNode {
	out := &herdv1.RolloutNode{Node: n.Node, Decision: n.Decision, State: rolloutNodeState(r, n), CompileError: n.CompileError,
		Failures: n.Failures, PreviousEtag: n.PreviousEtag, Etag: n.Etag}
	if n.Stage >= 0 && n.Stage < len(r.Stages) {
		out.Stage = r.Stages[n.Stage].Name
	}
	for _, m := range n.Deny {
		out.Deny = append(out.Deny, &herdv1.PolicyMessage{Message: m.Message, Resource: m.Resource})
	}
	for _, m := range n.Warn {
		out.Warn = append(out.Warn, &herdv1.PolicyMessage{Message: m.Message, Resource: m.Resource})
	}
	if n.Rehearsal != nil {
		out.Rehearsal = wireSummary(*n.Rehearsal)
	}
	return out
}

// maxDiffFile is the largest stored file read for a unified diff.
const maxDiffFile = 1 << 20

// content gives Diff the bytes of stored static files, for the unified
// diffs RolloutDiff makes.
func (s *Server) content(digest string) ([]byte, bool) {
	f, err := s.openFile(digest)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDiffFile+1))
	if err != nil || len(b) > maxDiffFile {
		return nil, false
	}
	return b, true
}
