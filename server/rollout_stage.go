package server

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/store"
)

// advance moves r as far as it can go now: the stages in order, one at a
// time. It is called after anything that may move it.
func (c *controller) advance(r *liveRollout) {
	for r.active() && r.rec.State != rolloutHalted {
		i := r.current()
		if i < 0 {
			c.setState(r, rolloutDone, "")
			c.log.Info("rollout done", "rollout", r.rec.ID, "version", r.rec.Version)
			return
		}
		st := &r.rec.Stages[i]
		switch st.State {
		case stagePending, stageAwaiting:
			if r.rec.State == rolloutPaused {
				return
			}
			if r.idle(i) {
				// Nothing to release, rehearse or watch (no nodes, or
				// none whose catalog changes): no approval to wait for
				// and nothing to bake.
				break
			}
			if st.Manual && !st.Approved {
				if st.State != stageAwaiting {
					st.State = stageAwaiting
					c.markRollout()
				}
				c.setState(r, rolloutAwaiting, "")
				return
			}
			c.setState(r, rolloutRunning, "")
			c.startStage(r, i)
			continue
		case stageRehearsing:
			var failed []string
			waiting := 0
			for _, name := range r.rehearsers[i] {
				n := r.nodes[name]
				if wantsRehearsal(n) {
					waiting++
				}
				if n.Rehearsal != nil && len(n.Failures) > 0 && n.State != nodeInactive {
					failed = append(failed, name)
				}
			}
			if c.haltWith(r, i, len(r.rehearsers[i]), failed) || waiting > 0 {
				return
			}
			for _, name := range r.rehearsers[i] {
				c.effect(func() { c.s.rehearse.set(name, nil) })
			}
		case stageReleasing:
			if c.haltOnFailures(r, i) || r.tally[i].released > 0 {
				return
			}
			if st.Bake > 0 {
				st.State = stageBaking
				st.BakeUntil = time.Now().Add(st.Bake)
				c.markRollout()
				c.armBake(r, i)
				return
			}
		case stageBaking:
			if c.haltOnFailures(r, i) || !st.BakeEnded || r.tally[i].unfinal > 0 {
				return
			}
		default: // halted
			return
		}
		st.State = stageDone
		c.markRollout()
		c.log.Info("rollout stage done", "rollout", r.rec.ID, "stage", st.Name)
	}
}

// idle reports whether stage i has nothing to do: a rehearsal with no
// node to rehearse, or a stage none of whose nodes is to be released or
// watched (each unchanged, denied, failing to compile or deactivated).
func (r *liveRollout) idle(i int) bool {
	if r.rec.Stages[i].Noop {
		for _, name := range r.rehearsers[i] {
			if wantsRehearsal(r.nodes[name]) {
				return false
			}
		}
		return true
	}
	for _, name := range r.members[i] {
		switch r.nodes[name].State {
		case nodeUnchanged, nodeDenied, nodeCompileError, nodeInactive:
		default:
			return false
		}
	}
	return true
}

// current is the index of the first stage not done, -1 when all are.
func (r *liveRollout) current() int {
	for i, st := range r.rec.Stages {
		if st.State != stageDone {
			return i
		}
	}
	return -1
}

func (c *controller) setState(r *liveRollout, state, reason string) {
	if r.rec.State != state || r.rec.Reason != reason {
		r.rec.State, r.rec.Reason = state, reason
		c.markRollout()
	}
}

// startStage releases stage i's allowed nodes (or asks its rehearsals).
func (c *controller) startStage(r *liveRollout, i int) {
	st := &r.rec.Stages[i]
	st.Started = time.Now()
	c.markRollout()
	c.log.Info("rollout stage starts", "rollout", r.rec.ID, "stage", st.Name, "noop", st.Noop)
	defer c.armDeadline(r, i)
	if st.Noop {
		st.State = stageRehearsing
		for _, name := range r.rehearsers[i] {
			n := r.nodes[name]
			if !wantsRehearsal(n) {
				continue
			}
			nc, err := c.candidate(n)
			if err != nil {
				c.fail(r, n, "the candidate catalog: "+err.Error())
				continue
			}
			c.effect(func() {
				c.s.rehearse.set(name, nc)
				c.s.watch.notify(name, "", "", true)
			})
		}
		return
	}
	st.State = stageReleasing
	for _, name := range r.members[i] {
		if n := r.nodes[name]; n.State == nodePending && n.Decision == decisionAllowed {
			c.release(r, n)
		}
	}
}

