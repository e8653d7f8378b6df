package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRolloutRoundTrip: a rollout, its nodes and its approvals written in
// one step read back as written, survive a reopen, and a later step
// updates them; the supersede marks the older rollout.
func TestRolloutRoundTrip(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		path := testLoc(t)
		s := openAt(t, path, Options{})
		if err := s.PutCatalogs(ctx, []CatalogRecord{
			{Etag: "sha256:old", Version: "v1", Catalog: []byte(`{}`), Signature: []byte("s1")},
			{Etag: "sha256:new", Version: "v2", Catalog: []byte(`{"x":1}`), Signature: []byte("s2")},
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCatalog(ctx, "web-01", "sha256:old", "v1", []byte(`{}`), []byte("s1")); err != nil {
			t.Fatal(err)
		}
		r := Rollout{Version: "v2", PreviousVersion: "v1", State: "running", Created: at(1), Updated: at(1), Fleet: []byte(`{"nodes":2}`),
			Stages: []RolloutStage{{Name: "canary", Nodes: []string{"web-0*"}, Bake: time.Minute, MaxFailed: 10, MaxFailedPercent: true, State: "releasing", Started: at(2)},
				{Name: "rest", State: "pending"}}}
		nodes := []RolloutNode{
			{Node: "web-01", Stage: 0, Rehearse: -1, Decision: "allowed", State: "released", PreviousEtag: "sha256:old", Etag: "sha256:new",
				Change: []byte(`{"changed":[{"id":"file:/x"}]}`), Warn: []PolicyMessage{{Message: "careful", Resource: "file:/x"}}},
			{Node: "web-02", Stage: 1, Rehearse: -1, Decision: "denied", State: "denied", Deny: []PolicyMessage{{Message: "no"}}},
			{Node: "web-03", Stage: 1, Rehearse: 0, Decision: "compile-error", State: "compile-error", CompileError: "roles/x.toml:1: bad",
				Rehearsal: &Summary{Resources: 3, Changed: 1}, Failures: []string{"file:/y: denied"}},
		}
		id, err := s.WriteRollout(ctx, RolloutWrite{Rollout: &r, Nodes: nodes, Approvals: []Approval{{Node: "web-01", Etag: "sha256:new"}}})
		if err != nil || id == 0 {
			t.Fatalf("WriteRollout = %d, %v", id, err)
		}
		r.ID = id
		s.Close()
		s = openAt(t, path, Options{})

		got, ok, err := s.Rollout(ctx, 0)
		if err != nil || !ok {
			t.Fatalf("Rollout(0) = %v, %v", ok, err)
		}
		if d := cmp.Diff(r, got); d != "" {
			t.Errorf("Rollout (-want +got):\n%s", d)
		}
		all, err := s.RolloutNodes(ctx, RolloutNodeQuery{Rollout: id, WithChange: true})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(nodes, all); d != "" {
			t.Errorf("RolloutNodes (-want +got):\n%s", d)
		}
		n, _, err := s.Node(ctx, "web-01")
		if err != nil || n.CatalogEtag != "sha256:new" || n.PreviousEtag != "sha256:old" {
			t.Errorf("after the approval web-01 has %q (previous %q), %v; want sha256:new (sha256:old)", n.CatalogEtag, n.PreviousEtag, err)
		}

		for _, tc := range []struct {
			name string
			q    RolloutNodeQuery
			want []string
		}{
			{"interesting", RolloutNodeQuery{Rollout: id, Interesting: true}, []string{"web-02", "web-03"}},
			{"changed", RolloutNodeQuery{Rollout: id, Changed: true}, []string{"web-01"}},
			{"page", RolloutNodeQuery{Rollout: id, After: "web-01", Limit: 1}, []string{"web-02"}},
			{"through", RolloutNodeQuery{Rollout: id, Through: "web-02"}, []string{"web-01", "web-02"}},
			{"one", RolloutNodeQuery{Rollout: id, Node: "web-03"}, []string{"web-03"}},
		} {
			ns, err := s.RolloutNodes(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, n := range ns {
				names = append(names, n.Node)
				if n.Change != nil && !tc.q.WithChange {
					t.Errorf("%s: change read without WithChange", tc.name)
				}
			}
			if d := cmp.Diff(tc.want, names); d != "" {
				t.Errorf("RolloutNodes(%s) (-want +got):\n%s", tc.name, d)
			}
		}
		counts, err := s.RolloutCounts(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(counts) != 3 {
			t.Errorf("RolloutCounts = %+v, want 3 groups", counts)
		}

		// A newer rollout supersedes it in the same write.
		r2 := Rollout{Version: "v3", PreviousVersion: "v2", State: "running", Created: at(5), Updated: at(5)}
		id2, err := s.WriteRollout(ctx, RolloutWrite{Rollout: &r2, Superseded: id})
		if err != nil {
			t.Fatal(err)
		}
		old, _, err := s.Rollout(ctx, id)
		if err != nil || old.State != "superseded" || old.SupersededBy != id2 {
			t.Errorf("superseded rollout = %s by %d, %v; want superseded by %d", old.State, old.SupersededBy, err, id2)
		}
		list, err := s.Rollouts(ctx, 0, 10)
		if err != nil || len(list) != 2 || list[0].ID != id2 {
			t.Errorf("Rollouts = %d rollouts, first %v, %v; want 2, newest first", len(list), list, err)
		}
	})
}

// TestWriteRolloutIsOneWrite: a rollout of thousands of nodes is one
// transaction, not one per node.
func TestWriteRolloutIsOneWrite(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		nodes := make([]RolloutNode, 10000)
		for i := range nodes {
			nodes[i] = RolloutNode{Node: fmt.Sprintf("n-%05d", i), Rehearse: -1, Decision: "allowed", State: "pending", Etag: "sha256:c"}
		}
		before := s.Stats().Batches
		if _, err := s.WriteRollout(ctx, RolloutWrite{Rollout: &Rollout{Version: "v", State: "running"}, Nodes: nodes}); err != nil {
			t.Fatal(err)
		}
		if b := s.Stats().Batches - before; b != 1 {
			t.Errorf("writing a 10,000-node rollout took %d transactions, want 1", b)
		}
	})
}

