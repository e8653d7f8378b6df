package server

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/server/ca"
	"github.com/herdcm/herd/server/store"
)

// Rollouts on several servers. One server at a time leads them: the one
// holding the "rollout" lease (leader.go). Its controllers plan each new
// site version (so every node is compiled once for it, across the
// servers), move the stages, and answer operators' actions; they are the
// only writers of rollouts. The others follow: what reaches them and
// moves a rollout (a node's new facts, a report, a node deactivated, an
// operator's action) is handed to the leader on the "rollout-work"
// channel, and what the leader decides that they serve (released
// catalogs on "catalog", rehearsals, compile errors, the runs a bake's
// end asks for and the newest rollout on "rollout-state") comes back. Every decision is in the store
// before it is announced, so a notification is only a hint of what to
// read: a server that missed some (it reconnected, or none led for a few
// seconds) re-reads the store.
//
// On sqlite one server owns the store, always leads, and none of this
// runs.

const (
	rolloutWorkChannel   = "rollout-work"
	rolloutStateChannel  = "rollout-state"
	rolloutAnswerChannel = "rollout-answer"
	// workBatch is how long a follower gathers work for the leader into
	// one notification: short, as a check-in that brought new facts waits
	// for the leader's compile.
	workBatch = 5 * time.Millisecond
	// followWait is how long a check-in on a follower waits for the
	// leader to compile a node that brought new facts, before it answers
	// with what the node had (its Watch stream hears the rest).
	followWait = 5 * time.Second
	// actionWait is how long an operator's action on a follower waits for
	// the leader's answer.
	actionWait = 30 * time.Second
	// maxForwardFailures bounds the failures of one forwarded report.
	maxForwardFailures = 20
)

// rolloutWork is one thing a follower hands the rollout leader: one JSON
// line of a "rollout-work" payload.
type rolloutWork struct {
	// Kind is compile, report, leave, rejoin or action.
	Kind string `json:"k"`
	Node string `json:"n,omitempty"`
	// Env is what the node's agent asked for (compile), or the
	// environment of an action.
	Env string `json:"e,omitempty"`
	// Digest is the node's facts digest (compile): the leader reads the
	// facts from the store when its own differ.
	Digest string `json:"d,omitempty"`
	// Key is the node's sealing key (compile), when the follower has one.
	Key []byte `json:"s,omitempty"`
	// Purge says a left node was purged rather than deactivated.
	Purge  bool           `json:"p,omitempty"`
	Report *reportOutcome `json:"r,omitempty"`
	Call   *rolloutCall   `json:"a,omitempty"`
}

// reportOutcome is what a rollout reads of a report (controller.report).
type reportOutcome struct {
	Digest   string        `json:"d"`
	Noop     bool          `json:"o,omitempty"`
	Summary  store.Summary `json:"s"`
	Failures []string      `json:"f,omitempty"`
	Received time.Time     `json:"t"`
}

// rolloutCall is an operator's rollout action handed to the leader; the
// answer comes on "rollout-answer" under ID.
type rolloutCall struct {
	ID      string `json:"i"`
	Rollout int64  `json:"r"`
	Action  string `json:"a"`
}

// rolloutAnswer is the leader's answer to a rolloutCall: the rollout
// acted on, or the error's kind and text.
type rolloutAnswer struct {
	ID      string `json:"i"`
	Rollout int64  `json:"r,omitempty"`
	// Err is "", "not-found", "bad-action", "state" or "other".
	Err string `json:"e,omitempty"`
	Msg string `json:"m,omitempty"`
}

// rolloutState is one thing the leader tells the followers: one JSON line
// of a "rollout-state" payload.
type rolloutState struct {
	// Kind is rehearse (Etag "" clears it), error (a compile error,
	// Msg "" clears it), newest (the newest rollout of Env is ID) or run
	// (the node's agent is asked for a run).
	Kind string `json:"k"`
	Node string `json:"n,omitempty"`
	Etag string `json:"t,omitempty"`
	Msg  string `json:"m,omitempty"`
	Env  string `json:"e,omitempty"`
	ID   int64  `json:"i,omitempty"`
}

