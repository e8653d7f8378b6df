package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/herdcm/herd/server/ca"
)

// Cattle come and go. A node that leaves is deactivated (by an operator,
// or by node_ttl when it stops checking in): its history stays, but it
// leaves the fleet views and new rollouts, and the current rollout stops
// waiting for it. A check-in brings it back. A purge (by an operator, or
// node_purge_ttl after the deactivation) deletes what the store holds of
// it and revokes its certificates.

// inactiveNodes holds the deactivated nodes, so that a check-in and a
// rollout plan know them without a store read.
type inactiveNodes struct {
	mu sync.RWMutex
	m  map[string]time.Time
}

func (x *inactiveNodes) init(m map[string]time.Time) {
	if m == nil {
		m = map[string]time.Time{}
	}
	x.m = m
}

func (x *inactiveNodes) has(node string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.m[node]
	return ok
}

func (x *inactiveNodes) set(node string, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.m[node]; !ok {
		x.m[node] = at
	}
}

// drop forgets node and reports whether it was deactivated.
func (x *inactiveNodes) drop(node string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.m[node]
	delete(x.m, node)
	return ok
}

// errUnknownNode is an action on a node the server does not know.
var errUnknownNode = errors.New("no such node")

// CheckNodeTTLs refuses node_ttl and node_purge_ttl settings that cannot
// both be acted on: a negative one, a purge without deactivation (purge
// counts from the deactivation), or a purge sooner than the deactivation.
func CheckNodeTTLs(nodeTTL, purgeTTL time.Duration) error {
	switch {
	case nodeTTL < 0 || purgeTTL < 0:
		return fmt.Errorf("node_ttl %s and node_purge_ttl %s: want 0 (off) or more", nodeTTL, purgeTTL)
	case purgeTTL > 0 && nodeTTL == 0:
		return fmt.Errorf("node_purge_ttl %s needs node_ttl: nodes are purged that long after node_ttl deactivated them", purgeTTL)
	case purgeTTL > 0 && purgeTTL < nodeTTL:
		return fmt.Errorf("node_purge_ttl %s is shorter than node_ttl %s: want it as long or longer", purgeTTL, nodeTTL)
	}
	return nil
}

// deactivateNode takes node out of the fleet views and rollouts from at
// on; why is for the log.
func (s *Server) deactivateNode(ctx context.Context, node string, at time.Time, why string) error {
	ok, err := s.st.Deactivate(ctx, node, at)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("deactivating %s: %w", node, errUnknownNode)
	}
	s.inactive.set(node, at)
	if !s.leadsRollouts() {
		s.work.add(rolloutWork{Kind: "leave", Node: node})
	} else if err := s.eachControllerDo(ctx, func(c *controller) error { c.leave(node, false); return nil }); err != nil {
		return fmt.Errorf("deactivating %s: taking it out of the rollout: %w", node, err)
	}
	s.log.Info("node deactivated", "node", node, "by", why)
	return nil
}

// activateNode brings a deactivated node back; why is for the log.
func (s *Server) activateNode(ctx context.Context, node, why string) error {
	ok, err := s.st.Activate(ctx, node)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("activating %s: %w", node, errUnknownNode)
	}
	if !s.inactive.drop(node) {
		return nil
	}
	if !s.leadsRollouts() {
		s.work.add(rolloutWork{Kind: "rejoin", Node: node})
	} else if err := s.envControllerDo(ctx, node, func(c *controller) error { c.rejoin(node); return nil }); err != nil {
		return fmt.Errorf("activating %s: putting it back in the rollout: %w", node, err)
	}
	// Audits left it out while it was away.
	s.audits.touch(node)
	s.log.Info("node active again", "node", node, "by", why)
	return nil
}

// purgeNode revokes node's certificates, ends its streams, takes it out
// of the rollout, deletes what the store holds of it and forgets it;
// why is for the log.
func (s *Server) purgeNode(ctx context.Context, node, why string) error {
	_, known, err := s.st.Node(ctx, node)
	if err != nil {
		return fmt.Errorf("purging %s: %w", node, err)
	}
	if _, cached := s.facts.digest(node); !known && !cached {
		return fmt.Errorf("purging %s: %w", node, errUnknownNode)
	}
	// Revoked first: a node that keeps calling would otherwise bring
	// back what the purge deletes. Its streams end by the revocation's
	// callback; the call below ends those of a node with no certificate.
	if err := s.ca.Revoke(ctx, node); err != nil && !errors.Is(err, ca.ErrNotFound) {
		return fmt.Errorf("purging %s: %w", node, err)
	}
	s.watch.revoke(node, "")
	if !s.leadsRollouts() {
		s.work.add(rolloutWork{Kind: "leave", Node: node, Purge: true})
	} else if err := s.eachControllerDo(ctx, func(c *controller) error { c.leave(node, true); return nil }); err != nil {
		return fmt.Errorf("purging %s: taking it out of the rollout: %w", node, err)
	}
	if _, err := s.st.Purge(ctx, node); err != nil {
		return err
	}
	s.forgetNode(node)
	s.rehearse.set(node, nil)
	s.log.Info("node purged", "node", node, "by", why)
	return nil
}

