package server

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/policies"
	"github.com/herdcm/herd/server/store"
)

// planned is a new site version's rollout as compiled and gated, before
// the controller takes it over.
type planned struct {
	rec   store.Rollout
	nodes map[string]*liveNode
	fleet *policies.Fleet
	// gateFailed is set when gating itself failed (a broken policy, a gate
	// error): nothing of the version ships, new nodes included.
	gateFailed bool
}

// planTimes says where the newest plan's time went: compiling (with the
// diffs), gating, and in all (storing the candidates included).
type planTimes struct {
	nodes                int
	compile, gate, total time.Duration
}

// candidate is one node's compile at a new version.
type candidate struct {
	node      string
	facts     facts.Facts
	nc        *nodeCatalog // nil: unchanged or a compile error
	cat, prev *catalogs.Catalog
	prevEtag  string
	prevVer   string // the approved catalog's version
	// judged: the approved catalog passed policies of the gate's digest,
	// so the gate judges only the change (and cat may hold only that).
	judged     bool
	change     catalogs.Change
	compileErr string
}

// compileWorkers is how many compiles run at once.
func (s *Server) compileWorkers() int {
	if s.opts.CompileWorkers > 0 {
		return s.opts.CompileWorkers
	}
	// More than the cores: each worker also waits for reads of the
	// approved catalogs it diffs against.
	return 8 * runtime.GOMAXPROCS(0)
}

