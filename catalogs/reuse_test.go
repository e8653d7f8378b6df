package catalogs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/facts"
)

const reuseSite = `
-- nodes.toml --
[[node]]
roles = ["web"]
[node.params]
admins = ["alice", "bob"]
sites = { shop = { port = 8080 }, blog = { port = 8081, tls = true } }
-- defines/vhost.toml --
description = "an nginx virtual host"
[params]
port = { type = "integer", default = 80 }
tls = false
aliases = { type = "list", default = [] }

[[file]]
path = "/etc/nginx/sites/{{ .params.name }}.conf"
template = "vhost.conf.tmpl"
notify = ["service:nginx"]

[[file]]
for_each = "params.aliases"
path = "/etc/nginx/aliases/{{ .each.value }}"
content = "{{ .params.name }}"

[[certificate]]
name = "{{ .params.name }}"
when = "params.tls"
-- defines/certificate.toml --
[[file]]
path = "/etc/ssl/{{ .params.name }}.pem"
content = "cert for {{ .params.name }}"
tags = ["tls"]
-- templates/vhost.conf.tmpl --
server {{ .params.name }} listen {{ .params.port }};
-- roles/web.toml --
[[user]]
for_each = "params.admins"
name = "{{ .each.value }}"
groups = ["adm"]
when = "each.key != 5"

[[group]]
name = "adm"

[[vhost]]
for_each = "params.sites"
name = "{{ .each.key }}"
port = "{{ .each.value.port }}"
tls = "{{ index .each.value \"tls\" | default false }}"
tags = ["sites"]

[[vhost]]
name = "static"
aliases = ["a.example", "b.example"]
require = "group:adm"

[[service]]
name = "nginx"
run = ["/usr/sbin/nginx"]

[[exec]]
command = ["/usr/bin/reload-all"]
require = ["vhost:shop"]
`

