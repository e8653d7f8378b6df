package catalogs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/tools/txtar"

	"github.com/herdcm/herd/facts"
)

// siteFromTxtar writes a txtar archive of site files into a temp dir and
// loads it. (testkit cannot be used here: it will import this package.)
func siteFromTxtar(t *testing.T, archive string) *Site {
	t.Helper()
	dir := t.TempDir()
	for _, f := range txtar.Parse([]byte(archive)).Files {
		p := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Load(context.Background(), dir, LoadOptions{Version: "test"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

const hierarchySite = `
-- herd.toml --
hierarchy = ["nodes/{node}", "nodes.toml", "roles/{role}", "os/{facts.os.family}", "common"]
-- nodes.toml --
[[node]]
roles = ["base"]
[node.params]
from_rule = "first rule"
tier = "all"

[[node]]
match = "web-*"
roles = ["web"]
[node.params]
tier = "web"
-- roles/base.toml --
[params]
workers = 1
only_default = "base default"
-- roles/web.toml --
include = ["base"]
[params]
workers = 2
only_default = "web default"
-- data/common.toml --
workers = 3
[limits]
nofile = 1024
nproc = 100
-- data/os/debian.toml --
[limits]
nofile = 4096
-- data/roles/web.toml --
role_level = "web data"
-- data/nodes/web-01.toml --
workers = 8
`

func TestLookupPrecedence(t *testing.T) {
	t.Parallel()
	s := siteFromTxtar(t, hierarchySite)
	debian := facts.Facts{"os": map[string]any{"family": "debian"}}
	tests := []struct {
		node, key string
		f         facts.Facts
		want      any
		wonLevel  string
	}{
		{"web-01", "workers", debian, int64(8), "nodes/{node}"},
		{"web-02", "workers", debian, int64(3), "common"},
		{"web-02", "tier", debian, "web", "nodes.toml"},                    // the later rule wins
		{"db-01", "tier", debian, "all", "nodes.toml"},                     // only the first rule matches
		{"web-02", "only_default", debian, "web default", "role defaults"}, // includer beats included
		{"db-01", "only_default", debian, "base default", "role defaults"},
		{"web-02", "role_level", debian, "web data", "roles/{role}"},
		{"web-02", "limits", debian, map[string]any{"nofile": int64(4096), "nproc": int64(100)}, "os/{facts.os.family}"},
		{"web-02", "limits", facts.Facts{}, map[string]any{"nofile": int64(1024), "nproc": int64(100)}, "common"},
		{"web-02", "limits.nproc", debian, int64(100), "common"},
	}
	for _, tt := range tests {
		t.Run(tt.node+"/"+tt.key, func(t *testing.T) {
			res, err := s.Lookup(tt.node, tt.f, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Found {
				t.Fatalf("Lookup(%q, %q) not found; steps %+v", tt.node, tt.key, res.Steps)
			}
			if diff := cmp.Diff(tt.want, res.Value); diff != "" {
				t.Errorf("Lookup(%q, %q) value (-want +got):\n%s", tt.node, tt.key, diff)
			}
			if got := res.Steps[res.Won].Level; got != tt.wonLevel {
				t.Errorf("Lookup(%q, %q) won at %q, want %q", tt.node, tt.key, got, tt.wonLevel)
			}
			if res.Steps[res.Won].Pos.Line == 0 {
				t.Errorf("Lookup(%q, %q): the winning step has no position", tt.node, tt.key)
			}
		})
	}
	res, err := s.Lookup("web-02", debian, "nope")
	if err != nil || res.Found {
		t.Errorf("Lookup(nope) = %+v, %v; want not found", res, err)
	}
	// A missing fact makes its level say so, rather than vanish.
	res, _ = s.Lookup("web-02", facts.Facts{}, "workers")
	var note string
	for _, st := range res.Steps {
		if st.Level == "os/{facts.os.family}" {
			note = st.Note
		}
	}
	if note == "" {
		t.Errorf("the os level for a node without os facts has no note; steps %+v", res.Steps)
	}
}

// TestParamsReachTemplates checks that the merged params, not any single
// level, are what templates and conditions see.
func TestParamsReachTemplates(t *testing.T) {
	t.Parallel()
	s := siteFromTxtar(t, hierarchySite+`
-- roles/web.toml --
include = ["base"]
[params]
workers = 2
only_default = "web default"

[[file]]
path = "/etc/w"
content = "{{ .params.workers }} {{ .params.limits.nofile }} {{ .params.tier }}"

[[package]]
name = "big"
when = "params.workers > 4"
`)
	debian := facts.Facts{"os": map[string]any{"family": "debian"}}
	for node, want := range map[string]struct {
		content string
		big     bool
	}{
		"web-01": {"8 4096 web", true},
		"web-02": {"3 4096 web", false},
	} {
		cat, err := s.Compile(node, debian)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := cat.Resource("file:/etc/w")
		if !ok || r.String("content") != want.content {
			t.Errorf("%s: content = %q, want %q", node, r.String("content"), want.content)
		}
		if _, ok := cat.Resource("package:big"); ok != want.big {
			t.Errorf("%s: package:big present = %v, want %v", node, ok, want.big)
		}
	}
}

func TestImplicitAndExplicitEdges(t *testing.T) {
	t.Parallel()
	s := siteFromTxtar(t, `
-- nodes.toml --
[[node]]
roles = ["app"]
-- roles/app.toml --
[[group]]
name = "app"

[[user]]
name = "app"
gid = "app"
groups = ["app", "unmanaged"]

[[file]]
path = "/srv"
ensure = "directory"

[[file]]
path = "/srv/app/deep/config"
owner = "app"
group = "app"
content = "x"
before = ["exec:migrate"]

[[exec]]
name = "migrate"
command = ["/usr/bin/migrate"]
user = "app"
cwd = "/srv"
refreshonly = true
subscribe = ["package:app"]

[[package]]
name = "app"

[[service]]
name = "app"
run = ["/usr/bin/app"]
user = "app"
require = "package:app"
`)
	cat, err := s.Compile("host-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2][]string{ // id → {require, notify}
		"user:app":                  {{"group:app"}, nil},
		"file:/srv/app/deep/config": {{"file:/srv", "group:app", "user:app"}, nil},
		"exec:migrate":              {{"file:/srv", "file:/srv/app/deep/config", "package:app", "user:app"}, nil},
		"package:app":               {nil, {"exec:migrate"}},
		"service:app":               {{"package:app", "user:app"}, nil},
	}
	for id, w := range want {
		r, ok := cat.Resource(id)
		if !ok {
			t.Fatalf("%s missing", id)
		}
		if diff := cmp.Diff(w[0], r.Require); diff != "" {
			t.Errorf("%s require (-want +got):\n%s", id, diff)
		}
		if diff := cmp.Diff(w[1], r.Notify); diff != "" {
			t.Errorf("%s notify (-want +got):\n%s", id, diff)
		}
	}
}

func TestValidNodeName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"web-01": true, "web-01.example.com": true, "db_2": true, "a": true,
		"": false, "../x": false, "a/b": false, "a..b": false, ".a": false, "a.": false,
		"-a": false, "a b": false, "*": false, "a\x00": false, "é": false,
		string(make([]byte, 254)): false,
	} {
		if err := ValidNodeName(name); (err == nil) != ok {
			t.Errorf("ValidNodeName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestSiteVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nodes.toml", "[[node]]\nroles = [\"r\"]\n")
	if err := os.Mkdir(filepath.Join(dir, "roles"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("roles/r.toml", "")
	load := func() string {
		t.Helper()
		s, err := Load(context.Background(), dir, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Version
	}
	v1 := load()
	if len(v1) != len("sha256:")+64 {
		t.Fatalf("version of a plain directory = %q, want sha256:<64 hex>", v1)
	}
	if v := load(); v != v1 {
		t.Errorf("version changed between two loads of the same tree: %q then %q", v1, v)
	}
	write("roles/r.toml", "# a comment\n")
	if v := load(); v == v1 {
		t.Error("version did not change when a role changed")
	}
}

func TestContentVersionNeedsNoGit(t *testing.T) {
	t.Parallel()
	s, err := Load(context.Background(), exampleSite, LoadOptions{ContentVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Version) != len("sha256:")+64 {
		t.Errorf("ContentVersion gave %q, want sha256:<64 hex>", s.Version)
	}
}