// planRollout compiles every known node at st's version, diffs each
// candidate against the node's approved catalog, summarizes the fleet,
// gates every changed node, assigns the stages, and stores the
// candidates. previous is the version the fleet is on.
func (s *Server) planRollout(ctx context.Context, st *siteState, previous string) (*planned, error) {
	start := time.Now()
	// Deactivated nodes take no part: a check-in brings them back, and
	// their catalog follows then.
	names := slices.DeleteFunc(s.facts.nodes(), s.inactive.has)
	// Only st's environment's nodes: each environment rolls out its own
	// versions to its own nodes.
	names = slices.DeleteFunc(names, func(node string) bool {
		cf, ok := s.facts.get(node)
		if !ok {
			return true
		}
		e, _ := s.placeNode(node, cf.facts)
		return e != st.env
	})
	slices.Sort(names)
	gate := st.gate
	gating := gate != nil && !gate.Empty()
	// The gate reads each changed node's catalog and previous one, after
	// the whole fleet is diffed. Decoded catalogs are kept from the
	// compile to the gate up to a budget; past it they are decoded again
	// for the gate, so that a large fleet's plan does not hold every
	// node's catalogs decoded at once.
	var kept atomic.Int64
	keep := func(size int) bool {
		return gating && kept.Add(int64(size)) <= maxKeptDecoded
	}
	cands := make([]candidate, len(names))
	// The candidates go to the store before the rollout names them (a
	// restart must find every etag it releases), while the rest compile.
	sv := newSaver(ctx, s.st)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.compileWorkers())
	var compiledNodes atomic.Int64
	for i, name := range names {
		g.Go(func() error {
			cands[i] = s.compileCandidate(gctx, st, name, keep)
			if nc := cands[i].nc; nc != nil {
				sv.add(store.CatalogRecord{Etag: nc.etag, Version: nc.version, Catalog: nc.bytes, Signature: nc.signature})
			}
			if s.opts.Progress != nil {
				s.opts.Progress(int(compiledNodes.Add(1)), len(names))
			}
			return nil
		})
	}
	if err := errors.Join(g.Wait(), sv.wait()); err != nil {
		return nil, fmt.Errorf("compiling %s: %w", st.version, err)
	}
	compiled := time.Since(start)

	changes := make(map[string]catalogs.Change, len(cands))
	for _, c := range cands {
		if c.nc != nil {
			changes[c.node] = c.change
		}
	}
	fleet := summarize(st.version, previous, len(names), changes)
	p := &planned{fleet: fleet, nodes: make(map[string]*liveNode, len(cands))}
	p.rec = store.Rollout{Environment: st.env.name, Version: st.version, PreviousVersion: previous, State: rolloutRunning, Created: time.Now(), Updated: time.Now()}
	p.rec.Fleet, _ = json.Marshal(fleet)

	// Gate the changed nodes in parallel: the gate is prepared once and
	// safe for concurrent use.
	decisions := make([]gated, len(cands))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range cands {
		if cands[i].nc == nil {
			continue
		}
		g.Go(func() error {
			c := &cands[i]
			if gating && c.cat == nil {
				c.cat, c.prev = s.redecode(gctx, c, gate.Reads("previous"))
			}
			decisions[i] = s.gateCandidate(gctx, st, c, fleet)
			c.cat, c.prev = nil, nil // done with them: let them go
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	gated := time.Since(start) - compiled
	s.gatedVersion(st)

	settings := st.site.Settings
	p.rec.Stages = stagesOf(settings.Rollout)
	rest := -1
	var denied, gateErrors []string
	for i, c := range cands {
		n := &liveNode{RolloutNode: store.RolloutNode{Node: c.node, Stage: -1, Rehearse: -1, PreviousEtag: c.prevEtag}, cand: c.nc}
		switch {
		case c.compileErr != "":
			n.Decision, n.State, n.CompileError = decisionCompileError, nodeCompileError, c.compileErr
			n.Etag = c.prevEtag
		case c.nc == nil:
			n.Decision, n.State, n.Etag = decisionUnchanged, nodeUnchanged, c.prevEtag
		default:
			d := decisions[i]
			n.Etag, n.Change, n.Deny, n.Warn = c.nc.etag, d.change, d.deny, d.warn
			n.Decision, n.State = decisionAllowed, nodePending
			if d.err != "" {
				gateErrors = append(gateErrors, c.node+": "+d.err)
				n.Deny = append(n.Deny, store.PolicyMessage{Message: "gate error: " + d.err})
			}
			if len(n.Deny) > 0 {
				n.Decision, n.State = decisionDenied, nodeDenied
				denied = append(denied, c.node)
			}
		}
		// Each node takes part in the first non-noop stage that selects
		// it, and rehearses in the first noop stage that does.
		for j := range settings.Rollout.Stages {
			cs := &settings.Rollout.Stages[j]
			if (cs.Noop && n.Rehearse >= 0) || (!cs.Noop && n.Stage >= 0) {
				continue
			}
			ok, err := cs.Selects(c.node, c.facts)
			if err != nil {
				s.log.Warn("a rollout stage's condition fails on a node; the stage does not take it", "stage", cs.Name, "node", c.node, "err", err)
				continue
			}
			if ok && cs.Noop {
				n.Rehearse = j
			} else if ok {
				n.Stage = j
			}
		}
		if n.Stage < 0 {
			if rest < 0 {
				rest = len(p.rec.Stages)
				name := "rest"
				if len(settings.Rollout.Stages) == 0 {
					name = "all"
				}
				p.rec.Stages = append(p.rec.Stages, store.RolloutStage{Name: name, State: stagePending})
			}
			n.Stage = rest
		}
		p.nodes[c.node] = n
	}
	switch {
	case st.gateErr != "":
		p.gateFailed = true
		p.rec.State, p.rec.Reason = rolloutBlocked, "the policies do not load: "+st.gateErr
	case len(gateErrors) > 0:
		p.gateFailed = true
		p.rec.State, p.rec.Reason = rolloutBlocked, "the gate failed on "+listSome(gateErrors, 3)
	case len(denied) > 0 && settings.Policy.OnDeny != "node":
		p.rec.State = rolloutBlocked
		p.rec.Reason = fmt.Sprintf("%d of %d nodes denied (on_deny = \"block\"): %s", len(denied), len(cands), deniedReason(p.nodes, denied))
	}
	for _, c := range cands {
		if c.nc == nil {
			continue
		}
		c.nc.stored.Store(true)
		if !s.watch.has(c.node) {
			s.recent.put(c.nc.etag, c.nc.bytes)
			c.nc.dropBytes()
		}
	}
	s.lastPlan.Store(&planTimes{nodes: len(names), compile: compiled, gate: gated, total: time.Since(start)})
	s.log.Info("rollout planned", "version", st.version, "nodes", len(names), "changing", fleet.Changing, "denied", len(denied),
		"compile", compiled.Round(time.Millisecond), "gate", gated.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
	return p, nil
}

// saver stores catalogs in batches as they come, a few batches at once,
// so that the store's writer works beside the compiles.
type saver struct {
	ctx   context.Context
	st    *store.Store
	g     errgroup.Group
	mu    sync.Mutex
	batch []store.CatalogRecord
}

// saveBatch is how many catalogs one write stores.
const saveBatch = 256

func newSaver(ctx context.Context, st *store.Store) *saver {
	v := &saver{ctx: ctx, st: st}
	v.g.SetLimit(4) // past it, add waits: the compiles wait for the store
	return v
}

func (v *saver) add(c store.CatalogRecord) {
	v.mu.Lock()
	v.batch = append(v.batch, c)
	if len(v.batch) < saveBatch {
		v.mu.Unlock()
		return
	}
	b := v.batch
	v.batch = nil
	v.mu.Unlock()
	v.g.Go(func() error { return v.st.PutCatalogs(v.ctx, b) })
}

// wait stores what is left and waits for every batch.
func (v *saver) wait() error {
	v.mu.Lock()
	b := v.batch
	v.batch = nil
	v.mu.Unlock()
	if len(b) > 0 {
		v.g.Go(func() error { return v.st.PutCatalogs(v.ctx, b) })
	}
	return v.g.Wait()
}

// stagesOf snapshots herd.toml's stages for a rollout.
func stagesOf(rs catalogs.RolloutSettings) []store.RolloutStage {
	out := make([]store.RolloutStage, 0, len(rs.Stages)+1)
	for _, cs := range rs.Stages {
		out = append(out, store.RolloutStage{Name: cs.Name, Nodes: cs.Nodes, When: cs.When, Percent: cs.Percent, Bake: cs.Bake, Timeout: cs.Timeout,
			MaxFailed: cs.MaxFailed, MaxFailedPercent: cs.MaxFailedPercent, Noop: cs.Noop, Manual: cs.Manual, State: stagePending})
	}
	return out
}

func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:n], "; ") + fmt.Sprintf("; and %d more", len(items)-n)
}