// announceState tells the following servers of m, when this server leads
// on a shared store.
func (s *Server) announceState(m rolloutState) {
	if s.st.Postgres() && s.leadsRollouts() {
		s.state.add(m)
	}
}

// askRun asks node's agent for a run through its Watch stream, which may
// be on any of the servers: the rollout wants a fresh report (the end of
// a bake).
func (s *Server) askRun(node string) {
	s.watch.notify(node, "", "", true)
	s.announceState(rolloutState{Kind: "run", Node: node})
}

// leadsRollouts reports whether this server's controllers drive the
// rollouts: always on sqlite, on PostgreSQL while it holds the lease.
func (s *Server) leadsRollouts() bool { return s.rolloutLead.Leading() }

// outbox gathers JSON lines for one channel and sends them in
// notifications of at most maxNotify bytes.
type outbox struct {
	channel string
	wait    time.Duration
	mu      sync.Mutex
	lines   []string
	wake    chan struct{}
}

func (o *outbox) init(channel string, wait time.Duration) {
	o.channel, o.wait = channel, wait
	o.wake = make(chan struct{}, 1)
}

// add queues v (marshalled as one line).
func (o *outbox) add(v any) {
	b, err := json.Marshal(v)
	if err != nil || len(b) > maxNotify {
		return // bounded by its builders; a line past the limit has no place
	}
	o.mu.Lock()
	o.lines = append(o.lines, string(b))
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// send delivers what is queued until ctx ends.
func (s *Server) send(ctx context.Context, o *outbox) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(o.wait):
		}
		o.mu.Lock()
		lines := o.lines
		o.lines = nil
		o.mu.Unlock()
		for _, p := range linePayloads(lines, maxNotify) {
			nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := s.st.Notify(nctx, o.channel, p)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Warn("telling the other servers; they read the store at their next takeover or check-in", "channel", o.channel, "err", err)
			}
		}
	}
}

