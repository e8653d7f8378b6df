package catalogs

import "time"

// PolicySettings are herd.toml's [policy] table: how the server treats the
// gates of policies/*.rego.
type PolicySettings struct {
	// OnDeny is what a node's denied catalog holds back: "block" (the
	// default) the whole version, "node" only that node, which keeps its
	// previous catalog while the others go on.
	OnDeny string
	// Timeout bounds one node's gate evaluation (default 500ms). A gate
	// that runs past it denies, never allows.
	Timeout time.Duration
}

// RolloutSettings are herd.toml's [rollout] table.
type RolloutSettings struct {
	// Stages in order. A node takes part in the first non-noop stage that
	// selects it; the nodes none selects form a last stage of their own.
	// Noop (rehearsal) stages select independently of the others.
	Stages []Stage
}

// Stage is one [[rollout.stage]].
type Stage struct {
	Name string
	Pos  Pos
	// Nodes are globs (path.Match) on node names; empty: any name.
	Nodes []string
	// When is a condition on facts, in the language of a role's when;
	// empty: any node.
	When string
	// Percent, when above 0, keeps only the nodes whose stable bucket
	// (a hash of the name, 0 to 9,999) is below Percent × 100: the same
	// nodes are picked by every rollout, and 10 then 50 picks a superset.
	Percent float64
	// Bake is how long the stage's nodes must stay healthy on the new
	// version before the next stage starts.
	Bake time.Duration
	// MaxFailed is how many of the stage's nodes may fail without halting
	// the rollout: a count, or a share when MaxFailedPercent.
	MaxFailed        float64
	MaxFailedPercent bool
	// Noop makes it a rehearsal: its nodes run the new catalog in noop and
	// report what would change; nothing changes.
	Noop bool
	// Manual stages wait for `herd rollout approve` before they start.
	Manual bool
}

// SourceFile is a file of the site read through its confined reader.
type SourceFile struct {
	Path string // relative to the site root, e.g. "policies/gate.rego"
	Data []byte
}

// Change is how one node's catalog changes from a previous one: the
// resources added, removed and changed, by id. A change of a resource's
// source position alone is no change.
type Change struct {
	Added   []ResourceChange `json:"added,omitempty"`
	Removed []ResourceChange `json:"removed,omitempty"`
	Changed []ResourceChange `json:"changed,omitempty"`
}

// ResourceChange is one resource in a Change. Added resources carry their
// attributes in Attrs as "to" values; removed ones their last values as
// "from".
type ResourceChange struct {
	ID    string       `json:"id"`
	Type  string       `json:"type"`
	Name  string       `json:"name"`
	Attrs []AttrChange `json:"attrs,omitempty"`
}

// AttrChange is one attribute's change. Require and notify edges are
// reported as the attributes "require" and "notify". Diff is a unified
// diff when the attribute is file content and both sides could be read.
type AttrChange struct {
	Name string `json:"name"`
	From any    `json:"from,omitempty"`
	To   any    `json:"to,omitempty"`
	Diff string `json:"diff,omitempty"`
}

// TestGate decides a test node's compiled catalog as the server's policy
// gates would, for site tests that expect a denial (RunTests). It returns
// the deny messages.
type TestGate func(node string, f map[string]any, c *Catalog) ([]string, error)