// release makes n's candidate its approved catalog.
func (c *controller) release(r *liveRollout, n *liveNode) {
	nc, err := c.candidate(n)
	if err != nil {
		c.fail(r, n, "the candidate catalog: "+err.Error())
		return
	}
	r.setNode(n, nodeReleased, false)
	n.Failures = nil
	c.markNode(n)
	c.approve(n.Node, n.Etag)
	name := n.Node
	c.effect(func() {
		c.s.rehearse.set(name, nil)
		c.s.serve(name, nc)
	})
}

func (c *controller) fail(r *liveRollout, n *liveNode, why string) {
	r.setNode(n, nodeFailed, n.Final)
	n.Failures = []string{why}
	c.markNode(n)
}

// failedNodes returns the names of the nodes among names that failed.
func (r *liveRollout) failedNodes(names []string) []string {
	var out []string
	for _, name := range names {
		if r.nodes[name].State == nodeFailed {
			out = append(out, name)
		}
	}
	return out
}

// maxFailed is how many of n nodes stage st tolerates failing.
func maxFailed(st *store.RolloutStage, n int) int {
	if st.MaxFailedPercent {
		return int(st.MaxFailed * float64(n) / 100)
	}
	return int(st.MaxFailed)
}

// maxFailedText is max_failed as herd.toml wrote it.
func maxFailedText(st *store.RolloutStage) string {
	s := strconv.FormatFloat(st.MaxFailed, 'f', -1, 64)
	if st.MaxFailedPercent {
		s += "%"
	}
	return s
}

// haltOnFailures halts r when stage i has more failed members than it
// tolerates, with a reason that names them and how they failed.
func (c *controller) haltOnFailures(r *liveRollout, i int) bool {
	st := &r.rec.Stages[i]
	members := len(r.members[i])
	if st.Override || r.tally[i].failed <= maxFailed(st, members) {
		return false
	}
	return c.haltWith(r, i, members, r.failedNodes(r.members[i]))
}

// haltWith halts r when failed, of stage i's members, are more than it
// tolerates.
func (c *controller) haltWith(r *liveRollout, i, members int, failed []string) bool {
	st := &r.rec.Stages[i]
	if st.Override || len(failed) <= maxFailed(st, members) {
		return false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "stage %s: %d of %d nodes failed (max_failed %s): ", st.Name, len(failed), members, maxFailedText(st))
	for j, name := range failed {
		if j == 5 {
			fmt.Fprintf(&b, "; and %d more", len(failed)-j)
			break
		}
		if j > 0 {
			b.WriteString("; ")
		}
		b.WriteString(name)
		if f := r.nodes[name].Failures; len(f) > 0 {
			b.WriteString(" (" + strings.Join(f[:min(len(f), 3)], ", "))
			if len(f) > 3 {
				fmt.Fprintf(&b, ", and %d more", len(f)-3)
			}
			b.WriteString(")")
		}
	}
	st.Halted, st.State = st.State, stageHalted
	c.setState(r, rolloutHalted, b.String())
	c.log.Warn("rollout halted", "rollout", r.rec.ID, "reason", b.String())
	return true
}

// armBake sets the timer of stage i's bake.
func (c *controller) armBake(r *liveRollout, i int) {
	if r.bake != nil {
		r.bake.Stop()
	}
	id, until := r.rec.ID, r.rec.Stages[i].BakeUntil
	r.bake = time.AfterFunc(time.Until(until), func() {
		c.post(func(c *controller) error { c.bakeEnded(id, i); return nil })
	})
}