// linePayloads joins lines with newlines into payloads of at most max
// bytes.
func linePayloads(lines []string, max int) []string {
	var out []string
	var b strings.Builder
	for _, l := range lines {
		if b.Len() > 0 && b.Len()+1+len(l) > max {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// parseLines decodes a payload's JSON lines into T, skipping a line that
// does not decode: a payload is another server's, but a bad line must not
// stop the good ones.
func parseLines[T any](payload string) []T {
	var out []T
	for line := range strings.SplitSeq(payload, "\n") {
		var v T
		if line == "" || json.Unmarshal([]byte(line), &v) != nil {
			continue
		}
		out = append(out, v)
	}
	return out
}

// outcomeOf is what the rollout reads of a report; false for one it
// ignores (an audit run, a partial one).
func outcomeOf(rep store.Report, services []*herdv1.ServiceHealth) (reportOutcome, bool) {
	if rep.Audit || rep.Partial {
		return reportOutcome{}, false
	}
	if rep.Noop {
		// A rehearsal is judged by its resources: its services run the
		// approved catalog, not the one rehearsed.
		services = nil
	}
	return reportOutcome{Digest: rep.CatalogDigest, Noop: rep.Noop, Summary: rep.Summary, Failures: failures(rep, services), Received: rep.Received}, true
}

// forwardReport hands a report's outcome to the rollout leader.
func (s *Server) forwardReport(node string, o reportOutcome) {
	if len(o.Failures) > maxForwardFailures {
		o.Failures = append(o.Failures[:maxForwardFailures:maxForwardFailures], fmt.Sprintf("and %d more", len(o.Failures)-maxForwardFailures))
	}
	for i, f := range o.Failures {
		if len(f) > 200 {
			o.Failures[i] = f[:200]
		}
	}
	s.work.add(rolloutWork{Kind: "report", Node: node, Report: &o})
}

// forwardCompile hands the compile of node (its facts are in the store)
// to the rollout leader and waits, up to followWait, for what it decides:
// a new catalog or a compile error, heard back through the store's
// notifications. It returns the node's catalog then.
func (s *Server) forwardCompile(ctx context.Context, node string) *nodeCatalog {
	before, _ := s.compiles.get(node)
	digest, ok := s.facts.digest(node)
	if !ok {
		return before // no facts: nothing to compile yet
	}
	w := rolloutWork{Kind: "compile", Node: node, Digest: digest}
	if a, ok := s.asked.Load(node); ok {
		w.Env = a.(string)
	}
	s.secrets.mu.RLock()
	if k := s.secrets.node[node]; k != nil {
		w.Key = k.Bytes()
	}
	s.secrets.mu.RUnlock()
	ch := s.arrivals.wait(node)
	defer s.arrivals.done(node, ch)
	s.work.add(w)
	t := time.NewTimer(followWait)
	defer t.Stop()
	// Woken by the leader's word on the node: a release, or the outcome
	// of a compile that released nothing (a compile error, or the same
	// catalog).
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-ch:
	}
	cur, _ := s.compiles.get(node)
	return cur
}

// arrivals lets a check-in on a follower wait for what the leader decides
// of its node.
type arrivals struct {
	mu sync.Mutex
	m  map[string][]chan struct{}
}

func (a *arrivals) wait(node string) chan struct{} {
	ch := make(chan struct{}, 1)
	a.mu.Lock()
	if a.m == nil {
		a.m = map[string][]chan struct{}{}
	}
	a.m[node] = append(a.m[node], ch)
	a.mu.Unlock()
	return ch
}

func (a *arrivals) done(node string, ch chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.m[node]
	for i, c := range l {
		if c == ch {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(a.m, node)
	} else {
		a.m[node] = l
	}
}

// waiting says whether a check-in waits for node's catalog.
func (a *arrivals) waiting(node string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m[node]) > 0
}

// arrived wakes the check-ins waiting on node.
func (a *arrivals) arrived(node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ch := range a.m[node] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// hearRolloutWork takes, while this server leads the rollouts, what the
// followers hand it.
func (s *Server) hearRolloutWork(ctx context.Context) {
	first := true
	ready := func() {
		if first || !s.leadsRollouts() {
			first = false
			return
		}
		// Listening again after a lost connection: what the followers
		// handed over meanwhile is lost, but their facts are in the
		// store.
		go s.catchUpFacts(ctx)
	}
	s.st.Listen(ctx, rolloutWorkChannel, ready, func(payload string) {
		if !s.leadsRollouts() {
			return // the leader hears it; a new one reads the store
		}
		for _, w := range parseLines[rolloutWork](payload) {
			s.doWork(ctx, w)
		}
	})
}

// doWork carries out one thing a follower handed this leader.
func (s *Server) doWork(ctx context.Context, w rolloutWork) {
	if w.Node != "" && ca.CheckName(w.Node) != nil {
		return
	}
	switch w.Kind {
	case "compile":
		if w.Node == "" {
			return
		}
		// Off the listener's goroutine: a compile takes milliseconds,
		// and the notifications behind it must not wait.
		go func() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if w.Env != "" && validEnvName(w.Env) {
				s.asked.Store(w.Node, w.Env)
			}
			if len(w.Key) == 32 {
				if pk, err := ecdh.X25519().NewPublicKey(w.Key); err == nil {
					s.secrets.mu.Lock()
					s.secrets.node[w.Node] = pk
					s.secrets.mu.Unlock()
				}
			}
			if err := s.refreshFacts(cctx, w.Node, w.Digest); err != nil {
				s.log.Warn("reading the facts of a node another server compiles here", "node", w.Node, "err", err)
				return
			}
			before, _ := s.compiles.get(w.Node)
			after := s.compileNode(cctx, w.Node)
			if after != nil && after != before && after.stored.Load() && !s.watch.has(w.Node) {
				// The node fetches it from the follower, out of the
				// store: kept here, its bytes would stay for good.
				after.mu.Lock()
				if after.bytes != nil {
					s.recent.put(after.etag, after.bytes)
				}
				after.mu.Unlock()
				after.dropBytes()
			}
			if after == before {
				// Nothing released: the follower waits for the compile
				// error, or for nothing.
				_, msg := s.compiles.get(w.Node)
				s.announceState(rolloutState{Kind: "error", Node: w.Node, Msg: msg})
			}
		}()
	case "report":
		if w.Report == nil || w.Node == "" {
			return
		}
		o := *w.Report
		s.eachController(func(c *controller) error { c.outcome(w.Node, o); return nil })
	case "leave":
		if w.Purge {
			s.forgetNode(w.Node)
		} else {
			s.inactive.set(w.Node, time.Now())
		}
		s.eachController(func(c *controller) error { c.leave(w.Node, w.Purge); return nil })
	case "rejoin":
		s.inactive.drop(w.Node)
		if e := s.envs.get(s.nodeEnv(w.Node)); e != nil {
			e.ctl.post(func(c *controller) error { c.rejoin(w.Node); return nil })
		}
	case "action":
		if w.Call == nil {
			return
		}
		go s.answerAction(ctx, w.Env, *w.Call)
	}
}

// refreshFacts reads node's facts from the store when the cached ones are
// not those of digest (another server took them).
func (s *Server) refreshFacts(ctx context.Context, node, digest string) error {
	if d, ok := s.facts.digest(node); ok && digest != "" && d == digest {
		return nil
	}
	d, b, _, ok, err := s.st.Facts(ctx, node)
	if err != nil || !ok {
		return err
	}
	f, err := facts.FromJSON(b)
	if err != nil {
		return fmt.Errorf("stored facts: %w", err)
	}
	s.facts.put(node, cachedFacts{digest: d, facts: f})
	return nil
}

// answerAction carries out an operator's action handed over by a
// follower and tells it the outcome.
func (s *Server) answerAction(ctx context.Context, env string, call rolloutCall) {
	ans := rolloutAnswer{ID: call.ID}
	rec, err := s.rolloutAction(ctx, env, call.Rollout, call.Action)
	switch {
	case err == nil:
		ans.Rollout = rec.ID
	case errors.Is(err, errNoRollout):
		ans.Err, ans.Msg = "not-found", err.Error()
	case errors.Is(err, errBadAction):
		ans.Err, ans.Msg = "bad-action", err.Error()
	case errors.Is(err, errRolloutState):
		ans.Err, ans.Msg = "state", err.Error()
	default:
		ans.Err, ans.Msg = "other", err.Error()
	}
	s.answers.add(ans)
}

// rolloutAction runs action on rollout id (0: the newest of env) on this
// server's controller, which leads.
func (s *Server) rolloutAction(ctx context.Context, env string, id int64, action string) (store.Rollout, error) {
	e := s.envs.get(env)
	if e == nil {
		return store.Rollout{}, fmt.Errorf("environment %q is not served here", env)
	}
	var rec store.Rollout
	var actErr error
	err := e.ctl.do(ctx, func(c *controller) error {
		if !s.leadsRollouts() {
			return errNotLeading
		}
		rec, actErr = c.action(id, action)
		// The controller goes on writing its stages: the answer takes a
		// copy here, on the controller's goroutine.
		rec.Stages = append([]store.RolloutStage(nil), rec.Stages...)
		return nil
	})
	if err != nil {
		if errors.Is(err, errNotLeading) {
			return rec, err
		}
		return rec, fmt.Errorf("%w: %w", errController, err)
	}
	return rec, actErr
}

// errController is a rollout controller that could not take a step (the
// server stops, or the store did not record it).
var errController = errors.New("the rollout controller")

// errNotLeading is a leader's step that finds it no longer leads.
var errNotLeading = errors.New("this server no longer leads the rollouts; another takes them over within seconds")

// callLeader hands an operator's action to the rollout leader and waits
// for its answer.
func (s *Server) callLeader(ctx context.Context, env string, id int64, action string) (int64, error) {
	var b [12]byte
	rand.Read(b[:])
	call := rolloutCall{ID: hex.EncodeToString(b[:]), Rollout: id, Action: action}
	ch := make(chan rolloutAnswer, 1)
	s.calls.Store(call.ID, ch)
	defer s.calls.Delete(call.ID)
	s.work.add(rolloutWork{Kind: "action", Env: env, Call: &call})
	ctx, cancel := context.WithTimeout(ctx, actionWait)
	defer cancel()
	select {
	case a := <-ch:
		switch a.Err {
		case "":
			return a.Rollout, nil
		case "not-found":
			return 0, fmt.Errorf("%w (%s)", errNoRollout, a.Msg)
		case "bad-action":
			return 0, fmt.Errorf("%w (%s)", errBadAction, a.Msg)
		case "state":
			return 0, fmt.Errorf("%w (%s)", errRolloutState, a.Msg)
		}
		return 0, errors.New(a.Msg)
	case <-ctx.Done():
		holder, _, _ := s.st.LeaseHolder(context.Background(), "rollout")
		if holder == "" {
			holder = "none right now"
		}
		return 0, fmt.Errorf("handing the action to the server that leads the rollouts (%s): no answer within %s: %w", holder, actionWait, ctx.Err())
	}
}

// hearAnswers takes the leader's answers to the actions this server
// handed it.
func (s *Server) hearAnswers(ctx context.Context) {
	s.st.Listen(ctx, rolloutAnswerChannel, nil, func(payload string) {
		for _, a := range parseLines[rolloutAnswer](payload) {
			if v, ok := s.calls.Load(a.ID); ok {
				select {
				case v.(chan rolloutAnswer) <- a:
				default:
				}
			}
		}
	})
}

// hearRolloutState takes, while this server follows, what the leader
// tells of rehearsals, compile errors and new rollouts.
func (s *Server) hearRolloutState(ctx context.Context) {
	s.st.Listen(ctx, rolloutStateChannel, nil, func(payload string) {
		if s.leadsRollouts() {
			return // its own
		}
		for _, m := range parseLines[rolloutState](payload) {
			s.tookState(ctx, m)
		}
	})
}

func (s *Server) tookState(ctx context.Context, m rolloutState) {
	if m.Node != "" && ca.CheckName(m.Node) != nil {
		return
	}
	switch m.Kind {
	case "rehearse":
		if m.Etag == "" {
			s.rehearse.setLocal(m.Node, nil)
			return
		}
		nc, err := s.storedCatalog(ctx, m.Etag)
		if err != nil {
			s.log.Warn("taking a rehearsal the rollout leader asked for", "node", m.Node, "err", err)
			return
		}
		s.rehearse.setLocal(m.Node, nc)
		s.watch.notify(m.Node, "", "", true)
	case "error":
		s.compiles.mu.Lock()
		if m.Msg == "" {
			delete(s.compiles.errors, m.Node)
		} else {
			s.compiles.errors[m.Node] = m.Msg
		}
		s.compiles.mu.Unlock()
		s.arrivals.arrived(m.Node)
	case "run":
		s.watch.notify(m.Node, "", "", true)
	case "newest":
		if e := s.envs.get(m.Env); e != nil && m.ID > e.ctl.newest.Load() {
			e.ctl.newest.Store(m.ID)
		}
	}
}

// followRollouts keeps this server's controllers in step with its hold of
// the rollout lease until ctx ends: one that wins it reads every rollout
// from the store and catches up on what the others handed a leader while
// none led; one that loses it lets its rollouts go.
func (s *Server) followRollouts(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.rolloutLead.won:
			if err := s.takeRollouts(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("taking over the rollouts", "err", err)
			}
		case <-s.rolloutLead.lost:
			s.eachController(func(c *controller) error { c.resign(); return nil })
		}
	}
}