func deniedReason(nodes map[string]*liveNode, denied []string) string {
	var items []string
	for _, name := range denied {
		msgs := nodes[name].Deny
		if len(msgs) > 0 {
			items = append(items, name+": "+msgs[0].Message)
		}
	}
	return listSome(items, 3)
}

// maxKeptDecoded bounds the encoded bytes of the catalogs a plan keeps
// decoded from the compile to the gate. Decoding again costs more than it
// saves: with 10,000 nodes of 47 KB catalogs kept whole (0.9 GiB), the
// gated plan took 37.8 s at 5.5 GB peak RSS here, against 43.5 s at 6.4
// GB with a 128 MiB budget (the garbage of decoding again outweighs what
// it frees). The bound only keeps a far larger fleet from holding all.
const maxKeptDecoded = 1 << 30

// redecode decodes c's candidate and previous catalogs again for the gate.
func (s *Server) redecode(ctx context.Context, c *candidate, previous bool) (cat, prev *catalogs.Catalog) {
	b := c.nc.bytes
	if b == nil {
		var err error
		if b, err = s.catalogBytes(ctx, c.nc); err != nil {
			return nil, nil
		}
	}
	cat, err := catalogs.Decode(b)
	if err != nil {
		return nil, nil
	}
	if previous && c.prevEtag != "" {
		cur, _ := s.compiles.get(c.node)
		if cur != nil && cur.etag == c.prevEtag {
			prev = s.decodeApproved(ctx, c.node, cur)
		}
	}
	return cat, prev
}

