package server

import (
	"context"
	"time"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/policies"
)

// policyGate is what the server asks of a site version's prepared gate
// (a *policies.Gate).
type policyGate interface {
	Empty() bool
	Digest() string
	Reads(part string) bool
	Evaluate(ctx context.Context, in policies.Input) (policies.Decision, error)
}

// prepareGate prepares the gate of a site version's policies once; the
// timeout bounds each node's evaluation (policies' default when 0).
func prepareGate(ctx context.Context, files []catalogs.SourceFile, timeout time.Duration) (policyGate, error) {
	g, err := policies.Prepare(ctx, files, policies.Options{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// summarize builds the fleet summary the gates read.
func summarize(version, previous string, nodes int, changes map[string]catalogs.Change) *policies.Fleet {
	return policies.Summarize(version, previous, nodes, changes)
}

// judgedBefore reports whether a node's approved catalog of version prev
// was judged by policies of digest: a catalog is approved only when its
// version's gate allowed it, so then the gate need judge only the change
// (policies.Input.Judged). Only versions this server gated count, so the
// first rollout after a restart judges every resource once again.
func (s *Server) judgedBefore(prev, digest string) bool {
	if prev == "" || digest == "" {
		return false
	}
	d, ok := s.judged.Load(prev)
	return ok && d.(string) == digest
}

// gatedVersion records that st's gate judged its catalogs.
func (s *Server) gatedVersion(st *siteState) {
	if st.gateErr == "" && st.gate != nil && !st.gate.Empty() {
		s.judged.Store(st.version, st.gate.Digest())
	}
}