// sweepInterval is how often the node TTLs are applied: a tenth of
// node_ttl (a node is deactivated at most that late), within bounds.
func sweepInterval(nodeTTL time.Duration) time.Duration {
	return min(max(nodeTTL/10, 50*time.Millisecond), 5*time.Minute)
}

// sweepNodes applies node_ttl and node_purge_ttl until ctx ends.
func (s *Server) sweepNodes(ctx context.Context) {
	if s.opts.NodeTTL <= 0 {
		return
	}
	t := time.NewTicker(sweepInterval(s.opts.NodeTTL))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sweep(ctx, now)
		}
	}
}

// sweep deactivates the nodes idle for node_ttl at now, and purges those
// deactivated for node_purge_ttl. It does nothing until the server has
// served for node_ttl: after a server outage longer than that, every
// node would otherwise look idle (or long deactivated) at once, though
// none could check in.
func (s *Server) sweep(ctx context.Context, now time.Time) {
	if s.opts.NodeTTL <= 0 || s.started.IsZero() || now.Sub(s.started) < s.opts.NodeTTL {
		return
	}
	idle, err := s.st.Idle(ctx, now.Add(-s.opts.NodeTTL))
	if err != nil {
		s.log.Warn("finding idle nodes", "err", err)
		return
	}
	for _, node := range idle {
		if err := s.deactivateNode(ctx, node, now, "node_ttl"); err != nil && ctx.Err() == nil {
			s.log.Warn("deactivating an idle node", "node", node, "err", err)
		}
	}
	if s.opts.NodePurgeTTL <= 0 {
		return
	}
	old, err := s.st.Deactivated(ctx, now.Add(-s.opts.NodePurgeTTL))
	if err != nil {
		s.log.Warn("finding nodes to purge", "err", err)
		return
	}
	names := make([]string, 0, len(old))
	for node := range old {
		names = append(names, node)
	}
	slices.Sort(names)
	for _, node := range names {
		if err := s.purgeNode(ctx, node, "node_purge_ttl"); err != nil && ctx.Err() == nil {
			s.log.Warn("purging a deactivated node", "node", node, "err", err)
		}
	}
}

// leave takes node out of the newest rollout: a deactivated node stays
// in it as inactive (out of its stage's counts), a purged one goes. A
// stage that waited only for it moves on.
func (c *controller) leave(node string, purge bool) {
	r := c.cur
	if r == nil {
		return
	}
	n := r.nodes[node]
	if n == nil {
		return
	}
	c.effect(func() { c.s.rehearse.set(node, nil) })
	if purge {
		r.count(n, -1)
		delete(r.nodes, node)
		delete(c.pending.nodes, node)
		if n.Stage >= 0 && n.Stage < len(r.members) {
			r.members[n.Stage] = slices.DeleteFunc(r.members[n.Stage], func(x string) bool { return x == node })
		}
		if n.Rehearse >= 0 && n.Rehearse < len(r.rehearsers) {
			r.rehearsers[n.Rehearse] = slices.DeleteFunc(r.rehearsers[n.Rehearse], func(x string) bool { return x == node })
		}
	} else {
		// A finished rollout's record stays as it ended.
		if n.State == nodeInactive || !r.active() {
			return
		}
		r.setNode(n, nodeInactive, n.Final)
		c.markNode(n)
	}
	if r.active() {
		c.advance(r)
	}
}

// rejoin puts a node that was deactivated during the rollout back in it:
// released at once when its stage has started, pending otherwise.
func (c *controller) rejoin(node string) {
	r := c.cur
	if r == nil || !r.active() {
		return
	}
	n := r.nodes[node]
	if n == nil || n.State != nodeInactive {
		return
	}
	switch n.Decision {
	case decisionAllowed:
		started := n.Stage >= 0 && n.Stage < len(r.rec.Stages)
		if started {
			switch r.rec.Stages[n.Stage].State {
			case stagePending, stageAwaiting:
				started = false
			}
		}
		if started {
			c.release(r, n)
		} else {
			r.setNode(n, nodePending, n.Final)
			if i := n.Rehearse; i >= 0 && i < len(r.rec.Stages) && r.rec.Stages[i].State == stageRehearsing && wantsRehearsal(n) {
				if nc, err := c.candidate(n); err == nil {
					c.effect(func() {
						c.s.rehearse.set(node, nc)
						c.s.watch.notify(node, "", "", true)
					})
				}
			}
		}
	case decisionDenied:
		r.setNode(n, nodeDenied, n.Final)
	case decisionCompileError:
		r.setNode(n, nodeCompileError, n.Final)
	default:
		r.setNode(n, nodeUnchanged, n.Final)
	}
	c.markNode(n)
	c.advance(r)
}
