package policies

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/herdcm/herd/catalogs"
)

// TestResourceCacheDecidesAsFresh gates a run of catalogs that differ from
// one another in one detail each with one gate, whose cache has seen the
// others, and compares every decision with a fresh gate's.
func TestResourceCacheDecidesAsFresh(t *testing.T) {
	t.Parallel()
	const policy = `package herd.gate
warn contains sprintf("%s %s %v %v %v", [r.id, r.source, r.attrs, object.get(r, "notify", "-"), object.get(r, "require", "-")]) if some r in input.catalog.resources
warn contains sprintf("previous %v", [r.attrs]) if some r in input.previous.resources`
	base := func() catalogs.Resource {
		return catalogs.Resource{ID: "file:/etc/x", Type: "file", Name: "/etc/x", Source: "roles/a.toml:1",
			Attrs: map[string]any{
				"path": "/etc/x", "mode": "0644", "uid": int64(1), "purge": false,
				"groups": []string{"a", "b"}, "env": map[string]string{"A": "1"},
			}}
	}
	variants := map[string]func(r *catalogs.Resource){
		"same":                func(*catalogs.Resource) {},
		"mode":                func(r *catalogs.Resource) { r.Attrs["mode"] = "0666" },
		"uid":                 func(r *catalogs.Resource) { r.Attrs["uid"] = int64(2) },
		"uid as string":       func(r *catalogs.Resource) { r.Attrs["uid"] = "1" },
		"purge":               func(r *catalogs.Resource) { r.Attrs["purge"] = true },
		"list order":          func(r *catalogs.Resource) { r.Attrs["groups"] = []string{"b", "a"} },
		"nil list":            func(r *catalogs.Resource) { r.Attrs["groups"] = []string(nil) },
		"empty list":          func(r *catalogs.Resource) { r.Attrs["groups"] = []string{} },
		"list split":          func(r *catalogs.Resource) { r.Attrs["groups"] = []string{"ab"} },
		"map value":           func(r *catalogs.Resource) { r.Attrs["env"] = map[string]string{"A": "2"} },
		"map key":             func(r *catalogs.Resource) { r.Attrs["env"] = map[string]string{"B": "1"} },
		"nil map":             func(r *catalogs.Resource) { r.Attrs["env"] = map[string]string(nil) },
		"attr added":          func(r *catalogs.Resource) { r.Attrs["owner"] = "root" },
		"attr removed":        func(r *catalogs.Resource) { delete(r.Attrs, "purge") },
		"attrs swapped":       func(r *catalogs.Resource) { r.Attrs["path"], r.Attrs["mode"] = "0644", "/etc/x" },
		"no attrs":            func(r *catalogs.Resource) { r.Attrs = nil },
		"float (not cached)":  func(r *catalogs.Resource) { r.Attrs["uid"] = 1.5 },
		"nested (not cached)": func(r *catalogs.Resource) { r.Attrs["env"] = map[string]any{"A": []any{"1"}} },
		"source":              func(r *catalogs.Resource) { r.Source = "roles/b.toml:9" },
		"notify":              func(r *catalogs.Resource) { r.Notify = []string{"service:y"} },
		"require":             func(r *catalogs.Resource) { r.Require = []string{"package:y"} },
		"name":                func(r *catalogs.Resource) { r.Name = "/etc/y" },
	}
	shared := mustPrepare(t, Options{}, "policies/gate.rego", policy)
	decide := func(g *Gate, r catalogs.Resource) Decision {
		t.Helper()
		prev := base()
		d, err := g.Evaluate(context.Background(), Input{Node: "n",
			Catalog:  &catalogs.Catalog{Resources: []catalogs.Resource{r}},
			Previous: &catalogs.Catalog{Resources: []catalogs.Resource{prev}}})
		if err != nil {
			t.Fatalf("Evaluate: %v", err)
		}
		return d
	}
	// Twice over, so that every variant meets a cache holding the others.
	for range 2 {
		for name, change := range variants {
			r := base()
			change(&r)
			fresh := mustPrepare(t, Options{}, "policies/gate.rego", policy)
			want := decide(fresh, r)
			if diff := cmp.Diff(want, decide(shared, r)); diff != "" {
				t.Errorf("%s: the shared gate decided otherwise (-fresh +shared):\n%s", name, diff)
			}
		}
	}

	// The caller changing a resource after it was gated changes what
	// the next evaluation sees.
	r := base()
	before := decide(shared, r)
	r.Attrs["mode"] = "0600"
	r.Attrs["groups"].([]string)[0] = "z"
	after := decide(shared, r)
	if cmp.Equal(before, after) {
		t.Errorf("a resource changed in place after gating decided as before: %+v", after)
	}
}

// TestResourceCacheKeepsWhatRecurs: a resource is kept the second time it
// is seen, never the first, so that one node's own resources do not fill
// the cache before the shared ones get in.
func TestResourceCacheKeepsWhatRecurs(t *testing.T) {
	t.Parallel()
	rc := newResourceCache()
	r := &catalogs.Resource{ID: "file:/etc/motd", Type: "file", Name: "/etc/motd", Source: "roles/r.toml:1",
		Attrs: map[string]any{"path": "/etc/motd", "content": "hello\n"}}
	term := ast.StringTerm("converted")
	for i, want := range []bool{false, false, true} {
		got, h, size, ok := rc.get(r)
		if !ok {
			t.Fatalf("get %d: a resource of compile's shapes is not cacheable", i)
		}
		if (got != nil) != want {
			t.Fatalf("get %d = %v, want cached %v", i, got, want)
		}
		if got == nil {
			rc.put(h, size, r, term)
		}
	}
	_, h, _, _ := rc.get(r)
	if sh := rc.shard(h); len(sh.seen) != 0 || sh.bytes == 0 {
		t.Errorf("after keeping it: seen %d, bytes %d; want it out of seen and counted", len(sh.seen), sh.bytes)
	}
}
