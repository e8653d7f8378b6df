package policies

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/herdcm/herd/catalogs"
)

func TestJudge(t *testing.T) {
	t.Parallel()
	g := mustPrepare(t, Options{}, "policies/gate.rego", `package herd.gate
warn contains r.id if some r in input.judge
deny contains sprintf("%s is world-writable", [r.id]) if {
	some r in input.judge
	r.attrs.mode == "0666"
}`)
	tests := []struct {
		name   string
		judged bool
		change catalogs.Change
		warn   []string
		denied bool
	}{
		{name: "never judged: the whole catalog", warn: []string{"file:/etc/motd", "package:nginx", "service:web"}, denied: true},
		{name: "judged: what the change adds or changes", judged: true,
			change: catalogs.Change{
				Added:   []catalogs.ResourceChange{{ID: "service:web"}},
				Changed: []catalogs.ResourceChange{{ID: "package:nginx"}},
				Removed: []catalogs.ResourceChange{{ID: "file:/etc/gone"}},
			},
			warn: []string{"package:nginx", "service:web"}},
		{name: "judged, the world-writable file changed", judged: true,
			change: catalogs.Change{Changed: []catalogs.ResourceChange{{ID: "file:/etc/motd"}}},
			warn:   []string{"file:/etc/motd"}, denied: true},
		{name: "judged, nothing changed", judged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := testInput()
			in.Judged, in.Change = tt.judged, tt.change
			// Twice: the second time the resources come from the cache.
			for range 2 {
				d, err := g.Evaluate(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				var warn []string
				for _, m := range d.Warn {
					warn = append(warn, m.Message)
				}
				if !slices.Equal(warn, tt.warn) || d.Denied() != tt.denied {
					t.Fatalf("input.judge held %v (denied %v), want %v (denied %v)", warn, d.Denied(), tt.warn, tt.denied)
				}
			}
		})
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	gate := []string{"policies/g.rego", "package herd.gate\ndeny contains \"x\" if false"}
	a := mustPrepare(t, Options{}, gate...)
	withTest := mustPrepare(t, Options{}, append(gate, "policies/g_test.rego", "package herd.gate_test\ntest_x if true")...)
	changed := mustPrepare(t, Options{}, "policies/g.rego", "package herd.gate\ndeny contains \"y\" if false")
	moved := mustPrepare(t, Options{}, "policies/h.rego", gate[1])
	if !strings.HasPrefix(a.Digest(), "sha256:") || a.Digest() != withTest.Digest() {
		t.Errorf("digests %q and %q: a policy test must not change the digest", a.Digest(), withTest.Digest())
	}
	if a.Digest() == changed.Digest() || a.Digest() == moved.Digest() {
		t.Errorf("digest %q unchanged by an edit (%q) or a rename (%q)", a.Digest(), changed.Digest(), moved.Digest())
	}
	if d := mustPrepare(t, Options{}).Digest(); d != "" {
		t.Errorf("an empty gate's digest = %q, want \"\"", d)
	}
}
