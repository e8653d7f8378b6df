package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdcm/herd/policies"
	"github.com/herdcm/herd/server/store"
)

// Rollout states (store.Rollout.State).
const (
	rolloutRunning    = "running"
	rolloutPaused     = "paused"
	rolloutAwaiting   = "awaiting-approval"
	rolloutHalted     = "halted"
	rolloutBlocked    = "blocked"
	rolloutDone       = "done"
	rolloutAborted    = "aborted"
	rolloutSuperseded = "superseded"
)

// Stage states (store.RolloutStage.State).
const (
	stagePending    = "pending"
	stageAwaiting   = "awaiting-approval"
	stageRehearsing = "rehearsing"
	stageReleasing  = "releasing"
	stageBaking     = "baking"
	stageDone       = "done"
	stageHalted     = "halted"
)

// Decisions and node states (store.RolloutNode).
const (
	decisionAllowed      = "allowed"
	decisionDenied       = "denied"
	decisionCompileError = "compile-error"
	decisionUnchanged    = "unchanged"

	nodePending      = "pending"
	nodeReleased     = "released"
	nodeHealthy      = "healthy"
	nodeFailed       = "failed"
	nodeDenied       = "denied"
	nodeCompileError = "compile-error"
	nodeUnchanged    = "unchanged"
	nodeReverted     = "reverted"
	// nodeInactive is a node deactivated during the rollout: out of its
	// stage's counts, so that the stage does not wait for it.
	nodeInactive = "inactive"
)

// Errors of rollout actions, mapped to gRPC codes at the edge.
var (
	errNoRollout    = errors.New("no such rollout")
	errBadAction    = errors.New("unknown rollout action")
	errRolloutState = errors.New("not possible in this state")
)

// controller drives rollouts. One goroutine (run) owns every rollout's
// state: reports, timers, operators' actions and new versions reach it as
// ops on one channel, and it handles whatever is queued together, then
// writes what they changed in one store write, and only then serves and
// announces what they released. Nothing polls: a stage moves when a
// report, a bake timer or an action moves it.
type controller struct {
	s *Server
	// env is the environment whose rollouts it drives: each has its own.
	env *environment
	log *slog.Logger
	ops chan ctlOp

	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}
	// newest is the newest rollout's id, for readers outside run.
	newest atomic.Int64

	// Owned by run.
	cur     *liveRollout
	pending pendingWrite
	retry   *time.Timer
}

// ctlOp is one thing for the controller to do; done, when not nil, gets
// fn's error (or the write's) once what fn changed is durable.
type ctlOp struct {
	fn   func(c *controller) error
	done chan error
}

// pendingWrite is what ops changed since the last write, and what to do
// once it is durable.
type pendingWrite struct {
	rollout   bool
	nodes     map[string]bool
	approvals []store.Approval
	effects   []func()
}

// liveRollout is the newest rollout in memory. Its nodes hold no change
// (the store has it) and their candidates only until released.
type liveRollout struct {
	rec   store.Rollout
	nodes map[string]*liveNode
	// members lists each stage's nodes; rehearsers each rehearsal
	// stage's.
	members    [][]string
	rehearsers [][]string
	// tally counts each stage's members by what advance asks of them.
	tally []stageTally
	fleet *policies.Fleet
	// bake ends the current stage's bake; deadline its timeout.
	bake, deadline *time.Timer
}

// stopTimers stops r's timers: it no longer moves.
func (r *liveRollout) stopTimers() {
	for _, t := range []*time.Timer{r.bake, r.deadline} {
		if t != nil {
			t.Stop()
		}
	}
}

// stageTally counts a stage's members in the states that hold it back,
// so that a report moves a stage in constant time: scanning a stage's
// members on every report made 10,000 reports over a 10,000-node stage
// 10⁸ map lookups on the controller's one goroutine, and the reports
// queued behind it.
type stageTally struct {
	released int // released, its run of the new catalog not reported yet
	failed   int
	unfinal  int // healthy, but not reported since the bake ended
}