// compileCandidate compiles node at st's version. keep says whether the
// catalog and its previous one may stay decoded, for the gate (given
// their encoded size).
func (s *Server) compileCandidate(ctx context.Context, st *siteState, node string, keep func(int) bool) candidate {
	unlock := s.compiles.lock(node)
	defer unlock()
	c := candidate{node: node}
	cf, ok := s.facts.get(node)
	if !ok {
		return c
	}
	c.facts = cf.facts
	cur, _ := s.compiles.get(node)
	if cur != nil {
		c.prevEtag, c.prevVer = cur.etag, cur.version
	}
	cat, nc, err := s.compileAt(ctx, st, node, cf.facts)
	if err != nil {
		c.compileErr = err.Error()
		return c
	}
	if cur != nil && cur.etag == nc.etag {
		return c
	}
	c.nc = nc
	gating := st.gate != nil && !st.gate.Empty()
	if gating {
		c.judged = s.judgedBefore(c.prevVer, st.gate.Digest())
	}
	if gating && cur != nil && st.gate.Reads("previous") && keep(2*len(nc.bytes)) {
		// The gate reads the previous catalog whole: decode it once,
		// for the diff too.
		c.cat, c.prev = cat, s.decodeApproved(ctx, node, cur)
		c.change = catalogs.DiffBrief(c.prev, cat)
		return c
	}
	c.change = s.diffApproved(ctx, node, cur, nc, cat)
	if !gating {
		return c
	}
	if c.judged && !st.gate.Reads("catalog") {
		// The gate reads input.judge, which holds only what the change
		// adds or changes, and not the whole catalog: keep just those
		// resources, a few of a catalog's hundreds. Ten thousand whole
		// catalogs held to the gate made the garbage collector's work
		// most of the plan's.
		c.cat = policies.JudgeOnly(cat, c.change)
		if keep(len(nc.bytes) * len(c.cat.Resources) / max(len(cat.Resources), 1)) {
			return c
		}
		c.cat = nil
	} else if keep(len(nc.bytes)) {
		c.cat = cat
	}
	return c
}

// diffApproved is the change from node's approved catalog cur (nil: none)
// to its candidate nc, decoded as cat.
func (s *Server) diffApproved(ctx context.Context, node string, cur, nc *nodeCatalog, cat *catalogs.Catalog) catalogs.Change {
	if cur != nil {
		if b, err := s.catalogBytes(ctx, cur); err == nil {
			if ch, ok := diffEncoded(b, &cur.index, nc.bytes, &nc.index, cat); ok {
				return ch
			}
		}
	}
	return catalogs.DiffBrief(s.decodeApproved(ctx, node, cur), cat)
}

// compileAt compiles, encodes and signs node's catalog at st's version,
// recording a compile error (or clearing the last one).
func (s *Server) compileAt(ctx context.Context, st *siteState, node string, f facts.Facts) (*catalogs.Catalog, *nodeCatalog, error) {
	start := time.Now()
	s.metrics.compiles.Inc()
	cat, err := st.site.CompileWith(node, f, s.compileOptions(node))
	var (
		enc []byte
		idx catalogs.Index
	)
	if err == nil {
		enc, idx, err = cat.EncodeIndexed()
	}
	if err != nil {
		s.metrics.compileErrors.Inc()
		s.setCompileError(ctx, node, st.version, err.Error())
		return nil, nil, err
	}
	if _, hadErr := s.compiles.get(node); hadErr != "" {
		s.compiles.mu.Lock()
		delete(s.compiles.errors, node)
		s.compiles.mu.Unlock()
		s.st.SetCompileError(ctx, node, st.version, "")
		s.announceState(rolloutState{Kind: "error", Node: node})
	}
	nc := &nodeCatalog{etag: catalogs.Digest(enc), version: st.version, env: cat.Environment, bytes: enc, signature: ed25519.Sign(s.signer, enc), files: make(map[string]bool, len(cat.Files)), index: idx}
	for _, f := range cat.Files {
		nc.files[f.Digest] = true
	}
	s.metrics.compileTime.Observe(time.Since(start).Seconds())
	return cat, nc, nil
}

