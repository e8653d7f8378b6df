package catalogs

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/herdcm/herd/facts"
)

// TestTemplateBudgetPerCompile checks that renders each under their own
// budget cannot add up past the compile's, and that a compile over budget
// leaves nothing behind for the next compile that reuses its templates.
func TestTemplateBudgetPerCompile(t *testing.T) {
	t.Parallel()
	var role strings.Builder
	// Each render loops just under MaxRenderSteps; together they pass
	// MaxCompileSteps.
	renders := MaxCompileSteps/(MaxRenderSteps-1000) + 1
	for i := range renders {
		fmt.Fprintf(&role, "[[file]]\npath = \"/etc/heavy-%d\"\ncontent = \"{{ range %d }}{{ end }}\"\n", i, MaxRenderSteps-1000)
	}
	s := siteFromTxtar(t, `
-- nodes.toml --
[[node]]
match = "heavy-*"
roles = ["heavy"]
[[node]]
match = "light-*"
roles = ["light"]
-- roles/light.toml --
[params]
hosts = ["a", "b", "c"]
[[file]]
path = "/etc/hosts.conf"
template = "hosts.tmpl"
-- templates/hosts.tmpl --
{{ range $i, $h := .params.hosts }}{{ if gt $i 0 }}, {{ end }}{{ printf "%s:%d" $h 80 | upper }}{{ end }}
{{ indent 2 (join "\n" .params.hosts) }}
-- roles/heavy.toml --
`+role.String())
	for range 2 {
		_, err := s.Compile("heavy-01", facts.Facts{})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the templates of this node take more than %d steps together", MaxCompileSteps)) {
			t.Fatalf("Compile(heavy-01) = %v, want the compile budget exceeded", err)
		}
		cat, err := s.Compile("light-01", facts.Facts{})
		if err != nil {
			t.Fatalf("Compile(light-01) after an over-budget compile: %v", err)
		}
		r, _ := cat.Resource("file:/etc/hosts.conf")
		if want := "A:80, B:80, C:80\n  a\n  b\n  c\n"; r.String("content") != want {
			t.Fatalf("content = %q, want %q", r.String("content"), want)
		}
	}
}

// TestTemplateFuncCaps calls each function that can build a large result
// with arguments that would, and expects a refusal naming the call.
func TestTemplateFuncCaps(t *testing.T) {
	t.Parallel()
	tests := []struct{ tmpl, want string }{
		{`{{ indent -1 "x" }}`, "indent -1: want 0 to 1000 spaces"},
		{`{{ indent 1000 (replace "0" "\n" (printf "%02000d" 0)) }}`, "more than the 1 MiB a render may produce"},
		{`{{ $s := printf "%0999999d" 0 }}{{ replace "0" "00" $s }}`, "more than the 1 MiB"},
		{`{{ $s := printf "%0600000d" 0 }}{{ join $s (split "" "abc") }}`, "more than the 1 MiB"},
		{`{{ $s := printf "%0600000d" 0 }}{{ print $s $s }}`, "more than the 1 MiB"},
		{`{{ $s := printf "%0300000d" 0 }}{{ printf "%[1]s%[1]s%[1]s%[1]s" $s }}`, "more than the 1 MiB"},
		{`{{ printf "%*d" 2000000 1 }}{{ printf "%*d%*d" 900000 1 900000 2 }}`, "more than the 1 MiB"},
		{`{{ $s := printf "%0300000d" 0 }}{{ html $s }}`, "more than the 1 MiB"},
		{`{{ $s := printf "%0300000d" 0 }}{{ toJSON (split "" $s) }}`, "more than the 1 MiB"},
		{`{{ $s := printf "%0900000d" 0 }}{{ range 1000 }}{{ if eq $s $s }}{{ end }}{{ end }}`, "more than 250000 steps"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			t.Parallel()
			s := siteFromTxtar(t, "-- nodes.toml --\n[[node]]\nroles = [\"r\"]\n-- roles/r.toml --\n[[file]]\npath = \"/etc/x\"\ntemplate = \"x.tmpl\"\n-- templates/x.tmpl --\n"+tt.tmpl+"\n")
			_, err := s.Compile("web-01", facts.Facts{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "templates/x.tmpl:1:") {
				t.Fatalf("Compile = %v, want an error at templates/x.tmpl:1 containing %q", err, tt.want)
			}
		})
	}
}

// TestTemplateComparisons holds the charged comparisons to text/template's.
func TestTemplateComparisons(t *testing.T) {
	t.Parallel()
	s := siteFromTxtar(t, `
-- nodes.toml --
[[node]]
roles = ["r"]
[node.params]
n = 3
f = 2.5
s = "b"
-- roles/r.toml --
[[file]]
path = "/etc/x"
template = "x.tmpl"
-- templates/x.tmpl --
{{ eq .params.n 3 }} {{ eq .params.s "a" "b" }} {{ ne .params.s "b" }} {{ lt .params.n 4 }} {{ le .params.f 2.5 }} {{ gt .params.s "a" }} {{ ge .params.n 4 }} {{ eq .node "web-01" }}
`)
	cat, err := s.Compile("web-01", facts.Facts{})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cat.Resource("file:/etc/x")
	if want := "true true false true true true false true\n"; r.String("content") != want {
		t.Errorf("content = %q, want %q", r.String("content"), want)
	}
	if _, err := Load(context.Background(), t.TempDir(), LoadOptions{}); err == nil {
		t.Error("Load of an empty directory succeeded")
	}
}