// count adds d to the tally n's state belongs to.
func (r *liveRollout) count(n *liveNode, d int) {
	if n.Stage < 0 || n.Stage >= len(r.tally) {
		return
	}
	t := &r.tally[n.Stage]
	switch n.State {
	case nodeReleased:
		t.released += d
	case nodeFailed:
		t.failed += d
	case nodeHealthy:
		if !n.Final {
			t.unfinal += d
		}
	}
}

// setNode sets n's state and whether its healthy report is final. Every
// change of a member's state goes through it, keeping the tallies true.
func (r *liveRollout) setNode(n *liveNode, state string, final bool) {
	r.count(n, -1)
	n.State, n.Final = state, final
	r.count(n, +1)
}

type liveNode struct {
	store.RolloutNode
	cand *nodeCatalog // nil when not in memory (after a restart): read from the store
}

// active reports whether the rollout still moves (or waits to move).
func (r *liveRollout) active() bool {
	switch r.rec.State {
	case rolloutRunning, rolloutPaused, rolloutAwaiting, rolloutHalted:
		return true
	}
	return false
}

func newController(s *Server, e *environment) *controller {
	ctx, stop := context.WithCancel(context.Background())
	c := &controller{s: s, env: e, log: s.log.With("component", "rollout", "environment", e.name), ops: make(chan ctlOp, 4096), ctx: ctx, stop: stop, done: make(chan struct{})}
	c.pending.nodes = map[string]bool{}
	return c
}

// start runs the controller until close.
func (c *controller) start() { go c.run() }

// close stops the controller once the op it is handling is done.
func (c *controller) close() {
	c.stop()
	<-c.done
}

func (c *controller) run() {
	defer close(c.done)
	defer func() {
		if c.cur != nil {
			c.cur.stopTimers()
		}
		if c.retry != nil {
			c.retry.Stop()
		}
	}()
	batch := make([]ctlOp, 0, 256)
	for {
		batch = batch[:0]
		select {
		case <-c.ctx.Done():
			return
		case op := <-c.ops:
			batch = append(batch, op)
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case op := <-c.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		errs := make([]error, len(batch))
		for i, op := range batch {
			errs[i] = c.call(op.fn)
		}
		werr := c.flush()
		for i, op := range batch {
			if op.done == nil {
				continue
			}
			if errs[i] == nil {
				errs[i] = werr
			}
			op.done <- errs[i]
		}
	}
}

// call runs fn, turning a panic into its error: a bug in one step must
// not stop every rollout.
func (c *controller) call(fn func(c *controller) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("rollout controller panicked: %v", p)
			c.log.Error("rollout step panicked", "panic", p)
		}
	}()
	return fn(c)
}

// do runs fn on the controller and waits until what it changed is
// durable.
func (c *controller) do(ctx context.Context, fn func(c *controller) error) error {
	op := ctlOp{fn: fn, done: make(chan error, 1)}
	select {
	case c.ops <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return errors.New("the server is stopping")
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return errors.New("the server is stopping")
	}
}

// post queues fn without waiting for it.
func (c *controller) post(fn func(c *controller) error) {
	select {
	case c.ops <- ctlOp{fn: fn}:
	case <-c.ctx.Done():
	}
}

// sync waits until every op queued before it is handled and written.
func (c *controller) sync(ctx context.Context) error {
	return c.do(ctx, func(*controller) error { return nil })
}

func (c *controller) markRollout()         { c.pending.rollout = true }
func (c *controller) markNode(n *liveNode) { c.pending.nodes[n.Node] = true; c.pending.rollout = true }
func (c *controller) effect(fn func())     { c.pending.effects = append(c.pending.effects, fn) }
func (c *controller) approve(node, e string) {
	c.pending.approvals = append(c.pending.approvals, store.Approval{Node: node, Etag: e})
}