// takeRollouts makes this server's controllers the leaders: each rollout
// as the store has it, the facts the other servers took, a new site
// version planned, and the reports that reached the others meanwhile.
func (s *Server) takeRollouts(ctx context.Context) error {
	if newest, ok, err := s.st.Rollout(ctx, 0); err != nil {
		return err
	} else if ok && newest.ID > s.rolloutIDs.Load() {
		s.rolloutIDs.Store(newest.ID)
	}
	changed, err := s.refreshAllFacts(ctx)
	if err != nil {
		return err
	}
	if err := s.refreshCatalogs(ctx); err != nil {
		return err
	}
	for _, e := range s.envs.all() {
		if err := e.ctl.do(ctx, func(c *controller) error { return c.reload(ctx) }); err != nil {
			return fmt.Errorf("environment %s: %w", e.name, err)
		}
		st := e.site.Load()
		if st == nil {
			continue
		}
		// A version the old leader had not planned yet (or this server
		// loaded since).
		if err := s.newVersion(ctx, st, true); err != nil {
			s.log.Error("planning the served version after taking over the rollouts", "environment", e.name, "err", err)
		}
		if err := e.ctl.do(ctx, func(c *controller) error { c.catchUp(ctx); return nil }); err != nil {
			return fmt.Errorf("environment %s: %w", e.name, err)
		}
	}
	for _, node := range changed {
		s.compileNode(ctx, node)
	}
	s.log.Info("took over the rollouts", "recompiled", len(changed))
	return nil
}

