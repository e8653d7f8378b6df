package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herdcm/herd/catalogs"
)

// canaryPercent is the rollout scenario's first stage: 1 % of the fleet,
// picked by the stable hash of the node name (catalogs.Bucket), as a
// herd.toml `percent = 1` stage picks it.
const canaryPercent = 1

// rolloutStages is appended to the synthetic site's herd.toml: canaries,
// then the rest, with no bake, so that what is measured is the rollout
// controller's own latency (compile, gate, release, health from reports,
// the next release).
var rolloutStages = fmt.Sprintf(`
[[rollout.stage]]
name = "canary"
percent = %d

[[rollout.stage]]
name = "rest"
`, canaryPercent)

// rolloutScenario runs its own server over a synthetic site with two
// rollout stages and -watchers agents that report a good run of every
// catalog they fetch, commits a change to every node, and measures
// commit → canaries converged and commit → fleet converged, from the
// agents' side: a node is converged when the server took the report of
// its run of the new catalog.
func rolloutScenario(ctx context.Context, c config, work string) ([]row, error) {
	site := filepath.Join(work, "rollout-site")
	if err := writeSite(site, c.site); err != nil {
		return nil, err
	}
	ht, err := os.OpenFile(filepath.Join(site, "herd.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("writing the rollout stages: %w", err)
	}
	_, err = ht.WriteString(rolloutStages)
	if cerr := ht.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing the rollout stages: %w", err)
	}
	if err := copyGates(c.gates, filepath.Join(site, "policies")); err != nil {
		return nil, err
	}
	t, err := startTarget(ctx, c, site, filepath.Join(work, "rollout"))
	if err != nil {
		return nil, err
	}
	defer t.stop()
	start := time.Now()
	agents, err := enrollAll(ctx, t, 0, c.watchers, 64)
	if err != nil {
		return nil, err
	}
	defer closeAll(agents)
	progress("rollout: enrolled %d agents in %s", len(agents), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := register(ctx, agents, 128); err != nil {
		return nil, err
	}
	progress("rollout: first check-ins of %d agents in %s", len(agents), time.Since(start).Round(time.Millisecond))
	f := newFleet(t, agents)
	f.report = true
	defer f.stop()
	f.start(ctx)
	if _, err := f.awaitStreams(ctx, len(agents), c.timeout); err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	var canary, rest []int
	for i, a := range agents {
		if catalogs.Bucket(a.name) < canaryPercent*100 {
			canary = append(canary, i)
		} else {
			rest = append(rest, i)
		}
	}
	if len(canary) == 0 {
		return nil, fmt.Errorf("rollout: no node of %d falls in the %d %% canary stage", len(agents), canaryPercent)
	}

	t0 := time.Now()
	if err := commitSite(site, 1); err != nil {
		return nil, err
	}
	if n, err := awaitSome(ctx, f.reported, canary, t0, c.timeout); err != nil {
		return nil, fmt.Errorf("rollout: %d of %d canaries converged: %w", n, len(canary), err)
	}
	can := spreadOf(f.reported, canary, t0)
	progress("rollout: %d canaries converged %s after the commit", len(canary), ms(can.max))
	if n, err := awaitSome(ctx, f.reported, rest, t0, c.timeout); err != nil {
		return nil, fmt.Errorf("rollout: %d of %d other nodes converged: %w", n, len(rest), err)
	}
	all := spread(f.reported, t0)
	// The stages held: no other node heard of its new catalog before the
	// last canary's report was taken.
	firstRest := firstOf(f.heard, rest, t0)
	held := "held"
	if firstRest < can.max {
		held = "NOT HELD"
	}
	progress("rollout: fleet converged %s after the commit; first non-canary release %s (stages %s)", ms(all.max), ms(firstRest), held)
	size := fmt.Sprintf("%d agents (%d canaries), server %s", len(agents), len(canary), c.mode)
	return []row{
		{Scenario: "commit → canaries converged (rollout, 1 % stage)", Size: size,
			Measured: fmt.Sprintf("%.1f s", can.max.Seconds()), Target: "≤ 5 s", Verdict: verdict(can.max.Seconds(), 5, false),
			Detail: fmt.Sprintf("from the write to the last canary's report taken; includes the 500 ms debounce, the fleet's compile and gate; canary p50 %s", ms(can.p50))},
		{Scenario: "commit → fleet converged through 2 stages, no bake", Size: size,
			Measured: fmt.Sprintf("%.1f s", all.max.Seconds()), Target: "≤ 15 s", Verdict: verdict(all.max.Seconds(), 15, false),
			Detail: fmt.Sprintf("first non-canary release %s after the commit, %s after the last canary's report (stages %s); p50 %s, p99 %s; %d fetch retries (busy), %d reports failed",
				ms(firstRest), ms(firstRest-can.max), held, ms(all.p50), ms(all.p99), f.fetchRetries.Load(), f.reportErrors.Load())},
	}, nil
}

// awaitSome waits until the stamps in ts of the agents idx are at or
// after since.
func awaitSome(ctx context.Context, ts []atomic.Int64, idx []int, since time.Time, limit time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		done := 0
		for _, i := range idx {
			if ts[i].Load() >= since.UnixNano() {
				done++
			}
		}
		if done == len(idx) {
			return done, nil
		}
		select {
		case <-ctx.Done():
			return done, errors.New("timed out")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// spreadOf is spread over the agents idx only.
func spreadOf(ts []atomic.Int64, idx []int, since time.Time) summary {
	var d []time.Duration
	for _, i := range idx {
		if v := ts[i].Load(); v >= since.UnixNano() {
			d = append(d, time.Duration(v-since.UnixNano()))
		}
	}
	return summarize(d)
}

// firstOf is the earliest stamp of the agents idx at or after since, as a
// time since it (-1 when none).
func firstOf(ts []atomic.Int64, idx []int, since time.Time) time.Duration {
	best := time.Duration(-1)
	for _, i := range idx {
		if v := ts[i].Load(); v >= since.UnixNano() {
			if d := time.Duration(v - since.UnixNano()); best < 0 || d < best {
				best = d
			}
		}
	}
	return best
}

// copyGates copies the gates (not the policy tests) of dir into the
// synthetic site, so that the rollout is gated as a real site's would be.
func copyGates(dir, dst string) error {
	if dir == "" {
		return nil
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.rego"))
	if err != nil || len(names) == 0 {
		return fmt.Errorf("rollout: no gates in %s (run from the repository root, or -gates \"\")", dir)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.rego") {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil {
			return fmt.Errorf("rollout: reading a gate: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(n)), b, 0o644); err != nil {
			return fmt.Errorf("rollout: %w", err)
		}
	}
	return nil
}