// armDeadline sets the timer of stage i's timeout, counted from its
// start (a restarted server arms what is left of it).
func (c *controller) armDeadline(r *liveRollout, i int) {
	st := &r.rec.Stages[i]
	if st.Timeout <= 0 {
		return
	}
	if r.deadline != nil {
		r.deadline.Stop()
	}
	id := r.rec.ID
	r.deadline = time.AfterFunc(time.Until(st.Started.Add(st.Timeout)), func() {
		c.post(func(c *controller) error { c.timedOut(id, i); return nil })
	})
}

// timedOut fails the nodes of stage i that have not reported their run
// (or their rehearsal) within the stage's timeout: a node that is down,
// or whose agent never hears of its release, must not hold the rollout
// forever. max_failed then decides whether the rollout halts.
func (c *controller) timedOut(id int64, i int) {
	r := c.cur
	if r == nil || r.rec.ID != id || i >= len(r.rec.Stages) || !r.active() {
		return
	}
	st := &r.rec.Stages[i]
	why := fmt.Sprintf("no report within the stage's timeout of %v", st.Timeout)
	late := 0
	switch st.State {
	case stageReleasing:
		for _, name := range r.members[i] {
			if n := r.nodes[name]; n.State == nodeReleased {
				c.fail(r, n, why)
				late++
			}
		}
	case stageRehearsing:
		for _, name := range r.rehearsers[i] {
			if n := r.nodes[name]; wantsRehearsal(n) {
				n.Rehearsal, n.Failures = &store.Summary{}, []string{why}
				c.markNode(n)
				c.effect(func() { c.s.rehearse.set(name, nil) })
				late++
			}
		}
	default:
		return
	}
	if late > 0 {
		c.log.Warn("rollout stage timed out", "rollout", id, "stage", st.Name, "late", late, "timeout", st.Timeout)
	}
	c.advance(r)
}

// bakeEnded asks stage i's nodes for one more run: the stage is done when
// each reports well again.
func (c *controller) bakeEnded(id int64, i int) {
	r := c.cur
	if r == nil || r.rec.ID != id || i >= len(r.rec.Stages) {
		return
	}
	st := &r.rec.Stages[i]
	if st.BakeEnded || (st.State != stageBaking && st.Halted != stageBaking) {
		return
	}
	st.BakeEnded = true
	c.markRollout()
	for _, name := range r.members[i] {
		if n := r.nodes[name]; n.State == nodeHealthy || n.State == nodeFailed {
			c.effect(func() { c.s.askRun(name) })
		}
	}
	c.advance(r)
}

// report is a stored report of node reaching the controller.
func (c *controller) report(node string, rep store.Report, services []*herdv1.ServiceHealth) {
	if o, ok := outcomeOf(rep, services); ok {
		c.outcome(node, o)
	}
}

// outcome moves node's rollout by what its report says (outcomeOf): on
// the leader, from a report it took or one another server handed it.
func (c *controller) outcome(node string, rep reportOutcome) {
	r := c.cur
	if r == nil || !r.active() {
		return
	}
	n := r.nodes[node]
	if n == nil || rep.Digest != n.Etag {
		return
	}
	if rep.Noop {
		// A rehearsal's answer; any other noop run counts for nothing.
		if n.Rehearse < 0 || n.Rehearsal != nil {
			return
		}
		sum := rep.Summary
		n.Rehearsal = &sum
		n.Failures = rep.Failures
		c.markNode(n)
		c.effect(func() { c.s.rehearse.set(node, nil) })
		c.advance(r)
		return
	}
	switch n.State {
	case nodeReleased, nodeHealthy, nodeFailed:
	default:
		return
	}
	st := &r.rec.Stages[n.Stage]
	if st.State == stageDone {
		return
	}
	if f := rep.Failures; len(f) > 0 {
		r.setNode(n, nodeFailed, false)
		n.Failures = f
	} else if n.State != nodeFailed || st.State == stageReleasing {
		// A failure during the bake sticks; before it, the newest
		// report decides.
		r.setNode(n, nodeHealthy, n.Final || (st.BakeEnded && !rep.Received.Before(st.BakeUntil)))
		n.Failures = nil
	}
	c.markNode(n)
	c.advance(r)
}

