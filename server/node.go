package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/server/store"
)

// nodeService serves nodes. The node is always caller(ctx).name: the name
// in its verified certificate, never anything in the request.
type nodeService struct {
	herdv1.UnimplementedNodeServer
	s *Server
}

func (n *nodeService) Checkin(ctx context.Context, req *herdv1.CheckinRequest) (*herdv1.CheckinResponse, error) {
	s := n.s
	node := caller(ctx).name
	release, err := s.admit(ctx, node)
	if err != nil {
		return nil, err
	}
	defer release()
	now := time.Now()
	// A deactivated node that checks in is back in the fleet. It was
	// left out of the rollouts planned meanwhile: it is compiled at the
	// served version below, as a node that joins is.
	returning := false
	if s.inactive.has(node) {
		if err := s.activateNode(ctx, node, "check-in"); err != nil {
			s.log.Warn("activating a deactivated node that checked in", "node", node, "err", err)
		} else {
			returning = true
		}
	}
	resp := &herdv1.CheckinResponse{NextCheckinUnixMs: s.nextCheckin(node, now).UnixMilli()}
	// The environment the agent asks for, before any compile below
	// places the node.
	if req.Environment != "" && !validEnvName(req.Environment) {
		return nil, status.Errorf(codes.InvalidArgument, "environment %.64q: want a branch name of letters, digits, '-', '_', '.' and '/'", req.Environment)
	}
	asked := s.ask(node, req.Environment)

	cached, known := s.facts.get(node)
	switch {
	case len(req.FactsJson) > 0:
		f, digest, err := s.checkFacts(req)
		if err != nil {
			s.metrics.checkins.WithLabelValues("bad-facts").Inc()
			return nil, err
		}
		if !known || cached.digest != digest {
			// Kept for Retain: a node changing its facts every minute
			// would fill the disk.
			if err := s.spend(ctx, node, "facts", len(req.FactsJson)); err != nil {
				s.metrics.checkins.WithLabelValues("facts-quota").Inc()
				return nil, err
			}
			if err := s.st.SaveFacts(ctx, node, digest, req.FactsJson, now); err != nil {
				return nil, status.Errorf(codes.Unavailable, "storing facts: %v", err)
			}
			s.facts.put(node, cachedFacts{digest: digest, facts: f})
			s.audits.touch(node)
			// New facts may change the catalog: compile now, on this call,
			// so that the node gets it in this very answer.
			s.compileNode(ctx, node)
			returning = false
		}
	case !known || cached.digest != req.FactsDigest:
		s.metrics.checkins.WithLabelValues("need-facts").Inc()
		resp.Status = herdv1.CheckinResponse_NEED_FACTS
		return resp, nil
	}

	if asked && s.envs.branches {
		// The agent asks for another environment (or the server
		// restarted): compile now if that moves the node.
		if cf, ok := s.facts.get(node); ok {
			if name, _ := s.envName(node, cf.facts); name != s.nodeEnv(node) {
				returning = true
			}
		}
	}
	if k := req.SealPublicKey; len(k) != 0 && len(k) != 32 {
		return nil, status.Errorf(codes.InvalidArgument, "seal_public_key: want a 32-byte X25519 public key, got %d bytes", len(k))
	}
	if changed, err := s.recordNodeKey(ctx, node, req.SealPublicKey); err != nil {
		return nil, status.Errorf(codes.Unavailable, "recording the sealing key: %v", err)
	} else if changed {
		// What was sealed to the old key (or could not be sealed
		// without one) is sealed to the new one.
		returning = true
	}
	if returning {
		s.compileNode(ctx, node)
	}
	s.settleRelease(ctx, node)
	cur, compileErr := s.compiles.get(node)
	if cur == nil {
		cur = s.compileNode(ctx, node)
		_, compileErr = s.compiles.get(node)
	}
	resp.CompileError = compileErr
	resp.Environment = s.shownEnv(node)
	switch {
	case cur == nil:
		resp.Status = herdv1.CheckinResponse_NO_CATALOG
	case cur.etag == req.CatalogEtag:
		resp.Status = herdv1.CheckinResponse_UNCHANGED
		resp.Etag = cur.etag
	default:
		b, err := s.catalogBytes(ctx, cur)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		resp.Status = herdv1.CheckinResponse_NEW_CATALOG
		resp.Etag, resp.Catalog, resp.Signature = cur.etag, b, cur.signature
		cur.fetched.Store(true)
		if cur.stored.Load() {
			cur.dropBytes()
		}
	}
	if reh := s.rehearse.get(node); reh != nil {
		b, err := s.catalogBytes(ctx, reh)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%v", err)
		}
		resp.Rehearsal = &herdv1.Rehearsal{Catalog: b, Signature: reh.signature, Etag: reh.etag, Version: reh.version}
	}
	s.metrics.checkin(resp.Status)
	if err := s.st.Checkin(ctx, node, now, req.AgentVersion, time.UnixMilli(resp.NextCheckinUnixMs)); err != nil {
		s.log.Warn("recording a check-in", "node", node, "err", err)
	}
	return resp, nil
}