// setCompileError records that node does not compile at version ("" when
// it could not be placed in a served environment): its last good catalog
// stays approved.
func (s *Server) setCompileError(ctx context.Context, node, version, msg string) {
	s.compiles.mu.Lock()
	s.compiles.errors[node] = msg
	s.compiles.mu.Unlock()
	if serr := s.st.SetCompileError(ctx, node, version, msg); serr != nil {
		s.log.Error("recording a compile error", "node", node, "err", serr)
	}
	s.announceState(rolloutState{Kind: "error", Node: node, Msg: msg})
	s.log.Warn("compile failed; the node keeps its last good catalog", "node", node, "version", version, "err", msg)
}

// decodeApproved decodes node's approved catalog, nil when it has none
// (or it cannot be read: then everything reads as added).
func (s *Server) decodeApproved(ctx context.Context, node string, cur *nodeCatalog) *catalogs.Catalog {
	if cur == nil {
		return nil
	}
	b, err := s.catalogBytes(ctx, cur)
	if err == nil {
		var prev *catalogs.Catalog
		if prev, err = catalogs.Decode(b); err == nil {
			return prev
		}
	}
	s.log.Warn("the approved catalog does not read; the diff shows every resource as added", "node", node, "err", err)
	return nil
}

// gated is a gate's verdict on one candidate.
type gated struct {
	deny, warn []store.PolicyMessage
	err        string // the gate failed: a denial
	change     []byte // the change's JSON
}

// gateCandidate runs the gate over c.
func (s *Server) gateCandidate(ctx context.Context, st *siteState, c *candidate, fleet *policies.Fleet) gated {
	var out gated
	if !c.change.Empty() {
		out.change, _ = json.Marshal(c.change)
	}
	switch {
	case st.gateErr != "":
		out.err = "the policies do not load: " + st.gateErr
		return out
	case st.gate == nil || st.gate.Empty():
		return out
	case c.cat == nil:
		// Never allow what the gate did not see.
		out.err = "the candidate catalog could not be read for the gate"
		return out
	}
	d, err := st.gate.Evaluate(ctx, policies.Input{Node: c.node, Facts: c.facts, Catalog: c.cat, Previous: c.prev, Change: c.change, Fleet: fleet,
		Judged: c.judged})
	if err != nil {
		out.err = err.Error()
		return out
	}
	for _, m := range d.Deny {
		out.deny = append(out.deny, store.PolicyMessage{Message: m.Message, Resource: m.Resource})
	}
	for _, m := range d.Warn {
		out.warn = append(out.warn, store.PolicyMessage{Message: m.Message, Resource: m.Resource})
	}
	return out
}