// failures says why a run failed: its failed resources and its unhealthy
// services.
func failures(rep store.Report, services []*herdv1.ServiceHealth) []string {
	var out []string
	for _, e := range rep.Events {
		if e.Status == "failed" {
			msg := e.ID
			if e.Error != "" {
				msg += ": " + firstLine(e.Error)
			}
			out = append(out, msg)
		}
	}
	if len(out) == 0 && rep.Summary.Failed > 0 {
		out = append(out, fmt.Sprintf("%d resources failed", rep.Summary.Failed))
	}
	for _, sv := range services {
		if sv.Health == "unhealthy" {
			msg := "service " + sv.Name + ": unhealthy"
			if sv.Detail != "" {
				msg += ": " + firstLine(sv.Detail)
			}
			out = append(out, msg)
		}
	}
	return out
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// action carries out an operator's action on rollout id (0: the newest).
func (c *controller) action(id int64, action string) (store.Rollout, error) {
	r := c.cur
	if r == nil || (id != 0 && id != r.rec.ID) {
		if r != nil && id < r.rec.ID {
			return store.Rollout{}, fmt.Errorf("rollout %d is not the newest (%d is): %w", id, r.rec.ID, errRolloutState)
		}
		return store.Rollout{}, fmt.Errorf("rollout %d: %w", id, errNoRollout)
	}
	state := r.rec.State
	refuse := func(why string) (store.Rollout, error) {
		return store.Rollout{}, fmt.Errorf("cannot %s rollout %d: it is %s%s: %w", action, r.rec.ID, state, why, errRolloutState)
	}
	switch action {
	case "pause":
		if state != rolloutRunning && state != rolloutAwaiting {
			return refuse("")
		}
		c.setState(r, rolloutPaused, "paused by an operator")
	case "resume":
		switch state {
		case rolloutPaused:
			c.setState(r, rolloutRunning, "")
		case rolloutHalted:
			// The operator overrides the failures: the stage goes on.
			for i := range r.rec.Stages {
				if st := &r.rec.Stages[i]; st.State == stageHalted {
					st.State, st.Halted, st.Override = st.Halted, "", true
				}
			}
			c.setState(r, rolloutRunning, "")
		default:
			return refuse("")
		}
		c.advance(r)
	case "approve":
		if state != rolloutAwaiting {
			if state == rolloutPaused {
				return refuse(" (resume it first)")
			}
			return refuse(", not awaiting approval")
		}
		if i := r.current(); i >= 0 {
			r.rec.Stages[i].Approved = true
		}
		c.advance(r)
	case "abort":
		if !r.active() && state != rolloutBlocked {
			return refuse("")
		}
		c.abort(r)
	default:
		return store.Rollout{}, fmt.Errorf("%q: %w (pause, resume, approve or abort)", action, errBadAction)
	}
	rec := r.rec
	return rec, nil
}

// abort gives every node this rollout released its previous catalog back.
func (c *controller) abort(r *liveRollout) {
	r.stopTimers()
	reverted := 0
	for _, n := range r.nodes {
		switch n.State {
		case nodeReleased, nodeHealthy, nodeFailed:
		default:
			continue
		}
		if n.PreviousEtag == "" {
			continue // a new node: nothing to go back to
		}
		prev, err := c.s.storedCatalog(c.ctx, n.PreviousEtag)
		if err != nil {
			c.log.Error("aborting: the previous catalog is gone; the node keeps the new one", "node", n.Node, "err", err)
			continue
		}
		r.setNode(n, nodeReverted, n.Final)
		c.markNode(n)
		c.approve(n.Node, n.PreviousEtag)
		name := n.Node
		c.effect(func() { c.s.serve(name, prev) })
		reverted++
	}
	c.effect(c.s.rehearse.clear)
	c.setState(r, rolloutAborted, fmt.Sprintf("aborted by an operator; %d nodes back on their previous catalog", reverted))
	c.log.Warn("rollout aborted", "rollout", r.rec.ID, "reverted", reverted)
}
