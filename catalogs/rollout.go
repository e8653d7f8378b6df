package catalogs

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/herdcm/herd/facts"
)

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
	// Timeout, when above 0, is how long a node the stage released (or
	// asked to rehearse) may take to report that run: past it the node
	// counts as failed, and MaxFailed decides whether the rollout halts.
	// Zero waits as long as it takes.
	Timeout time.Duration
	// MaxFailed is how many of the stage's nodes may fail without halting
	// the rollout: a count, or a share when MaxFailedPercent.
	MaxFailed        float64
	MaxFailedPercent bool
	// Noop makes it a rehearsal: its nodes run the new catalog in noop and
	// report what would change; nothing changes.
	Noop bool
	// Manual stages wait for `herd rollout approve` before they start.
	Manual bool

	// cond is When compiled at load, and environment the site's, which
	// conditions see as environment.
	cond        *condition
	environment string
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

// DefaultGateTimeout bounds one node's gate evaluation when herd.toml's
// [policy] names no timeout.
const DefaultGateTimeout = 500 * time.Millisecond

// maxGateTimeout caps [policy] timeout: a gate is evaluated per node on
// every version, and minutes per node would stall a fleet's rollout.
const maxGateTimeout = time.Minute

// Buckets is how many buckets Bucket spreads node names over: a stage's
// percent p selects the buckets below p × Buckets / 100.
const Buckets = 10000

// Bucket returns node's stable bucket, 0 to 9,999: the first eight bytes of
// the SHA-256 of its name, big-endian, modulo 10,000. Every rollout (and
// every server) picks the same nodes for the same percent, and a larger
// percent picks a superset of a smaller one.
func Bucket(node string) int {
	sum := sha256.Sum256([]byte(node))
	return int(binary.BigEndian.Uint64(sum[:8]) % Buckets)
}

// Selects reports whether the stage takes node: its name matches one of
// the globs (when any), its facts satisfy When (when set), and its bucket
// is below Percent (when above 0). A stage with none of them selects every
// node. An error is When failing to evaluate on these facts.
func (st *Stage) Selects(node string, f facts.Facts) (bool, error) {
	if len(st.Nodes) > 0 && !matchesAny(st.Nodes, node) {
		return false, nil
	}
	if st.Percent > 0 && float64(Bucket(node)) >= st.Percent*Buckets/100 {
		return false, nil
	}
	if st.When == "" {
		return true, nil
	}
	c := st.cond
	if c == nil {
		// A stage built outside Load (a copy kept by the server):
		// compile it now rather than cache it, so that Selects stays
		// safe to call from many goroutines.
		var err error
		if c, err = compileCondition(st.When, st.Pos); err != nil {
			return false, fmt.Errorf("stage %q: %w", st.Name, err)
		}
	}
	ok, err := c.eval(compileEnv(node, st.environment, f, nil))
	if err != nil {
		return false, fmt.Errorf("stage %q: %w", st.Name, err)
	}
	return ok, nil
}

// selectsAll reports whether the stage has no selector at all (or a
// percent of 100), so that it takes every node.
func (st *Stage) selectsAll() bool {
	return len(st.Nodes) == 0 && st.When == "" && (st.Percent == 0 || st.Percent >= 100)
}

func matchesAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// loadPolicy reads herd.toml's [policy] table.
func (l *loader) loadPolicy(r reader) {
	p := &l.site.Settings.Policy
	p.OnDeny = "block"
	p.Timeout = DefaultGateTimeout
	if !r.table("policy") {
		return
	}
	r.known("policy", "on_deny", "timeout")
	if v, ok := r.str("policy.on_deny"); ok {
		switch v {
		case "block", "node":
			p.OnDeny = v
		default:
			r.bad("policy.on_deny", "on_deny %q: want \"block\" (a denied node holds back the whole version) or \"node\" (only that node keeps its previous catalog)", v)
		}
	}
	if d, ok := r.duration("policy.timeout"); ok {
		if d <= 0 || d > maxGateTimeout {
			r.bad("policy.timeout", "timeout %q: want a duration above 0 and at most %s, like \"500ms\"", d, maxGateTimeout)
		} else {
			p.Timeout = d
		}
	}
}