// catchUpFacts compiles the nodes whose facts the store has newer than
// this leader, when it may have missed the followers' word of them.
func (s *Server) catchUpFacts(ctx context.Context) {
	changed, err := s.refreshAllFacts(ctx)
	if err != nil {
		s.log.Warn("reading the facts the other servers took", "err", err)
		return
	}
	for _, node := range changed {
		s.compileNode(ctx, node)
	}
}

// refreshAllFacts reads the facts the store has newer than this server's,
// returning the nodes whose facts changed.
func (s *Server) refreshAllFacts(ctx context.Context) ([]string, error) {
	digests, err := s.st.FactsDigests(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the facts digests: %w", err)
	}
	var changed []string
	for node, d := range digests {
		if have, ok := s.facts.digest(node); ok && have == d {
			continue
		}
		if err := s.refreshFacts(ctx, node, d); err != nil {
			s.log.Warn("reading a node's facts", "node", node, "err", err)
			continue
		}
		changed = append(changed, node)
	}
	return changed, nil
}

// refreshCatalogs serves each node's current catalog as the store has it,
// where a release was not heard here.
func (s *Server) refreshCatalogs(ctx context.Context) error {
	etags, err := s.st.CurrentEtags(ctx)
	if err != nil {
		return err
	}
	for node, etag := range etags {
		if cur, _ := s.compiles.get(node); cur != nil && cur.etag == etag {
			continue
		}
		nc, err := s.storedCatalog(ctx, etag)
		if err != nil {
			s.log.Warn("reading a node's current catalog", "node", node, "err", err)
			continue
		}
		s.serveLocal(node, nc)
	}
	return nil
}

