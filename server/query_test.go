package server

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/server/store"
)

// queryFleet starts a server that knows four nodes, checked in over real
// TLS with their facts: two Debian web nodes (2 and 8 GB), a Red Hat db
// node whose last run failed, and a node with no os fact that claims
// status "failed" in its facts.
func queryFleet(t *testing.T) (*Server, herdv1.AdminClient) {
	t.Helper()
	s, _ := startServer(t)
	fleet := map[string]map[string]any{
		"web-01":  {"os": map[string]any{"family": "debian", "release": map[string]any{"major": "12"}}, "memory": map[string]any{"total_bytes": 2e9}},
		"web-02":  {"os": map[string]any{"family": "debian", "release": map[string]any{"major": "11"}}, "memory": map[string]any{"total_bytes": 8e9}},
		"db-01":   {"os": map[string]any{"family": "redhat"}, "memory": map[string]any{"total_bytes": 16e9}},
		"bare-01": {"status": "failed", "name": "web-99", "tags": []any{"a", "b"}},
	}
	for name, f := range fleet {
		cert := enroll(t, s, name)
		checkin(t, herdv1.NewNodeClient(dial(t, s, &cert)), f, "")
	}
	ctx := context.Background()
	if _, err := s.st.SaveReport(ctx, "db-01", store.Report{RunID: "r1", Started: time.Now(), Summary: store.Summary{Resources: 3, Failed: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.st.SaveReport(ctx, "web-02", store.Report{RunID: "r2", Started: time.Now(), Summary: store.Summary{Resources: 3, Changed: 2}}); err != nil {
		t.Fatal(err)
	}
	adm := admin(t, s)
	return s, herdv1.NewAdminClient(dial(t, s, &adm))
}

// listWhere follows every page of ListNodes with where and returns the
// names listed.
func listWhere(t *testing.T, ac herdv1.AdminClient, where string, size int32) ([]string, error) {
	t.Helper()
	var names []string
	for token := ""; ; {
		resp, err := ac.ListNodes(context.Background(), &herdv1.ListNodesRequest{Where: where, PageSize: size, PageToken: token})
		if err != nil {
			return nil, err
		}
		for _, n := range resp.Nodes {
			names = append(names, n.Name)
		}
		if token = resp.NextPageToken; token == "" {
			return names, nil
		}
	}
}

func TestListNodesWhere(t *testing.T) {
	t.Parallel()
	_, ac := queryFleet(t)
	all := []string{"bare-01", "db-01", "web-01", "web-02"}
	tests := []struct {
		where string
		want  []string
	}{
		{``, all},
		{`os.family == "debian" && memory.total_bytes < 4e9`, []string{"web-01"}},
		{`facts.os.family == "debian"`, []string{"web-01", "web-02"}},
		{`os?.family != "debian"`, []string{"bare-01", "db-01"}},
		{`os.release.major in ["11", "12"]`, []string{"web-01", "web-02"}},
		{`"b" in tags`, []string{"bare-01"}},
		// A node on which the expression fails (no os fact) is not listed.
		{`os.family != "redhat"`, []string{"web-01", "web-02"}},
		// Status: the server's word wins over a fact of the same name.
		{`status == "failed"`, []string{"db-01"}},
		{`facts.status == "failed"`, []string{"bare-01"}},
		{`name startsWith "web-"`, []string{"web-01", "web-02"}},
		{`status == "changed" && changed == 2`, []string{"web-02"}},
		{`status == "unreported"`, []string{"bare-01", "web-01"}},
		{`failed > 0 || changed > 0`, []string{"db-01", "web-02"}},
		{`checkin_age >= 0 && checkin_age < 3600`, all},
		{`now() - last_checkin < duration("1h")`, all},
		{`version != "" && compile_error == ""`, all},
		{`applied_version == "" && rollout_state == "" && !noop`, all},
		{`false`, nil},
	}
	for _, tt := range tests {
		got, err := listWhere(t, ac, tt.where, 0)
		if err != nil {
			t.Errorf("ListNodes(where %q): %v", tt.where, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ListNodes(where %q) (-want +got):\n%s", tt.where, diff)
		}
	}
}

func TestListNodesWhereErrors(t *testing.T) {
	t.Parallel()
	_, ac := queryFleet(t)
	tests := []struct {
		where string
		want  string // in the message
	}{
		{`os.family ==`, "column 12"},
		{`name > 3`, "column 6"},
		{`(os.family == "debian"`, "column"},
		{`"debian"`, "expected bool"},
		{`last_checkin > 5`, "mismatched types"},
		{strings.Repeat("a", maxWhereLen+1), "more than"},
	}
	for _, tt := range tests {
		_, err := ac.ListNodes(context.Background(), &herdv1.ListNodesRequest{Where: tt.where})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ListNodes(where %.40q) = %v; want InvalidArgument with %q", tt.where, err, tt.want)
		}
		_, err = ac.FleetFacts(context.Background(), &herdv1.FleetFactsRequest{Fact: "os", Where: tt.where})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("FleetFacts(where %.40q) = %v; want InvalidArgument with %q", tt.where, err, tt.want)
		}
	}
}

func TestFleetFacts(t *testing.T) {
	t.Parallel()
	_, ac := queryFleet(t)
	tests := []struct {
		fact, where string
		want        map[string]string // node → value JSON; "" when missing
	}{
		{"os.family", "", map[string]string{"bare-01": "", "db-01": `"redhat"`, "web-01": `"debian"`, "web-02": `"debian"`}},
		{"os.release.major", `os?.family == "debian"`, map[string]string{"web-01": `"12"`, "web-02": `"11"`}},
		{"memory", `name == "db-01"`, map[string]string{"db-01": `{"total_bytes":16000000000}`}},
		{"tags", `facts.tags != nil`, map[string]string{"bare-01": `["a","b"]`}},
		// The status is the server's; the fact of that name is the node's.
		{"status", `status == "failed"`, map[string]string{"db-01": ""}},
	}
	for _, tt := range tests {
		got := map[string]string{}
		for token := ""; ; {
			resp, err := ac.FleetFacts(context.Background(), &herdv1.FleetFactsRequest{Fact: tt.fact, Where: tt.where, PageSize: 1, PageToken: token})
			if err != nil {
				t.Fatalf("FleetFacts(%s where %q): %v", tt.fact, tt.where, err)
			}
			if len(resp.Facts) > 1 {
				t.Fatalf("FleetFacts(%s, page size 1) gave %d", tt.fact, len(resp.Facts))
			}
			for _, f := range resp.Facts {
				got[f.Node] = string(f.ValueJson)
			}
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("FleetFacts(%s where %q) (-want +got):\n%s", tt.fact, tt.where, diff)
		}
	}
	if _, err := ac.FleetFacts(context.Background(), &herdv1.FleetFactsRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("FleetFacts(no fact) = %v, want InvalidArgument", err)
	}
}

// TestListNodesWherePaged: with a filter, pages hold at most page_size
// matches, a call reads a bounded number of nodes (a page may come back
// short, even empty, with a token), and following the tokens lists every
// match once, in name order: over facts in memory (a facts-only
// expression), and over the store's rows (one that reads status, or one
// that is true for a node without facts).
func TestListNodesWherePaged(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t)
	ctx := context.Background()
	const nodes = 2600
	noFacts := func(i int) bool { return i%100 == 99 }
	debian := func(i int) bool { return !noFacts(i) && (i == 7 || i == 1400 || i >= 1500 && i%3 == 0) }
	for i := range nodes {
		name := fmt.Sprintf("n-%05d", i)
		if err := s.st.Checkin(ctx, name, time.Now(), "v", time.Now()); err != nil {
			t.Fatal(err)
		}
		if noFacts(i) {
			continue // a node the server holds no facts for
		}
		family := "redhat"
		// Matches come in clusters with long gaps between them: the first
		// 1,500 nodes hold only two.
		if debian(i) {
			family = "debian"
		}
		s.facts.put(name, cachedFacts{digest: name, facts: facts.Facts{"os": map[string]any{"family": family}}})
	}
	// Facts of a node the store does not know: never listed.
	s.facts.put("n-01500x", cachedFacts{digest: "x", facts: facts.Facts{"os": map[string]any{"family": "debian"}}})
	s.queryScan = 500
	adm := admin(t, s)
	ac := herdv1.NewAdminClient(dial(t, s, &adm))
	tests := []struct {
		where string
		want  func(i int) bool
	}{
		{`os.family == "debian"`, debian},
		{`facts.os.family == "debian"`, debian},
		{`os.family == "debian" && name != ""`, debian},
		{`os?.family != "redhat"`, func(i int) bool { return debian(i) || noFacts(i) }},
	}
	for _, tt := range tests {
		var want []string
		for i := range nodes {
			if tt.want(i) {
				want = append(want, fmt.Sprintf("n-%05d", i))
			}
		}
		var got []string
		short := 0
		for token := ""; ; {
			resp, err := ac.ListNodes(ctx, &herdv1.ListNodesRequest{Where: tt.where, PageSize: 100, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Nodes) > 100 {
				t.Fatalf("where %q: a page of 100 holds %d nodes", tt.where, len(resp.Nodes))
			}
			if len(resp.Nodes) < 100 && resp.NextPageToken != "" {
				short++
			}
			for _, n := range resp.Nodes {
				got = append(got, n.Name)
			}
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
		if !sort.StringsAreSorted(got) {
			t.Errorf("where %q: pages are not in name order", tt.where)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("where %q: pages (-want +got):\n%s", tt.where, diff)
		}
		// 1,500 nodes with few matches, read 500 at a time: at least two
		// short pages.
		if short < 2 {
			t.Errorf("where %q: %d short pages with a token, want at least 2 (the scan bound of 500 nodes per call)", tt.where, short)
		}
	}
}

// TestWhereDeclMatchesValues: every status name declared to the compiler
// has a value of the declared type, so that what type-checks runs.
func TestWhereDeclMatchesValues(t *testing.T) {
	t.Parallel()
	s := &Server{}
	s.facts.init()
	s.compiles.init()
	n := store.Node{Name: "a", LastCheckin: time.Now(), LastReport: time.Now()}
	for name, decl := range whereDecl {
		v, ok := s.whereValue(name, n, nil, "", time.Now())
		if !ok || fmt.Sprintf("%T", v) != fmt.Sprintf("%T", decl) {
			t.Errorf("whereValue(%s) = %T, %v; declared %T", name, v, ok, decl)
		}
	}
}

// FuzzListNodesWhere: the where entry point, as ListNodes and FleetFacts
// run it: any text either compiles or is InvalidArgument, and a compiled
// one runs over a node's env, in full or by its names, without a panic.
func FuzzListNodesWhere(f *testing.F) {
	for _, s := range []string{`os.family == "debian" && memory.total_bytes < 4e9`, `status == "failed" || checkin_age > 3600`,
		`now() - last_checkin > duration("1h")`, `$env["os"] != nil`, `facts.tags[0] == "a"`, `name matches "^web-[0-9]+$"`,
		`os.family ==`, `name > 3`, "\x1b[2J", `1..100000000 | all(# > 0)`} {
		f.Add(s)
	}
	s := &Server{}
	s.facts.init()
	s.compiles.init()
	n := store.Node{Name: "web-01", LastCheckin: time.Now(), LastReport: time.Now(), LastSummary: store.Summary{Failed: 1}}
	fs := facts.Facts{"os": map[string]any{"family": "debian"}, "memory": map[string]any{"total_bytes": 2e9}, "tags": []any{"a"}, "status": "ok"}
	f.Fuzz(func(t *testing.T, src string) {
		where, err := compileWhere(src)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("compileWhere(%q) = %v, want InvalidArgument", src, err)
			}
			return
		}
		if where == nil {
			if src != "" {
				t.Fatalf("compileWhere(%q) = nil filter", src)
			}
			return
		}
		match := where.Matcher()
		full, errFull := match(s.whereEnv(nil, n, fs, "", time.Now()))
		named, errNamed := match(s.whereEnv(where.Names(), n, fs, "", time.Now()))
		// Only the names the expression reads are in the env: it must
		// decide the same as over the whole env.
		if (errFull == nil) != (errNamed == nil) || full != named {
			t.Errorf("where %q: over the whole env %v, %v; over its names %v, %v", src, full, errFull, named, errNamed)
		}
	})
}
