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
