package policies

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// files turns alternating path, source pairs into site files.
func files(pairs ...string) []catalogs.SourceFile {
	var out []catalogs.SourceFile
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, catalogs.SourceFile{Path: pairs[i], Data: []byte(pairs[i+1])})
	}
	return out
}

func mustPrepare(t testing.TB, opts Options, pairs ...string) *Gate {
	t.Helper()
	g, err := Prepare(context.Background(), files(pairs...), opts)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return g
}

// testInput is a small node: a world-writable file, a service without a
// user, a package whose version changes on 3 of 4 nodes.
func testInput() Input {
	cat := &catalogs.Catalog{
		Environment: "production",
		Node:        "web-01",
		Version:     "v2",
		Files:       []catalogs.FileRef{{Digest: "sha256:00", Path: "files/x", Size: 3}},
		Resources: []catalogs.Resource{
			{ID: "file:/etc/motd", Type: "file", Name: "/etc/motd", Source: "roles/base.toml:3",
				Attrs: map[string]any{"path": "/etc/motd", "mode": "0666", "content": "hi\n"}},
			{ID: "package:nginx", Type: "package", Name: "nginx", Source: "roles/web.toml:2",
				Attrs: map[string]any{"name": "nginx", "ensure": "1.26"}},
			{ID: "service:web", Type: "service", Name: "web", Source: "roles/web.toml:9",
				Attrs:   map[string]any{"name": "web", "run": []string{"/usr/bin/web"}, "port": int64(8080), "env": map[string]string{"A": "b"}},
				Require: []string{"package:nginx"}},
		},
	}
	prev := &catalogs.Catalog{Node: "web-01", Version: "v1", Resources: []catalogs.Resource{}}
	change := catalogs.Change{
		Changed: []catalogs.ResourceChange{{ID: "package:nginx", Type: "package", Name: "nginx",
			Attrs: []catalogs.AttrChange{{Name: "ensure", From: "1.24", To: "1.26"}}}},
	}
	return Input{
		Node:     "web-01",
		Facts:    facts.Facts{"os": map[string]any{"family": "debian", "release": map[string]any{"major": "12"}}, "processors": map[string]any{"count": float64(2)}},
		Catalog:  cat,
		Previous: prev,
		Change:   change,
		Fleet: Summarize("v2", "v1", 4, map[string]catalogs.Change{
			"web-01": change, "web-02": change, "web-03": change, "web-04": {},
		}),
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		policy  string
		want    Decision
		wantErr string // substring; "" means no error
	}{
		{
			name: "deny strings",
			policy: `package herd.gate
deny contains sprintf("%s is world-writable", [r.id]) if {
	some r in input.catalog.resources
	r.type == "file"
	r.attrs.mode == "0666"
}
deny contains "never" if false`,
			want: Decision{Deny: []Message{{Message: "file:/etc/motd is world-writable"}}},
		},
		{
			name: "deny objects with message or msg, and warn",
			policy: `package herd.gate
deny contains {"message": "runs as root", "resource": r.id} if {
	some r in input.catalog.resources
	r.type == "service"
	not r.attrs.user
}
deny contains {"msg": "facts say debian", "extra": 1} if input.facts.os.family == "debian"
warn contains "requires nginx" if "package:nginx" in input.catalog.resources[_].require`,
			want: Decision{
				Deny: []Message{{Message: "facts say debian"}, {Message: "runs as root", Resource: "service:web"}},
				Warn: []Message{{Message: "requires nginx"}},
			},
		},
		{
			name: "input shape: node, previous, change, fleet, files, numbers and maps",
			policy: `package herd.gate
warn contains sprintf("%s %s %s %d %d %s %v %v %d %d", [
	input.node, input.catalog.version, input.previous.version,
	count(input.change.added), count(input.change.changed),
	input.change.changed[0].attrs[0].to,
	input.fleet.packages.nginx.versions["1.24 -> 1.26"], input.fleet.nodes,
	input.catalog.files[0].size, input.catalog.resources[2].attrs.port,
]) if input.catalog.resources[2].attrs.env.A == "b"
warn contains "has no notify" if not input.catalog.resources[0].notify
warn contains "cpus" if input.facts.processors.count == 2`,
			want: Decision{Warn: []Message{{Message: "cpus"}, {Message: "has no notify"}, {Message: "web-01 v2 v1 0 1 1.26 3 4 3 8080"}}},
		},
		{
			// Parts of input no rule names are not converted; reading
			// input whole, a part whole or by a computed key sees all.
			name: "input read whole, by alias and by computed key",
			policy: `package herd.gate
warn contains i.previous.version if i := input
warn contains sprintf("changed %d", [count(c.changed)]) if c := input.change
warn contains k if {
	some k in {"previous", "catalog"}
	input[k].version == "v1"
}`,
			want: Decision{Warn: []Message{{Message: "changed 1"}, {Message: "previous"}, {Message: "v1"}}},
		},
		{
			name:   "one list of change read",
			policy: "package herd.gate\nwarn contains rc.id if some rc in input.change.changed",
			want:   Decision{Warn: []Message{{Message: "package:nginx"}}},
		},
		{
			// The input's schema leaves facts and attributes open.
			name: "any fact, any attribute",
			policy: `package herd.gate
warn contains "no such fact" if not input.facts.no.such.fact
warn contains "no such attribute" if {
	some r in input.catalog.resources
	not r.attrs.no_such_attribute
	r.id == "file:/etc/motd"
}`,
			want: Decision{Warn: []Message{{Message: "no such attribute"}, {Message: "no such fact"}}},
		},
		{
			name:   "deny only, no warn rule",
			policy: "package herd.gate\ndeny contains \"x\" if input.node == \"other\"",
			want:   Decision{},
		},
		{
			name:    "element of the wrong shape",
			policy:  "package herd.gate\n\ndeny contains 3 if true\ndeny contains \"fine\" if true",
			wantErr: "policies/gate.rego:3: deny element 3 is neither",
		},
		{
			name:    "object without a message",
			policy:  "package herd.gate\ndeny contains {\"resource\": \"x\"} if true",
			wantErr: "policies/gate.rego:2: deny element",
		},
		{
			name:    "deny not a set",
			policy:  "package herd.gate\ndeny := 7",
			wantErr: "policies/gate.rego:2: deny is number, want a set",
		},
		{
			name:    "deny undefined",
			policy:  "package herd.gate\n\ndeny := {\"x\"} if input.node == \"other\"",
			wantErr: "policies/gate.rego:3: deny or warn is undefined",
		},
		{
			name:    "built-in error at run time",
			policy:  "package herd.gate\n\n\ndeny contains \"big\" if to_number(input.node) > 3",
			wantErr: "policies/gate.rego:4",
		},
		{
			name:    "conflicting values",
			policy:  "package herd.gate\ndeny contains \"x\" if mode == \"a\"\nmode := \"a\" if true\nmode := \"b\" if true",
			wantErr: "policies/gate.rego:4: eval_conflict_error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := mustPrepare(t, Options{}, "policies/gate.rego", tt.policy)
			if g.Empty() {
				t.Fatal("Empty() = true for a herd.gate package")
			}
			got, err := g.Evaluate(context.Background(), testInput())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Evaluate() error = %v, want it to contain %q (decision %+v)", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Evaluate() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrepareErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   []string
		wantErr []string
	}{
		{"parse error", []string{"policies/gate.rego", "package herd.gate\n\ndeny contains x if {\n  x := \n}"}, []string{"policies/gate.rego:5", "rego_parse_error"}},
		{"comments only", []string{"policies/gate.rego", "# nothing yet\n"}, []string{"policies/gate.rego", "empty module"}},
		{"errors of two files, in order", []string{
			"policies/b.rego", "package herd.gate\ndeny contains x if {",
			"policies/a.rego", "package herd.other\n\nfoo if {",
		}, []string{"2 errors", "policies/a.rego:3", "policies/b.rego:2"}},
		{"unsafe variable", []string{"policies/gate.rego", "package herd.gate\n\ndeny contains msg if { input.x == 1 }"}, []string{"policies/gate.rego:3", "unsafe"}},
		{"unused variable (strict)", []string{"policies/gate.rego", "package herd.gate\ndeny contains \"m\" if {\n\tx := 1\n\tinput.y == 2\n}"}, []string{"policies/gate.rego:3"}},
		{"network built-in refused", []string{"policies/gate.rego", "package herd.gate\ndeny contains \"m\" if {\n\thttp.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"}).status_code == 200\n}"}, []string{"policies/gate.rego:3", "http.send"}},
		{"Rego v0 syntax", []string{"policies/gate.rego", "package herd.gate\ndeny[msg] { msg := \"x\" }"}, []string{"policies/gate.rego:2"}},
		{"misspelt part of the catalog", []string{"policies/gate.rego", "package herd.gate\n\ndeny contains \"x\" if input.catalog.resorces[_].type == \"file\""}, []string{"policies/gate.rego:3", "undefined ref: input.catalog.resorces"}},
		{"misspelt part of a resource", []string{"policies/gate.rego", "package herd.gate\ndeny contains \"x\" if {\n\tsome r in input.catalog.resources\n\tr.atrs.mode == \"0666\"\n}"}, []string{"policies/gate.rego:4", "undefined ref: r.atrs.mode"}},
		{"misspelt part of a change, through an alias", []string{"policies/gate.rego", "package herd.gate\ndeny contains \"x\" if {\n\tc := input.change\n\tsome rc in c.chnaged\n\trc.id == \"x\"\n}"}, []string{"policies/gate.rego:4", "undefined ref"}},
		{"gate without deny or warn", []string{"policies/gate.rego", "package herd.gate\ndenny contains \"x\" if true"}, []string{"policies/gate.rego:1", "neither a deny nor a warn rule"}},
		{"error in a non-gate package still blocks", []string{
			"policies/gate.rego", "package herd.gate\ndeny contains \"x\" if false",
			"policies/lib/ssh.rego", "package herd.lib\n\nok if { y }",
		}, []string{"policies/lib/ssh.rego:3"}},
		// The audit controls are compiled apart (PrepareAudit), but a
		// file that does not parse blocks the gate too.
		{"syntax error in an audit control still blocks", []string{
			"policies/gate.rego", "package herd.gate\ndeny contains \"x\" if false",
			"policies/audit/ssh.rego", "package herd.audit\n\nok if {",
		}, []string{"policies/audit/ssh.rego:3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := Prepare(context.Background(), files(tt.files...), Options{})
			if err == nil {
				t.Fatalf("Prepare() = %+v, nil; want an error", g)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Prepare() error = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestPrepareEmpty(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files []string
	}{
		{"no files", nil},
		{"only tests and other files", []string{
			"policies/gate_test.rego", "package herd.gate_test\ntest_x if { true }",
			"policies/README.md", "not rego",
		}},
		{"another package", []string{"policies/audit/x.rego", "package herd.audit\ncontrols contains \"x\" if true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := mustPrepare(t, Options{}, tt.files...)
			if !g.Empty() {
				t.Fatal("Empty() = false, want true")
			}
			d, err := g.Evaluate(context.Background(), testInput())
			if err != nil || d.Denied() || len(d.Warn) > 0 {
				t.Fatalf("Evaluate() = %+v, %v; want an empty decision", d, err)
			}
		})
	}
	var nilGate *Gate
	if !nilGate.Empty() {
		t.Error("(*Gate)(nil).Empty() = false, want true")
	}
}

// loopPolicy iterates 10^12 times: only the timeout ends it.
const loopPolicy = `package herd.gate
deny contains "never" if {
	some i in numbers.range(1, 1000000)
	some j in numbers.range(1, 1000000)
	i + j < 0
}`

func TestEvaluateTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	g := mustPrepare(t, Options{Timeout: timeout}, "policies/loop.rego", loopPolicy)
	start := time.Now()
	d, err := g.Evaluate(context.Background(), testInput())
	took := time.Since(start)
	if err == nil {
		t.Fatalf("Evaluate() = %+v, nil; want a timeout error", d)
	}
	if !strings.Contains(err.Error(), "timeout") || !strings.Contains(err.Error(), "policies/loop.rego:") {
		t.Errorf("Evaluate() error = %q, want it to name the timeout and policies/loop.rego:line", err)
	}
	// Generous: the bound must hold, not be exact, on a loaded machine.
	if took > timeout+5*time.Second {
		t.Errorf("Evaluate took %v with a timeout of %v", took, timeout)
	}

	// The caller's own cancellation is an error too, not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Evaluate(ctx, testInput()); err == nil {
		t.Error("Evaluate(cancelled ctx) = nil error, want one")
	}
}

func TestEvaluateConcurrent(t *testing.T) {
	t.Parallel()
	g := mustPrepare(t, Options{}, "policies/gate.rego", `package herd.gate
deny contains sprintf("%s: %s", [input.node, r.id]) if {
	some r in input.catalog.resources
	r.attrs.mode == "0666"
}
warn contains input.facts.os.family if true`)
	fleet := testInput().Fleet
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				in := testInput()
				in.Fleet = fleet // shared, as in a rollout
				in.Node = fmt.Sprintf("node-%d-%d", i, j)
				d, err := g.Evaluate(context.Background(), in)
				if err != nil {
					errs <- err
					return
				}
				want := Decision{Deny: []Message{{Message: in.Node + ": file:/etc/motd"}}, Warn: []Message{{Message: "debian"}}}
				if diff := cmp.Diff(want, d); diff != "" {
					errs <- fmt.Errorf("Evaluate(%s) (-want +got):\n%s", in.Node, diff)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	upgrade := catalogs.Change{
		Changed: []catalogs.ResourceChange{
			{ID: "package:nginx", Type: "package", Name: "nginx", Attrs: []catalogs.AttrChange{{Name: "ensure", From: "1.24", To: "1.26"}}},
			{ID: "file:/etc/nginx.conf", Type: "file", Name: "/etc/nginx.conf", Attrs: []catalogs.AttrChange{{Name: "content", Diff: "-a\n+b\n"}}},
		},
	}
	sourceOnly := catalogs.Change{
		Changed: []catalogs.ResourceChange{{ID: "package:curl", Type: "package", Name: "curl", Attrs: []catalogs.AttrChange{{Name: "provider", From: "apt", To: "apt2"}}}},
	}
	fresh := catalogs.Change{
		Added:   []catalogs.ResourceChange{{ID: "package:nginx", Type: "package", Name: "nginx", Attrs: []catalogs.AttrChange{{Name: "name", To: "nginx"}}}},
		Removed: []catalogs.ResourceChange{{ID: "package:apache2", Type: "package", Name: "apache2", Attrs: []catalogs.AttrChange{{Name: "ensure", From: "2.4"}}}},
	}
	got := Summarize("v2", "v1", 6, map[string]catalogs.Change{
		"web-01": upgrade, "web-02": upgrade, "web-03": sourceOnly, "web-04": fresh, "web-05": {}, "web-06": {Added: []catalogs.ResourceChange{}},
	})
	want := &Fleet{
		Version: "v2", PreviousVersion: "v1", Nodes: 6, Changing: 4,
		Resources: map[string]ResourceCount{
			"package:nginx":        {Changed: 2, Added: 1},
			"file:/etc/nginx.conf": {Changed: 2},
			"package:curl":         {Changed: 1},
			"package:apache2":      {Removed: 1},
		},
		Packages: map[string]PackageCount{
			"nginx":   {Nodes: 3, Versions: map[string]int{"1.24 -> 1.26": 2, "unmanaged -> installed": 1}},
			"apache2": {Nodes: 1, Versions: map[string]int{"2.4 -> unmanaged": 1}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Summarize() (-want +got):\n%s", diff)
	}
	if e := Summarize("v1", "", 0, nil); e.Changing != 0 || e.Resources == nil || e.Packages == nil {
		t.Errorf("Summarize(no changes) = %+v, want zero counts and empty maps", e)
	}
}

func TestInputKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy string
		reads  map[[2]string]bool
	}{
		{"deny contains \"x\" if input.change.added[0].id == \"a\"", map[[2]string]bool{
			{"change", ""}: true, {"change", "added"}: true, {"change", "changed"}: false, {"catalog", ""}: false, {"previous", ""}: false,
		}},
		{"deny contains \"x\" if { c := input.change; c.added[0].id == \"a\" }", map[[2]string]bool{
			{"change", "added"}: true, {"change", "changed"}: true, {"fleet", ""}: false,
		}},
		{"deny contains \"x\" if { some k in [\"a\"]; input[k] == 1 }", map[[2]string]bool{
			{"previous", ""}: true, {"change", "removed"}: true,
		}},
		{"deny contains \"x\" if input.facts.os.family == input.catalog.environment", map[[2]string]bool{
			{"facts", "os"}: true, {"catalog", "environment"}: true, {"catalog", "resources"}: false, {"change", ""}: false,
		}},
	}
	for _, tt := range tests {
		g := mustPrepare(t, Options{}, "policies/gate.rego", "package herd.gate\n"+tt.policy)
		for k, want := range tt.reads {
			if got := g.uses.reads(k[0], k[1]); got != want {
				t.Errorf("%s: reads(%q, %q) = %v, want %v", tt.policy, k[0], k[1], got, want)
			}
		}
	}
}

func TestTestGate(t *testing.T) {
	t.Parallel()
	if tg := mustPrepare(t, Options{}).TestGate(context.Background()); tg != nil {
		t.Error("TestGate of an empty gate is not nil")
	}
	// A test node is gated as a new node: no previous catalog, every
	// resource added, a fleet of one.
	g := mustPrepare(t, Options{}, "policies/gate.rego", `package herd.gate
deny contains {"message": "new node", "resource": "node:" } if input.previous == null
deny contains sprintf("added %d of fleet %d on %s", [count(input.change.added), input.fleet.nodes, input.facts.os.family]) if true
deny contains {"msg": "file:/etc/motd is mentioned", "resource": "file:/etc/motd"} if true`)
	in := testInput()
	denied, err := g.TestGate(context.Background())("web-01", map[string]any(in.Facts), in.Catalog)
	if err != nil {
		t.Fatalf("TestGate: %v", err)
	}
	want := []string{"added 3 of fleet 1 on debian", "file:/etc/motd is mentioned", "node:: new node"}
	if diff := cmp.Diff(want, denied); diff != "" {
		t.Errorf("TestGate() (-want +got):\n%s", diff)
	}
	// A gate error is the test gate's error, never an allow.
	broken := mustPrepare(t, Options{}, "policies/gate.rego", "package herd.gate\ndeny contains x if { x := to_number(input.node) }")
	if d, err := broken.TestGate(context.Background())("web-01", nil, in.Catalog); err == nil || !strings.Contains(err.Error(), "policies/gate.rego:2") {
		t.Errorf("TestGate(broken gate) = %v, %v; want an error naming policies/gate.rego:2", d, err)
	}
}

// TestSchemaHasEveryInputField prepares a gate that reads every field the
// input carries: the schema must know each, or such a gate would not
// compile.
func TestSchemaHasEveryInputField(t *testing.T) {
	t.Parallel()
	mustPrepare(t, Options{}, "policies/gate.rego", `package herd.gate
warn contains "x" if {
	input.node
	input.facts
	some c in [input.catalog, input.previous]
	c.environment
	c.node
	c.version
	f := c.files[_]
	[f.digest, f.path, f.size]
	r := c.resources[_]
	[r.attrs, r.id, r.name, r.type, r.source, r.notify, r.require]
	some l in [input.change.added, input.change.removed, input.change.changed]
	rc := l[_]
	[rc.id, rc.type, rc.name]
	a := rc.attrs[_]
	[a.name, a.from, a.to, a.diff]
	fl := input.fleet
	[fl.version, fl.previous_version, fl.nodes, fl.changing]
	rs := fl.resources[_]
	[rs.added, rs.removed, rs.changed]
	p := fl.packages[_]
	[p.nodes, p.versions["a -> b"]]
	j := input.judge[_]
	[j.attrs, j.id, j.name, j.type, j.source, j.notify, j.require]
}`)
}