// checkFacts validates facts sent by a node: size, digest and depth. The
// digest is the sha256 of the bytes as sent.
func (s *Server) checkFacts(req *herdv1.CheckinRequest) (facts.Facts, string, error) {
	if len(req.FactsJson) > s.opts.MaxFactsBytes {
		return nil, "", status.Errorf(codes.InvalidArgument, "facts are %d bytes, more than the %d this server accepts", len(req.FactsJson), s.opts.MaxFactsBytes)
	}
	sum := sha256.Sum256(req.FactsJson)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if req.FactsDigest != "" && req.FactsDigest != digest {
		return nil, "", status.Errorf(codes.InvalidArgument, "facts digest %s does not match the facts sent (%s)", req.FactsDigest, digest)
	}
	if d := jsonDepth(req.FactsJson); d > s.opts.MaxFactsDepth {
		return nil, "", status.Errorf(codes.InvalidArgument, "facts nest %d deep, more than the %d this server accepts", d, s.opts.MaxFactsDepth)
	}
	f, err := facts.FromJSON(req.FactsJson)
	if err != nil {
		return nil, "", status.Errorf(codes.InvalidArgument, "facts: %v", err)
	}
	return f, digest, nil
}

// jsonDepth measures how deeply a JSON document nests, without decoding
// it, so that a hostile document is refused before it is parsed.
func jsonDepth(b []byte) int {
	depth, max, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			if depth > max {
				max = depth
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return max
}

// nextCheckin spreads the fleet over the check-in interval: each node has
// a fixed slot (a hash of its name), and its next check-in is its next
// slot at least half an interval away. After a fleet-wide restart the
// check-ins flatten out by themselves instead of arriving together.
func (s *Server) nextCheckin(node string, now time.Time) time.Time {
	iv := s.opts.CheckinInterval
	// FNV-1a, 64 bits, inline: hash/fnv would allocate on every check-in.
	h := uint64(14695981039346656037)
	for i := 0; i < len(node); i++ {
		h ^= uint64(node[i])
		h *= 1099511628211
	}
	offset := time.Duration(h % uint64(iv))
	base := now.Truncate(iv).Add(offset)
	for base.Before(now.Add(iv / 2)) {
		base = base.Add(iv)
	}
	return base
}

func (n *nodeService) GetFile(req *herdv1.GetFileRequest, stream grpc.ServerStreamingServer[herdv1.FileChunk]) error {
	s := n.s
	node := caller(stream.Context()).name
	s.settleRelease(stream.Context(), node)
	cur, _ := s.compiles.get(node)
	reh := s.rehearse.get(node)
	// Only a digest the node's own catalog ships (or the catalog it is
	// to rehearse): a node cannot read another node's files by guessing
	// digests.
	if (cur == nil || !cur.files[req.Digest]) && (reh == nil || !reh.files[req.Digest]) {
		return status.Errorf(codes.PermissionDenied, "file %s is not in the catalog of %s", req.Digest, node)
	}
	f, err := s.openFile(req.Digest)
	if err != nil {
		return status.Errorf(codes.NotFound, "file %s: %v", req.Digest, err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for {
		m, err := f.Read(buf)
		if m > 0 {
			if err := stream.Send(&herdv1.FileChunk{Data: buf[:m]}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "reading file %s: %v", req.Digest, err)
		}
	}
}

func (n *nodeService) SendReport(ctx context.Context, req *herdv1.SendReportRequest) (*herdv1.SendReportResponse, error) {
	s := n.s
	node := caller(ctx).name
	release, err := s.admit(ctx, node)
	if err != nil {
		return nil, err
	}
	defer release()
	r := req.GetReport()
	if err := s.checkReport(r); err != nil {
		return nil, err
	}
	if err := s.spend(ctx, node, "reports", proto.Size(r)); err != nil {
		return nil, err
	}
	rec, err := storeReport(node, r)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "report: %v", err)
	}
	dup, err := s.st.SaveReport(ctx, node, rec)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "storing the report: %v", err)
	}
	s.reported(node, rec, r, dup)
	return &herdv1.SendReportResponse{Duplicate: dup}, nil
}