// TestNoopReportKeepsAppliedVersion: a noop run is the node's last run
// (marked noop), but what it applied, etag and version, stays the last
// real run's.
func TestNoopReportKeepsAppliedVersion(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		for _, r := range []Report{
			{RunID: "1", Version: "v1", CatalogDigest: "sha256:a", Started: at(1), Summary: Summary{Resources: 2, Changed: 2}},
			{RunID: "2", Version: "v2", CatalogDigest: "sha256:b", Noop: true, Started: at(2), Summary: Summary{Resources: 2, Changed: 1}},
		} {
			if _, err := s.SaveReport(ctx, "web-01", r); err != nil {
				t.Fatal(err)
			}
		}
		n, _, err := s.Node(ctx, "web-01")
		if err != nil {
			t.Fatal(err)
		}
		if !n.LastNoop || n.AppliedEtag != "sha256:a" || n.AppliedVersion != "v1" {
			t.Errorf("after a noop run: last noop %v, applied %s at %s; want true, sha256:a at v1", n.LastNoop, n.AppliedEtag, n.AppliedVersion)
		}
	})
}

// TestNewestRolloutByEnvironment: each environment's newest rollout is
// its own, whatever other environments rolled out since; a rollout from
// before environments ("") counts for whoever asks for "".
func TestNewestRolloutByEnvironment(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		testNewestRolloutByEnvironment(t)
	})
}

func testNewestRolloutByEnvironment(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, testLoc(t), Options{})
	for i, env := range []string{"", "production", "staging", "staging", "production", "testing"} {
		r := Rollout{Version: fmt.Sprintf("v%d", i+1), Environment: env, State: "done", Created: at(i), Updated: at(i), Stages: []RolloutStage{}}
		if _, err := s.WriteRollout(ctx, RolloutWrite{Rollout: &r}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		envs []string
		want string // version, "" for none
	}{
		{[]string{"production"}, "v5"},
		{[]string{"staging"}, "v4"},
		{[]string{"production", ""}, "v5"},
		{[]string{""}, "v1"},
		{[]string{"qa"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		r, ok, err := s.NewestRollout(ctx, tt.envs...)
		if err != nil {
			t.Fatalf("NewestRollout(%q): %v", tt.envs, err)
		}
		got := ""
		if ok {
			got = r.Version
			if len(tt.envs) > 0 && r.Environment != tt.envs[0] && r.Environment != "" {
				t.Errorf("NewestRollout(%q).Environment = %q", tt.envs, r.Environment)
			}
		}
		if got != tt.want {
			t.Errorf("NewestRollout(%q) = %q, want %q", tt.envs, got, tt.want)
		}
	}
}

// TestPutCatalogs: a batch stores each catalog once, the same etag twice
// in one batch included (the last signature wins, as one by one), and a
// later batch re-signs without touching the bytes.
func TestPutCatalogs(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		must(t, s.PutCatalogs(ctx, []CatalogRecord{
			{Etag: "sha256:a", Version: "v1", Catalog: []byte(`{"a":1}`), Signature: []byte("s1")},
			{Etag: "sha256:b", Version: "v1", Catalog: []byte(`{"b":1}`)},
			{Etag: "sha256:a", Version: "v1", Catalog: []byte(`{"a":1}`), Signature: []byte("s2")},
		}))
		must(t, s.PutCatalogs(ctx, []CatalogRecord{{Etag: "sha256:b", Version: "v1", Catalog: []byte(`{"b":1}`), Signature: []byte("s3")}}))
		for etag, want := range map[string]CatalogRecord{
			"sha256:a": {Etag: "sha256:a", Version: "v1", Catalog: []byte(`{"a":1}`), Signature: []byte("s2")},
			"sha256:b": {Etag: "sha256:b", Version: "v1", Catalog: []byte(`{"b":1}`), Signature: []byte("s3")},
		} {
			got, ok, err := s.CatalogByEtag(ctx, etag)
			if err != nil || !ok {
				t.Fatalf("CatalogByEtag(%s) = %v, %v", etag, ok, err)
			}
			got.Saved = time.Time{}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("CatalogByEtag(%s) (-want +got):\n%s", etag, d)
			}
		}
	})
}
