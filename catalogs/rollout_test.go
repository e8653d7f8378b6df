package catalogs

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/herdcm/herd/facts"
)

// TestRolloutSettings: a herd.toml with [policy] and [[rollout.stage]]
// loads into Settings with positions; a site without them gets the
// defaults.
func TestRolloutSettings(t *testing.T) {
	t.Parallel()
	dir := writeSite(t, map[string]string{"herd.toml": `environment = "staging"

[policy]
on_deny = "node"
timeout = "250ms"

[[rollout.stage]]
name = "rehearsal"
noop = true
percent = 5

[[rollout.stage]]
name = "canary"
nodes = ["web-01", "db-0*"]
when = "facts.os.family == 'debian' && environment == 'staging'"
bake = "2m"
timeout = "45m"
max_failed = 1
approve = "manual"

[[rollout.stage]]
name = "half"
percent = 50
max_failed = "10%"

[[rollout.stage]]
name = "rest"
`})
	s, err := Load(context.Background(), dir, LoadOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (PolicySettings{OnDeny: "node", Timeout: 250 * time.Millisecond}); s.Settings.Policy != want {
		t.Errorf("Policy = %+v, want %+v", s.Settings.Policy, want)
	}
	want := []Stage{
		{Name: "rehearsal", Pos: Pos{"herd.toml", 7, 3}, Noop: true, Percent: 5},
		{Name: "canary", Pos: Pos{"herd.toml", 12, 3}, Nodes: []string{"web-01", "db-0*"}, When: "facts.os.family == 'debian' && environment == 'staging'", Bake: 2 * time.Minute, Timeout: 45 * time.Minute, MaxFailed: 1, Manual: true},
		{Name: "half", Pos: Pos{"herd.toml", 21, 3}, Percent: 50, MaxFailed: 10, MaxFailedPercent: true},
		{Name: "rest", Pos: Pos{"herd.toml", 26, 3}},
	}
	if diff := cmp.Diff(want, s.Settings.Rollout.Stages, cmpopts.IgnoreUnexported(Stage{})); diff != "" {
		t.Errorf("Stages (-want +got):\n%s", diff)
	}
	// The canary's condition sees the site's environment.
	debian := facts.Facts{"os": map[string]any{"family": "debian"}}
	if ok, err := s.Settings.Rollout.Stages[1].Selects("web-01", debian); !ok || err != nil {
		t.Errorf("canary Selects(web-01, debian) = %v, %v; want true", ok, err)
	}

	plain := writeSite(t, nil)
	s, err = Load(context.Background(), plain, LoadOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (PolicySettings{OnDeny: "block", Timeout: DefaultGateTimeout}); s.Settings.Policy != want {
		t.Errorf("default Policy = %+v, want %+v", s.Settings.Policy, want)
	}
	if len(s.Settings.Rollout.Stages) != 0 {
		t.Errorf("default Stages = %v, want none", s.Settings.Rollout.Stages)
	}
}

func TestStageSelects(t *testing.T) {
	t.Parallel()
	debian := facts.Facts{"os": map[string]any{"family": "debian"}, "cpus": int64(8)}
	alpine := facts.Facts{"os": map[string]any{"family": "alpine"}, "cpus": int64(2)}
	// Two names on either side of the 10% line, found by Bucket itself
	// so that the test holds whatever the hash.
	var low, high string
	for i := 0; low == "" || high == ""; i++ {
		n := "node-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		if b := Bucket(n); b < 1000 && low == "" {
			low = n
		} else if b >= 1000 && high == "" {
			high = n
		}
	}
	tests := []struct {
		name  string
		stage Stage
		node  string
		facts facts.Facts
		want  bool
	}{
		{"no selector takes every node", Stage{}, "anything", nil, true},
		{"glob matches", Stage{Nodes: []string{"db-*", "web-0?"}}, "web-01", nil, true},
		{"glob misses", Stage{Nodes: []string{"db-*", "web-0?"}}, "web-100", nil, false},
		{"when holds", Stage{When: "facts.os.family == 'debian'"}, "x", debian, true},
		{"when fails", Stage{When: "facts.os.family == 'debian'"}, "x", alpine, false},
		{"when on node", Stage{When: "node startsWith 'web-'"}, "web-9", nil, true},
		{"percent below", Stage{Percent: 10}, low, nil, true},
		{"percent above", Stage{Percent: 10}, high, nil, false},
		{"percent 100", Stage{Percent: 100}, high, nil, true},
		{"glob and when both needed", Stage{Nodes: []string{"web-*"}, When: "facts.cpus > 4"}, "web-1", alpine, false},
		{"glob and when both hold", Stage{Nodes: []string{"web-*"}, When: "facts.cpus > 4"}, "web-1", debian, true},
		{"glob holds, percent not", Stage{Nodes: []string{"node-*"}, Percent: 10}, high, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.stage.Selects(tt.node, tt.facts)
			if err != nil || got != tt.want {
				t.Errorf("Selects(%q) = %v, %v; want %v", tt.node, got, err, tt.want)
			}
		})
	}
	// A condition that fails to run is an error naming the stage.
	st := Stage{Name: "canary", When: "facts.os.family == 'debian'"}
	if _, err := st.Selects("x", facts.Facts{}); err == nil {
		t.Errorf("Selects with a missing fact = nil error, want one")
	}
	st = Stage{Name: "broken", When: "node +"}
	if _, err := st.Selects("x", nil); err == nil {
		t.Errorf("Selects with an invalid condition = nil error, want one")
	}
}