// begin makes p the newest rollout: it supersedes the one running, gives
// new nodes (and those the superseded rollout had released) their
// candidate at once, and starts the stages.
func (c *controller) begin(ctx context.Context, p *planned) error {
	if !c.s.leadsRollouts() {
		return errNotLeading
	}
	// What earlier ops changed belongs to the rollout before: write it
	// before this one takes its place.
	if err := c.flush(); err != nil {
		return err
	}
	old := c.cur
	supersede := old != nil && (old.active() || old.rec.State == rolloutBlocked)
	r := &liveRollout{rec: p.rec, nodes: p.nodes, fleet: p.fleet}
	// The controller is the only writer of rollouts, so it names the id:
	// the rollout, its nodes and its first releases are then one write.
	r.rec.ID = c.s.rolloutIDs.Add(1)
	blocked := p.rec.State == rolloutBlocked
	var approvals []store.Approval
	effects := len(c.pending.effects)
	for _, n := range p.nodes {
		if n.Decision != decisionAllowed || n.State != nodePending || p.gateFailed {
			continue
		}
		wasReleased := false
		if supersede {
			if o := old.nodes[n.Node]; o != nil {
				wasReleased = o.State == nodeReleased || o.State == nodeHealthy || o.State == nodeFailed
			}
		}
		// Nothing to roll back to: a new node gets its catalog now. A
		// node the superseded rollout released goes to the newest
		// version now, unless the version is blocked.
		if n.PreviousEtag == "" || (wasReleased && !blocked) {
			n.State = nodeReleased
			approvals = append(approvals, store.Approval{Node: n.Node, Etag: n.Etag})
			name, nc := n.Node, n.cand
			c.effect(func() { c.s.serve(name, nc) })
		}
	}
	r.index()
	c.cur = r
	c.log.Info("rollout begins", "rollout", r.rec.ID, "version", r.rec.Version, "state", r.rec.State, "reason", r.rec.Reason)
	c.advance(r)
	rec := r.rec
	rec.Stages = slices.Clone(r.rec.Stages)
	w := store.RolloutWrite{Rollout: &rec, Create: true, Approvals: append(approvals, c.pending.approvals...)}
	if supersede {
		w.Superseded = old.rec.ID
	}
	for _, n := range p.nodes {
		w.Nodes = append(w.Nodes, n.RolloutNode)
	}
	if _, err := c.s.st.WriteRollout(ctx, w); err != nil {
		// Nothing of it happened.
		c.cur = old
		c.pending.effects = c.pending.effects[:effects]
		c.pending.rollout, c.pending.approvals = false, nil
		clear(c.pending.nodes)
		r.stopTimers()
		return fmt.Errorf("recording the rollout of %s: %w", p.rec.Version, err)
	}
	c.pending.rollout, c.pending.approvals = false, nil
	clear(c.pending.nodes)
	c.newest.Store(r.rec.ID)
	c.s.announceState(rolloutState{Kind: "newest", Env: c.env.name, ID: r.rec.ID})
	if supersede {
		old.stopTimers()
		old.rec.State, old.rec.SupersededBy = rolloutSuperseded, r.rec.ID
		// Its pending rehearsals go; this rollout's own (set by advance)
		// come after, among the effects.
		oldNodes := old.nodes
		c.pending.effects = slices.Insert(c.pending.effects, effects, func() { c.s.rehearse.clearOf(oldNodes) })
		c.log.Info("rollout superseded", "rollout", old.rec.ID, "by", r.rec.ID)
	}
	for _, n := range p.nodes {
		n.Change = nil
	}
	return nil
}

// recompiled is a node's new candidate after its facts changed (or its
// first compile): inside the newest rollout it becomes the node's
// candidate and ships when the node's stage does (at once when the stage
// released it already); outside one it is approved at once when allowed.
// It returns the node's approved catalog.
func (c *controller) recompiled(node string, cur, nc *nodeCatalog, d gated) *nodeCatalog {
	denied := d.err != "" || len(d.deny) > 0
	r := c.cur
	if r != nil && r.active() && r.rec.Version == nc.version {
		if n := r.nodes[node]; n != nil {
			n.Etag, n.cand, n.Change, n.Deny, n.Warn, n.CompileError = nc.etag, nc, d.change, d.deny, d.warn, ""
			if d.err != "" {
				n.Deny = append(n.Deny, store.PolicyMessage{Message: "gate error: " + d.err})
			}
			if cur != nil {
				n.PreviousEtag = cur.etag
			}
			released := n.State == nodeReleased || n.State == nodeHealthy || n.State == nodeFailed
			switch {
			case denied:
				n.Decision = decisionDenied
				r.setNode(n, nodeDenied, n.Final)
			case released || cur == nil:
				n.Decision = decisionAllowed
				c.release(r, n)
			default:
				n.Decision, n.Rehearsal = decisionAllowed, nil
				r.setNode(n, nodePending, n.Final)
			}
			c.markNode(n)
			return cur
		}
	}
	if denied {
		msg := d.err
		if msg == "" {
			msg = d.deny[0].Message
		}
		c.s.compiles.mu.Lock()
		c.s.compiles.errors[node] = "denied by policy: " + msg
		c.s.compiles.mu.Unlock()
		c.log.Warn("a node's new catalog is denied; it keeps its approved one", "node", node, "reason", msg)
		return cur
	}
	// The newest version was aborted or is blocked: it reaches no node
	// that has a catalog to keep.
	if cur != nil && r != nil && r.rec.Version == nc.version && (r.rec.State == rolloutAborted || r.rec.State == rolloutBlocked) {
		return cur
	}
	c.approve(node, nc.etag)
	c.effect(func() { c.s.serve(node, nc) })
	return nc
}