// checkReport is what a report must be, alone or in a batch, before its
// quota is spent.
func (s *Server) checkReport(r *herdv1.Report) error {
	if r == nil || r.RunId == "" {
		return status.Error(codes.InvalidArgument, "a report needs a run id")
	}
	if r.Audit && !r.Noop {
		// An audit report is kept out of the node's last run and applied
		// catalog: one that says it changed the host would hide a real
		// run there.
		return status.Error(codes.InvalidArgument, "an audit report must be a noop run: audit runs change nothing")
	}
	if len(r.Events) > s.opts.MaxReportEvents {
		return status.Errorf(codes.InvalidArgument, "the report has %d events, more than the %d this server accepts", len(r.Events), s.opts.MaxReportEvents)
	}
	return nil
}

// reported tells the rest of the server of a durable report.
func (s *Server) reported(node string, rec store.Report, r *herdv1.Report, dup bool) {
	if dup {
		s.metrics.reportsOf[1].Inc()
		return
	}
	s.metrics.reportsOf[0].Inc()
	// The rollout's health reads stored reports only, once each.
	services := r.Services
	s.noteServices(node, rec, services)
	if s.leadsRollouts() {
		s.eachController(func(c *controller) error { c.report(node, rec, services); return nil })
	} else if o, ok := outcomeOf(rec, services); ok {
		s.forwardReport(node, o)
	}
	s.audits.reported(node, rec)
}

// MaxBatchReports bounds the reports of one SendReports call; its bytes
// are bounded by Options.MaxMessageBytes, as every message's are. An agent
// sends at most this many (agent.maxBatch is smaller).
const MaxBatchReports = 100

// SendReports stores a batch of reports. Each is checked, charged to the
// node's quota and stored as SendReport does it, alone: one refused is
// named with its reason and the rest go on. The batch is one store write
// (store.SaveReports: its rows, and the node's last run once), and the
// answer comes once it is durable: a batch costs one wait for a commit
// and a third of the statements of its reports sent one by one.
func (n *nodeService) SendReports(ctx context.Context, req *herdv1.SendReportsRequest) (*herdv1.SendReportsResponse, error) {
	s := n.s
	node := caller(ctx).name
	if len(req.Reports) > MaxBatchReports {
		return nil, status.Errorf(codes.InvalidArgument, "the batch has %d reports, more than the %d this server takes in one call", len(req.Reports), MaxBatchReports)
	}
	release, err := s.admit(ctx, node)
	if err != nil {
		return nil, err
	}
	defer release()
	resp := &herdv1.SendReportsResponse{}
	refuse := func(runID string, err error, wait time.Duration) {
		rr := &herdv1.RefusedReport{RunId: runID, Code: int32(status.Code(err)), Reason: status.Convert(err).Message()}
		if wait > 0 {
			rr.RetryAfterMs = wait.Milliseconds() + 500 + rand.Int64N(2500)
		}
		resp.Refused = append(resp.Refused, rr)
	}
	type pending struct {
		r   *herdv1.Report
		rec store.Report
		dup bool
		err error
	}
	todo := make([]*pending, 0, len(req.Reports))
	seen := make(map[string]bool, len(req.Reports))
	for i, r := range req.Reports {
		if err := s.checkReport(r); err != nil {
			refuse(r.GetRunId(), status.Errorf(codes.InvalidArgument, "report %d of the batch: %s", i, status.Convert(err).Message()), 0)
			continue
		}
		if seen[r.RunId] {
			refuse(r.RunId, status.Errorf(codes.InvalidArgument, "report %d of the batch: run %s is in the batch twice", i, r.RunId), 0)
			continue
		}
		seen[r.RunId] = true
		if wait, err := s.take(node, "reports", proto.Size(r)); err != nil {
			if wait > 0 {
				s.metrics.quotaRefused.WithLabelValues("reports").Inc()
			}
			refuse(r.RunId, err, wait)
			continue
		}
		rec, err := storeReport(node, r)
		if err != nil {
			refuse(r.RunId, status.Errorf(codes.InvalidArgument, "report: %v", err), 0)
			continue
		}
		todo = append(todo, &pending{r: r, rec: rec})
	}
	// One write for the batch: its rows, and the node's last run once.
	recs := make([]store.Report, len(todo))
	for i, p := range todo {
		recs[i] = p.rec
	}
	dups, errs := s.st.SaveReports(ctx, node, recs)
	for i, p := range todo {
		p.dup, p.err = dups[i], errs[i]
	}
	for _, p := range todo {
		if p.err != nil {
			refuse(p.r.RunId, status.Errorf(codes.Unavailable, "storing the report: %v", p.err), 0)
			continue
		}
		resp.AckedRunIds = append(resp.AckedRunIds, p.r.RunId)
		if p.dup {
			resp.DuplicateRunIds = append(resp.DuplicateRunIds, p.r.RunId)
		}
		s.reported(node, p.rec, p.r, p.dup)
	}
	return resp, nil
}