// TestBucket: stable, in range, spread evenly enough that a percent picks
// about that share, and a larger percent a superset of a smaller one.
func TestBucket(t *testing.T) {
	t.Parallel()
	// Pinned: every server and every release must pick the same nodes.
	// (The first 8 bytes of sha256("web-001"), big-endian, mod 10,000.)
	if got, want := Bucket("web-001"), 9972; got != want {
		t.Errorf("Bucket(web-001) = %d, want %d", got, want)
	}
	const n = 10000
	in10, in50 := 0, 0
	for i := range n {
		name := "node-" + strconv.Itoa(i)
		b := Bucket(name)
		if b < 0 || b >= Buckets {
			t.Fatalf("Bucket(%s) = %d, out of range", name, b)
		}
		s10, _ := (&Stage{Percent: 10}).Selects(name, nil)
		s50, _ := (&Stage{Percent: 50}).Selects(name, nil)
		if s10 && !s50 {
			t.Errorf("%s is in 10%% but not in 50%%", name)
		}
		if s10 {
			in10++
		}
		if s50 {
			in50++
		}
	}
	if in10 < 900 || in10 > 1100 || in50 < 4800 || in50 > 5200 {
		t.Errorf("10%% picked %d and 50%% picked %d of %d nodes, want about 1000 and 5000", in10, in50, n)
	}
}

// TestExampleStages: the example site's canary is the node `herd up`
// converges, and the rest take every other node.
func TestExampleStages(t *testing.T) {
	t.Parallel()
	s := loadExample(t)
	if s.Settings.Policy.OnDeny != "block" {
		t.Errorf("example on_deny = %q, want block", s.Settings.Policy.OnDeny)
	}
	st := s.Settings.Rollout.Stages
	if len(st) != 2 || st[0].Name != "canary" || st[1].Name != "rest" || st[0].Bake <= 0 || st[0].Bake > 10*time.Second {
		t.Fatalf("example stages = %+v, want canary then rest with a short bake", st)
	}
	f := readFactsFile(t, "../examples/site/tests/facts/debian12.json")
	for _, tt := range []struct {
		node         string
		canary, rest bool
	}{{"sandbox", true, true}, {"web-01", true, true}, {"web-02", false, true}, {"db-01", false, true}} {
		c, err1 := st[0].Selects(tt.node, f)
		r, err2 := st[1].Selects(tt.node, f)
		if c != tt.canary || r != tt.rest || err1 != nil || err2 != nil {
			t.Errorf("%s: canary %v (%v), rest %v (%v); want %v, %v", tt.node, c, err1, r, err2, tt.canary, tt.rest)
		}
	}
}