// flush writes what the ops changed in one store write, then carries out
// their effects (serving and announcing catalogs). A failed write keeps
// both for the next try, a second later, so that nothing is served that
// the store does not hold.
func (c *controller) flush() error {
	p := &c.pending
	if !c.s.leadsRollouts() {
		if !p.rollout && len(p.nodes) == 0 && len(p.approvals) == 0 && len(p.effects) == 0 {
			return nil
		}
		// Another server leads (or will within seconds): what this one
		// had in memory is not its to write.
		c.resign()
		return errNotLeading
	}
	if !p.rollout && len(p.nodes) == 0 && len(p.approvals) == 0 {
		c.runEffects()
		return nil
	}
	w := store.RolloutWrite{Approvals: p.approvals}
	if r := c.cur; r != nil && r.rec.ID != 0 {
		r.rec.Updated = time.Now()
		rec := r.rec
		rec.Stages = slices.Clone(r.rec.Stages)
		w.Rollout = &rec
		for name := range p.nodes {
			if n := r.nodes[name]; n != nil {
				w.Nodes = append(w.Nodes, n.RolloutNode)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.s.st.WriteRollout(ctx, w); err != nil {
		c.log.Error("recording a rollout step; trying again in a second", "err", err)
		if c.retry == nil {
			c.retry = time.AfterFunc(time.Second, func() { c.post(func(*controller) error { return nil }) })
		} else {
			c.retry.Reset(time.Second)
		}
		return fmt.Errorf("recording the rollout: %w", err)
	}
	p.rollout, p.approvals = false, nil
	clear(p.nodes)
	// Changes go to the store once: the nodes written keep none in
	// memory.
	if c.cur != nil {
		for _, n := range w.Nodes {
			if ln := c.cur.nodes[n.Node]; ln != nil {
				ln.Change = nil
			}
		}
	}
	c.runEffects()
	return nil
}

func (c *controller) runEffects() {
	fx := c.pending.effects
	c.pending.effects = nil
	for _, f := range fx {
		f()
	}
}

// candidate returns n's candidate catalog, from the store when it is not
// in memory.
func (c *controller) candidate(n *liveNode) (*nodeCatalog, error) {
	if n.cand != nil && n.cand.etag == n.Etag {
		return n.cand, nil
	}
	nc, err := c.s.storedCatalog(c.ctx, n.Etag)
	if err != nil {
		return nil, err
	}
	n.cand = nc
	return nc, nil
}

// storedCatalog describes the stored catalog etag, keeping its bytes in
// the cache of recent catalogs for the fetch that follows.
func (s *Server) storedCatalog(ctx context.Context, etag string) (*nodeCatalog, error) {
	rec, ok, err := s.st.CatalogByEtag(ctx, etag)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("catalog %s is not in the store", etag)
	}
	nc, err := newNodeCatalog(rec.Etag, rec.Version, rec.Catalog, rec.Signature)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", etag, err)
	}
	nc.stored.Store(true)
	s.recent.put(etag, rec.Catalog)
	return nc, nil
}

// serve makes nc the catalog node's check-ins get and tells its Watch
// streams. Only after the store holds the approval (flush's effects).
func (s *Server) serve(node string, nc *nodeCatalog) {
	s.serveLocal(node, nc)
	if s.st.Postgres() {
		// The node's Watch stream may be on another server.
		s.released.add(node, nc.etag)
	}
}

// serveLocal is serve on this server alone: a release another server
// made, heard through the store (cluster.go).
func (s *Server) serveLocal(node string, nc *nodeCatalog) {
	s.compiles.mu.Lock()
	s.compiles.catalogs[node] = nc
	s.compiles.mu.Unlock()
	s.watch.notify(node, nc.etag, nc.version, false)
	s.audits.touch(node)
	s.arrivals.arrived(node)
}

// rehearsals holds each node's pending rehearsal: a candidate it is to
// run once in noop. Check-ins read it (a map lookup); the controller
// writes it, and on a shared store each change is announced to the
// servers that follow (announce).
type rehearsals struct {
	mu sync.RWMutex
	m  map[string]*nodeCatalog
	// announce, when set, tells the other servers of node's rehearsal
	// (etag "" when it has none).
	announce func(node, etag string)
}

func (r *rehearsals) get(node string) *nodeCatalog {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[node]
}

// set gives node its rehearsal (nil: none) and announces it.
func (r *rehearsals) set(node string, nc *nodeCatalog) {
	r.setLocal(node, nc)
	if r.announce != nil {
		etag := ""
		if nc != nil {
			etag = nc.etag
		}
		r.announce(node, etag)
	}
}

// setLocal is set on this server alone: what the leader announced.
func (r *rehearsals) setLocal(node string, nc *nodeCatalog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if nc == nil {
		delete(r.m, node)
		return
	}
	if r.m == nil {
		r.m = map[string]*nodeCatalog{}
	}
	r.m[node] = nc
}

// clearOf drops the pending rehearsals of nodes (a superseded
// rollout's): another environment's rollout keeps its own.
func (r *rehearsals) clearOf(nodes map[string]*liveNode) {
	r.mu.Lock()
	var gone []string
	for n := range nodes {
		if _, ok := r.m[n]; ok {
			delete(r.m, n)
			gone = append(gone, n)
		}
	}
	r.mu.Unlock()
	if r.announce != nil {
		for _, n := range gone {
			r.announce(n, "")
		}
	}
}

func (r *rehearsals) clear() {
	r.mu.Lock()
	old := r.m
	r.m = nil
	r.mu.Unlock()
	if r.announce != nil {
		for n := range old {
			r.announce(n, "")
		}
	}
}

// load resumes the newest rollout from the store, before the server
// serves: its nodes, their pending rehearsals, and its bake timer.
func (c *controller) load(ctx context.Context) error {
	envs := []string{c.env.name}
	if c.env.name == c.s.envs.def {
		// Rollouts from before environments are the default's.
		envs = append(envs, "")
	}
	rec, ok, err := c.s.st.NewestRollout(ctx, envs...)
	if err != nil || !ok {
		return err
	}
	c.newest.Store(rec.ID)
	r := &liveRollout{rec: rec, nodes: map[string]*liveNode{}}
	c.cur = r
	if !r.active() {
		return nil
	}
	if len(rec.Fleet) > 0 {
		if err := json.Unmarshal(rec.Fleet, &r.fleet); err != nil {
			c.log.Warn("a stored rollout's fleet summary does not decode; regated nodes read an empty one", "rollout", rec.ID, "err", err)
		}
	}
	nodes, err := c.s.st.RolloutNodes(ctx, store.RolloutNodeQuery{Rollout: rec.ID})
	if err != nil {
		return err
	}
	for _, n := range nodes {
		r.nodes[n.Node] = &liveNode{RolloutNode: n}
	}
	r.index()
	for i, st := range r.rec.Stages {
		switch st.State {
		case stageRehearsing:
			for _, name := range r.rehearsers[i] {
				if n := r.nodes[name]; wantsRehearsal(n) {
					nc, err := c.candidate(n)
					if err != nil {
						c.log.Warn("resuming a rehearsal", "node", name, "err", err)
						continue
					}
					c.s.rehearse.set(name, nc)
				}
			}
		case stageBaking:
			if !st.BakeEnded {
				c.armBake(r, i)
			}
		}
		if st.State == stageReleasing || st.State == stageRehearsing {
			c.armDeadline(r, i)
		}
	}
	c.log.Info("resumed a rollout", "rollout", rec.ID, "version", rec.Version, "state", rec.State)
	return nil
}

// index builds the stage lists and tallies of r from its nodes.
func (r *liveRollout) index() {
	r.members = make([][]string, len(r.rec.Stages))
	r.rehearsers = make([][]string, len(r.rec.Stages))
	r.tally = make([]stageTally, len(r.rec.Stages))
	for name, n := range r.nodes {
		r.count(n, 1)
		if n.Stage >= 0 && n.Stage < len(r.members) {
			r.members[n.Stage] = append(r.members[n.Stage], name)
		}
		if n.Rehearse >= 0 && n.Rehearse < len(r.rehearsers) {
			r.rehearsers[n.Rehearse] = append(r.rehearsers[n.Rehearse], name)
		}
	}
	for i := range r.members {
		slices.Sort(r.members[i])
		slices.Sort(r.rehearsers[i])
	}
}

// wantsRehearsal reports whether n still has to rehearse its candidate.
func wantsRehearsal(n *liveNode) bool {
	return n != nil && n.Decision == decisionAllowed && n.Rehearsal == nil && n.State == nodePending
}