// loadRollout reads herd.toml's [rollout] table and its [[rollout.stage]]s.
func (l *loader) loadRollout(r reader) {
	if !r.table("rollout") {
		return
	}
	r.known("rollout", "stage")
	names := map[string]Pos{}
	var stages []Stage
	before := len(l.diags)
	for i := range r.tables("rollout.stage") {
		p := fmt.Sprintf("rollout.stage[%d]", i)
		r.known(p, "name", "nodes", "when", "percent", "bake", "timeout", "max_failed", "noop", "approve")
		st := Stage{Pos: r.doc.posOf(p), environment: l.site.Settings.Environment}
		if name, ok := r.str(p + ".name"); ok {
			switch first, dup := names[name]; {
			case !validName(name):
				r.bad(p+".name", "stage name %q: want letters, digits, '-', '_' or '.'", name)
			case dup:
				r.bad(p+".name", "stage name %q is used twice (first at %s); stages are named in `herd rollout` and must be unique", name, first)
			default:
				names[name] = r.doc.posOf(p + ".name")
			}
			st.Name = name
		} else if _, set := r.get(p + ".name"); !set {
			r.bad(p, "[[rollout.stage]] #%d: missing name = \"…\"", i+1)
		}
		if globs, ok := r.strs(p + ".nodes"); ok {
			for j, g := range globs {
				if _, err := path.Match(g, ""); err != nil || g == "" {
					r.bad(fmt.Sprintf("%s.nodes[%d]", p, j), "nodes: bad glob %q: want a pattern like \"web-*\"", g)
				}
			}
			st.Nodes = globs
		}
		if src, ok := r.str(p + ".when"); ok {
			c, err := compileCondition(src, r.doc.posOf(p+".when"))
			if err != nil {
				l.diags = append(l.diags, err.(Diagnostic))
			}
			st.When, st.cond = src, c
		}
		if v, ok := r.get(p + ".percent"); ok {
			pct, isNum := number(v)
			switch {
			case !isNum:
				r.bad(p+".percent", "percent: want a number above 0 and at most 100, got %s", typeName(v))
			case !(pct > 0 && pct <= 100):
				r.bad(p+".percent", "percent %v: want a number above 0 and at most 100", v)
			default:
				st.Percent = pct
			}
		}
		if d, ok := r.duration(p + ".bake"); ok {
			if d < 0 {
				r.bad(p+".bake", "bake %q: want a duration of 0 or more, like \"10m\"", d)
			} else {
				st.Bake = d
			}
		}
		if d, ok := r.duration(p + ".timeout"); ok {
			if d <= 0 {
				r.bad(p+".timeout", "timeout %q: want a duration above 0, like \"30m\" (leave it out to wait as long as it takes)", d)
			} else {
				st.Timeout = d
			}
		}
		if v, ok := r.get(p + ".max_failed"); ok {
			st.MaxFailed, st.MaxFailedPercent = l.maxFailed(r, p+".max_failed", v)
		}
		st.Noop, _ = r.bool(p + ".noop")
		if v, ok := r.str(p + ".approve"); ok {
			switch v {
			case "manual":
				st.Manual = true
			case "auto":
			default:
				r.bad(p+".approve", "approve %q: want \"manual\" (wait for `herd rollout approve`) or \"auto\"", v)
			}
		}
		stages = append(stages, st)
	}
	// A stage that takes every node leaves nothing to the stages after
	// it: a site that lists them believes in a canary that never comes.
	// (Only when every stage is well written: a refused percent must not
	// also read as "every node".)
	for i, st := range stages {
		if len(l.diags) > before {
			break
		}
		if st.Noop || !st.selectsAll() || i == len(stages)-1 {
			continue
		}
		for _, later := range stages[i+1:] {
			if !later.Noop {
				r.bad(fmt.Sprintf("rollout.stage[%d]", i), "stage %q selects every node (no nodes, when or percent below 100), so stage %q after it would get none; put it last", st.Name, later.Name)
				break
			}
		}
	}
	l.site.Settings.Rollout.Stages = stages
}

// maxFailed reads a stage's max_failed: a count, or a share like "10%".
func (l *loader) maxFailed(r reader, p string, v any) (float64, bool) {
	const want = "want a count of nodes (like 2) or a share of the stage's nodes (like \"10%\")"
	switch v := v.(type) {
	case int64:
		if v < 0 {
			r.bad(p, "max_failed %d: %s", v, want)
			return 0, false
		}
		return float64(v), false
	case string:
		num, isPct := strings.CutSuffix(strings.TrimSpace(v), "%")
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if !isPct || err != nil || math.IsNaN(f) || f < 0 || f > 100 {
			r.bad(p, "max_failed %q: %s", v, want)
			return 0, false
		}
		return f, true
	}
	r.bad(p, "max_failed: %s, got %s", want, typeName(v))
	return 0, false
}

// number returns a TOML integer or float as a float64.
func number(v any) (float64, bool) {
	switch v := v.(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, !math.IsNaN(v)
	}
	return 0, false
}