// storeReport converts a wire report into the store's shape. Changes are
// kept as the JSON the dashboard and CLI show.
func storeReport(node string, r *herdv1.Report) (store.Report, error) {
	sum := r.GetSummary()
	rec := store.Report{
		Node: node, RunID: r.RunId, Version: r.Version, CatalogDigest: r.CatalogDigest, Noop: r.Noop, Audit: r.Audit, Partial: r.Partial,
		Started: time.Unix(0, r.StartedUnixNs), Duration: time.Duration(r.DurationNs), Received: time.Now(),
		Summary: store.Summary{
			Resources: int(sum.GetResources()), InSync: int(sum.GetInSync()), Changed: int(sum.GetChanged()),
			Failed: int(sum.GetFailed()), Skipped: int(sum.GetSkipped()), Unknown: int(sum.GetUnknown()), Refreshed: int(sum.GetRefreshed()),
			Drift: int(sum.GetDrift()),
		},
	}
	for _, e := range r.Events {
		ev := store.Event{ID: e.Id, Type: e.Type, Status: e.Status, Noop: e.Noop, Refresh: e.Refresh,
			Error: e.Error, Cause: e.Cause, Output: e.Output, Duration: time.Duration(e.DurationNs), Source: e.Source}
		if len(e.Changes) > 0 {
			clearSensitive(e.Changes)
			b, err := json.Marshal(e.Changes)
			if err != nil {
				return rec, fmt.Errorf("event %s: %w", e.Id, err)
			}
			ev.ChangesJSON = b
		}
		rec.Events = append(rec.Events, ev)
	}
	return rec, nil
}

func (n *nodeService) Watch(req *herdv1.WatchRequest, stream grpc.ServerStreamingServer[herdv1.WatchEvent]) error {
	s := n.s
	id := caller(stream.Context())
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	w := &watcher{serial: id.serial, box: make(chan watchMsg, 1), cancel: cancel}
	s.watch.add(id.name, w, s.opts.MaxWatchesPerNode)
	s.metrics.watchers.Inc()
	defer func() {
		s.watch.remove(id.name, w)
		s.metrics.watchers.Dec()
	}()
	// A node that (re)connects hears at once of a catalog it lacks, or
	// of a rehearsal waiting for it. Registered first, so that a release
	// heard from now on is taken for it at once rather than later.
	s.settleRelease(ctx, id.name)
	if cur, _ := s.compiles.get(id.name); cur != nil && (cur.etag != req.Etag || s.rehearse.get(id.name) != nil) {
		if err := stream.Send(&herdv1.WatchEvent{Etag: cur.etag, Version: cur.version, Run: cur.etag == req.Etag}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			if stream.Context().Err() != nil {
				return nil
			}
			switch cause := context.Cause(ctx); cause {
			case errWatchRevoked:
				return status.Error(codes.Unauthenticated, cause.Error())
			case errWatchReplaced:
				return status.Error(codes.ResourceExhausted, cause.Error())
			default:
				return status.Error(codes.Unavailable, "the server is stopping")
			}
		case m := <-w.box:
			if m.etag == "" {
				cur, _ := s.compiles.get(id.name)
				if cur == nil {
					continue
				}
				m.etag, m.version = cur.etag, cur.version
			}
			if err := stream.Send(&herdv1.WatchEvent{Etag: m.etag, Version: m.version, Run: m.run}); err != nil {
				return err
			}
		}
	}
}