func TestForEachAndDefinitions(t *testing.T) {
	t.Parallel()
	s := siteFromTxtar(t, reuseSite)
	cat, err := s.Compile("web-01", facts.Facts{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	type row struct{ ID, Source, Content, Tags string }
	var got []row
	for _, r := range cat.Resources {
		got = append(got, row{r.ID, r.Source, r.String("content"), strings.Join(r.Tags(), ",")})
	}
	want := []row{
		{"exec:/usr/bin/reload-all", "roles/web.toml:26", "", "web"},
		{"file:/etc/nginx/aliases/a.example", "roles/web.toml:17 via defines/vhost.toml:12", "static", "vhost,web"},
		{"file:/etc/nginx/aliases/b.example", "roles/web.toml:17 via defines/vhost.toml:12", "static", "vhost,web"},
		{"file:/etc/nginx/sites/blog.conf", "roles/web.toml:10 via defines/vhost.toml:7", "server blog listen 8081;\n", "sites,vhost,web"},
		{"file:/etc/nginx/sites/shop.conf", "roles/web.toml:10 via defines/vhost.toml:7", "server shop listen 8080;\n", "sites,vhost,web"},
		{"file:/etc/nginx/sites/static.conf", "roles/web.toml:17 via defines/vhost.toml:7", "server static listen 80;\n", "vhost,web"},
		{"file:/etc/ssl/blog.pem", "roles/web.toml:10 via defines/vhost.toml:17 via defines/certificate.toml:1", "cert for blog", "certificate,sites,tls,vhost,web"},
		{"group:adm", "roles/web.toml:7", "", "web"},
		{"service:nginx", "roles/web.toml:22", "", "web"},
		{"user:alice", "roles/web.toml:1", "", "web"},
		{"user:bob", "roles/web.toml:1", "", "web"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
	// An edge to vhost:shop is an edge to each of its resources; the
	// use's notify reaches nginx from each file of the instance.
	exec, _ := cat.Resource("exec:/usr/bin/reload-all")
	if diff := cmp.Diff([]string{"file:/etc/nginx/sites/shop.conf"}, exec.Require); diff != "" {
		t.Errorf("exec require (-want +got):\n%s", diff)
	}
	conf, _ := cat.Resource("file:/etc/nginx/sites/shop.conf")
	if diff := cmp.Diff([]string{"service:nginx"}, conf.Notify); diff != "" {
		t.Errorf("shop.conf notify (-want +got):\n%s", diff)
	}
	// An edge written on a use applies from each of its resources.
	for _, id := range []string{"file:/etc/nginx/sites/static.conf", "file:/etc/nginx/aliases/a.example", "file:/etc/nginx/aliases/b.example"} {
		r, _ := cat.Resource(id)
		if !slices.Contains(r.Require, "group:adm") {
			t.Errorf("%s requires %v, want group:adm from its use's require", id, r.Require)
		}
	}
	alice, _ := cat.Resource("user:alice")
	if diff := cmp.Diff([]string{"group:adm"}, alice.Require); diff != "" {
		t.Errorf("user:alice require (-want +got):\n%s", diff)
	}
	// Deterministic: a second compile gives the same bytes.
	again, err := s.Compile("web-01", facts.Facts{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := cat.Encode()
	b, _ := again.Encode()
	if string(a) != string(b) {
		t.Error("two compiles of the same node differ")
	}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	s := siteFromTxtar(t, reuseSite)
	cat, err := s.Compile("web-01", facts.Facts{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	tests := []struct {
		name    string
		tags    []string
		only    []string
		want    []string
		wantErr string
	}{
		{name: "a tag of a use, with what it requires", tags: []string{"tls"},
			want: []string{"file:/etc/ssl/blog.pem"}},
		{name: "only, with the require closure", only: []string{"exec:/usr/bin/reload-all"},
			want: []string{"exec:/usr/bin/reload-all", "file:/etc/nginx/sites/shop.conf"}},
		{name: "the implicit tag of a definition, comma separated with another", tags: []string{"certificate,sites"},
			want: []string{"file:/etc/nginx/sites/blog.conf", "file:/etc/nginx/sites/shop.conf", "file:/etc/ssl/blog.pem"}},
		{name: "a user pulls its group in", only: []string{"user:bob"},
			want: []string{"group:adm", "user:bob"}},
		{name: "unknown tag", tags: []string{"nope"}, wantErr: "--tags nope: no resource"},
		{name: "unknown resource", only: []string{"file:/nope"}, wantErr: "--only file:/nope: no such resource"},
		{name: "bad id", only: []string{"nope"}, wantErr: "want a resource as type:name"},
		{name: "bad tag", tags: []string{"a b"}, wantErr: "a tag is letters"},
		{name: "bad tag with a slash", tags: []string{"a/ b"}, wantErr: "a tag is letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sel, err := ParseSelection(tt.tags, tt.only)
			var part *Catalog
			if err == nil {
				part, err = cat.Select(sel)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Select(%v, %v) = %v, want an error containing %q", tt.tags, tt.only, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select(%v, %v): %v", tt.tags, tt.only, err)
			}
			var got []string
			for _, r := range part.Resources {
				got = append(got, r.ID)
				// A refresh of a resource left out is dropped, never
				// left dangling.
				for _, n := range r.Notify {
					if _, ok := part.Resource(n); !ok {
						t.Errorf("%s notifies %s, which is not in the selection", r.ID, n)
					}
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Select(%v, %v) (-want +got):\n%s", tt.tags, tt.only, diff)
			}
		})
	}
}

// TestExpansionCapped: a for_each over a long list, or definitions that
// each use the next ten times, would grow a catalog without bound; the
// compile stops at MaxExpansions with a diagnostic.
func TestExpansionCapped(t *testing.T) {
	t.Parallel()
	var items strings.Builder
	items.WriteString("items = [")
	for i := range MaxExpansions + 1 {
		fmt.Fprintf(&items, "%d,", i)
	}
	items.WriteString("]\n")
	s := siteFromTxtar(t, "-- nodes.toml --\n[[node]]\nroles = [\"r\"]\n-- data/common.toml --\n"+items.String()+
		"-- roles/r.toml --\n[[group]]\nfor_each = \"params.items\"\nname = \"g{{ .each.value }}\"\n")
	_, err := s.Compile("web-01", facts.Facts{})
	var ds Diagnostics
	if !errors.As(err, &ds) || !slices.ContainsFunc(ds, func(d Diagnostic) bool { return strings.Contains(d.Msg, "grows past") }) {
		t.Fatalf("Compile of %d resources = %v, want the cap's diagnostic", MaxExpansions+1, err)
	}
}
