package catalogs

import (
	"bytes"
	"testing"
	"testing/fstest"

	"github.com/herdcm/herd/facts"
)

// FuzzReuse loads a site whose role iterates over data and uses a
// definition, with the definition file, the role and the data the
// for_each reads all from the fuzzer. Whatever they hold, Load and
// Compile must not panic, must fail only with positioned Diagnostics,
// and a compiled catalog must name each resource once and encode stably.
func FuzzReuse(f *testing.F) {
	def := "[params]\nport = { type = \"integer\", default = 80 }\ntls = false\n[[file]]\npath = \"/etc/v/{{ .params.name }}\"\ncontent = \"{{ .params.port }}\"\n[[file]]\nfor_each = [\"a\", \"b\"]\npath = \"/etc/v/{{ .params.name }}.{{ .each.value }}\"\n"
	role := "[[d]]\nfor_each = \"params.items\"\nname = \"{{ .each.key }}\"\nport = \"{{ .each.value }}\"\n[[user]]\nfor_each = \"params.items\"\nname = \"u{{ .each.key }}\"\nwhen = \"each.value != nil\"\n[[exec]]\ncommand = [\"/bin/true\"]\nrequire = [\"d:0\"]\n"
	f.Add(def, role, "items = [8080, 8081]\n")
	f.Add(def, role, "items = { a = 1, b = \"x\" }\n")
	f.Add(def, role, "items = \"not a list\"\n")
	f.Add(def, role, "items = [[1], { x = 2 }, true, 1.5]\n")
	f.Add("[params]\nname = 1\nfor_each = 2\nx = { type = \"nope\" }\n[[d]]\nname = \"loop\"\n", role, "items = []\n")
	f.Add("[[file]]\npath = \"/same\"\n", role, "items = [1, 2]\n")
	f.Add("[params]\nl = { type = \"list\", default = [1] }\nt = { type = \"table\", default = { a = 1 } }\nf = 1.5\n[[group]]\nname = \"{{ .params.name }}\"\ntags = [\"{{ .params.name }}\"]\n",
		"[[d]]\nname = \"g\"\nl = [\"{{ .node }}\"]\nt = { b = 2 }\nf = \"{{ 2 }}\"\ntags = [\"x\"]\nnotify = [\"d:g\"]\n", "")
	f.Fuzz(func(t *testing.T, def, role, data string) {
		fsys := fstest.MapFS{
			"nodes.toml":       {Data: []byte("[[node]]\nroles = [\"r\"]\n")},
			"roles/r.toml":     {Data: []byte(role)},
			"defines/d.toml":   {Data: []byte(def)},
			"data/common.toml": {Data: []byte(data)},
		}
		s, _, err := loadFS(fsSiteDir(fsys), LoadOptions{Version: "fuzz"}, defaultLimits)
		if err != nil {
			checkDiagnostics(t, err)
			return
		}
		cat, err := s.Compile("web-01", facts.Facts{"os": map[string]any{"family": "debian"}})
		if err != nil {
			checkDiagnostics(t, err)
			return
		}
		seen := map[string]bool{}
		for _, r := range cat.Resources {
			if seen[r.ID] {
				t.Fatalf("%s is in the catalog twice", r.ID)
			}
			seen[r.ID] = true
			for _, dep := range append(r.Require, r.Notify...) {
				if _, ok := cat.Resource(dep); !ok {
					t.Fatalf("%s refers to %s, which is not in the catalog", r.ID, dep)
				}
			}
		}
		b, err := cat.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		back, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(c)): %v", err)
		}
		if b2, _ := back.Encode(); !bytes.Equal(b, b2) {
			t.Fatal("encoding is not stable over a round trip")
		}
	})
}

// FuzzSelection parses --tags and --only values and selects with them:
// no input may panic, and a selection holds only catalog resources whose
// requirements it holds too.
func FuzzSelection(f *testing.F) {
	f.Add("web,tls", "file:/etc/motd")
	f.Add(",,", "nope")
	f.Add("vhost", "")
	f.Add("", "user:alice,file:/x")
	cat := &Catalog{Node: "n", Resources: []Resource{
		{ID: "file:/etc/motd", Type: "file", Name: "/etc/motd", Source: "roles/web.toml:1", Attrs: map[string]any{"tags": []string{"tls"}}, Require: []string{"user:alice"}, Notify: []string{"service:s"}},
		{ID: "service:s", Type: "service", Name: "s", Source: "roles/web.toml:5 via defines/vhost.toml:2"},
		{ID: "user:alice", Type: "user", Name: "alice", Source: "roles/base.toml:1"},
	}}
	f.Fuzz(func(t *testing.T, tags, only string) {
		sel, err := ParseSelection([]string{tags}, []string{only})
		if err != nil {
			return
		}
		part, err := cat.Select(sel)
		if err != nil {
			return
		}
		for _, r := range part.Resources {
			for _, dep := range append(r.Require, r.Notify...) {
				if _, ok := part.Resource(dep); !ok {
					t.Fatalf("selection %v: %s refers to %s, which it left out", sel, r.ID, dep)
				}
			}
		}
	})
}
