package policies

import (
	"context"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// TestGate adapts g for the site tests (catalogs.Site.RunTests): each test
// node is gated as a new node the server has never served, so input.previous
// is null, input.change has every resource added, and input.fleet
// summarizes a rollout of that one node. Its result is the deny messages;
// a gate error fails the test. An empty gate gives nil, which RunTests
// reads as "no gate loaded".
func (g *Gate) TestGate(ctx context.Context) catalogs.TestGate {
	if g.Empty() {
		return nil
	}
	return func(node string, f map[string]any, c *catalogs.Catalog) ([]string, error) {
		change := catalogs.DiffBrief(nil, c)
		d, err := g.Evaluate(ctx, Input{
			Node:    node,
			Facts:   facts.Facts(f),
			Catalog: c,
			Change:  change,
			Fleet:   Summarize(c.Version, "", 1, map[string]catalogs.Change{node: change}),
		})
		if err != nil {
			return nil, err
		}
		out := make([]string, len(d.Deny))
		for i, m := range d.Deny {
			out[i] = m.String()
		}
		return out, nil
	}
}
