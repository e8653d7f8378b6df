package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

// TestApplyPartial converges only the resources a partial run selects,
// with what they require, and marks the report partial; the rest of the
// catalog is neither checked nor changed.
func TestApplyPartial(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"web\", \"base\"]\n",
		"defines/vhost.toml": `
[params]
port = 80
[[file]]
path = "/etc/vhost/{{ .params.name }}.conf"
content = "listen {{ .params.port }}"
require = ["file:/etc/vhost"]
`,
		"roles/web.toml": `
[[file]]
path = "/etc/vhost"
ensure = "directory"

[[vhost]]
name = "shop"
port = 8080

[[file]]
path = "/etc/tagged"
content = "t"
tags = ["special"]
`,
		"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "hello"
`,
	})
	tests := []struct {
		name       string
		tags, only []string
		want       []string // the files the run made
	}{
		{name: "a definition's tag pulls in what it requires", tags: []string{"vhost"},
			want: []string{"etc/vhost", "etc/vhost/shop.conf"}},
		{name: "a role's tag", tags: []string{"base"}, want: []string{"etc/motd"}},
		{name: "an explicit tag and --only", tags: []string{"special"}, only: []string{"file:/etc/motd"},
			want: []string{"etc/motd", "etc/tagged"}},
	}
	all := []string{"etc/motd", "etc/tagged", "etc/vhost", "etc/vhost/shop.conf"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			sel, err := catalogs.ParseSelection(tt.tags, tt.only)
			if err != nil {
				t.Fatal(err)
			}
			r, err := agent.Apply(context.Background(), agent.ApplyOptions{Site: site, Root: root, Node: "n1", Select: sel})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !r.Partial {
				t.Error("the report of a partial run is not marked partial")
			}
			if r.Summary.Resources != len(tt.want) || r.Summary.Changed != len(tt.want) {
				t.Errorf("the run checked %d resources, want %d: %+v", r.Summary.Resources, len(tt.want), r.Events)
			}
			for _, p := range all {
				_, err := os.Stat(filepath.Join(root, p))
				if made := err == nil; made != slices.Contains(tt.want, p) {
					t.Errorf("%s made = %v, want %v", p, made, !made)
				}
			}
		})
	}
	t.Run("a tag no resource carries", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		_, err := agent.Apply(context.Background(), agent.ApplyOptions{Site: site, Root: root, Node: "n1", Select: catalogs.Selection{Tags: []string{"nope"}}})
		if err == nil || !strings.Contains(err.Error(), "--tags nope") {
			t.Fatalf("Apply with an unknown tag = %v, want an error naming it", err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/motd")); err == nil {
			t.Error("a run with an unknown tag changed the host")
		}
	})
	t.Run("the whole catalog is not partial", func(t *testing.T) {
		t.Parallel()
		r, err := agent.Apply(context.Background(), agent.ApplyOptions{Site: site, Root: t.TempDir(), Node: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Partial || r.Summary.Resources != len(all) {
			t.Errorf("a whole run: partial %v, %d resources; want false, %d", r.Partial, r.Summary.Resources, len(all))
		}
	})
}