// reload replaces the controller's rollout with the store's: the newest
// leader's, which this server did not drive.
func (c *controller) reload(ctx context.Context) error {
	c.resign()
	return c.load(ctx)
}

// resign drops the controller's rollout from memory, its timers and what
// it had not written: another server leads.
func (c *controller) resign() {
	if c.cur != nil {
		c.cur.stopTimers()
		c.cur = nil
	}
	c.pending.rollout, c.pending.approvals, c.pending.effects = false, nil, nil
	clear(c.pending.nodes)
}

// catchUp feeds the running rollout the newest report of each node it
// waits for: reports that reached other servers while no server led.
func (c *controller) catchUp(ctx context.Context) {
	r := c.cur
	if r == nil || !r.active() {
		return
	}
	for name, n := range r.nodes {
		switch n.State {
		case nodeReleased, nodePending:
		default:
			continue
		}
		reps, err := c.s.st.Reports(ctx, name, 1)
		if err != nil || len(reps) == 0 {
			continue
		}
		if o, ok := outcomeOf(reps[0], nil); ok {
			c.outcome(name, o)
		}
	}
}

// forgetNode drops what this server holds in memory of a purged node.
func (s *Server) forgetNode(node string) {
	// Under the node's compile lock, so that a compile under way does
	// not put its catalog back after this.
	unlock := s.compiles.lock(node)
	s.compiles.mu.Lock()
	delete(s.compiles.catalogs, node)
	delete(s.compiles.errors, node)
	s.compiles.mu.Unlock()
	s.facts.mu.Lock()
	delete(s.facts.m, node)
	s.facts.mu.Unlock()
	unlock()
	s.compiles.nodeMu.Delete(node)
	s.rehearse.setLocal(node, nil)
	s.limits.Delete(node)
	s.services.Delete(node)
	s.placed.Delete(node)
	s.asked.Delete(node)
	s.inactive.drop(node)
	s.audits.forget(node)
}
