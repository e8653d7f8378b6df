package catalogs

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// explainExample explains resource of web-01 in the example site.
func explainExample(t *testing.T, resource string) *Explanation {
	t.Helper()
	s := loadExample(t)
	ex, _, err := s.Explain("web-01", readFactsFile(t, exampleSite+"/tests/facts/debian12.json"), CompileOptions{Placeholders: true}, resource)
	if err != nil {
		t.Fatalf("Explain(web-01, %q): %v", resource, err)
	}
	return ex
}

func attrOf(t *testing.T, r *ResourceExplanation, name string) AttrExplanation {
	t.Helper()
	i := slices.IndexFunc(r.Attributes, func(a AttrExplanation) bool { return a.Name == name })
	if i < 0 {
		t.Fatalf("%s: no attribute %s in %+v", r.ID, name, r.Attributes)
	}
	return r.Attributes[i]
}

func originOf(t *testing.T, os []Origin, read string) Origin {
	t.Helper()
	i := slices.IndexFunc(os, func(o Origin) bool { return o.Read == read })
	if i < 0 {
		t.Fatalf("no origin for %s in %+v", read, os)
	}
	return os[i]
}

// TestExplainCatalogIsTheCompile: the explained compile is the real one,
// its catalog byte for byte a plain compile's.
func TestExplainCatalogIsTheCompile(t *testing.T) {
	t.Parallel()
	s := loadExample(t)
	f := readFactsFile(t, exampleSite+"/tests/facts/debian12.json")
	for _, node := range []string{"web-01", "db-01", "sandbox"} {
		plain, err := s.CompileWith(node, f, CompileOptions{Placeholders: true})
		if err != nil {
			t.Fatal(err)
		}
		ex, cat, err := s.Explain(node, f, CompileOptions{Placeholders: true}, "")
		if err != nil {
			t.Fatalf("Explain(%s): %v", node, err)
		}
		a, _ := plain.Encode()
		b, _ := cat.Encode()
		if string(a) != string(b) {
			t.Errorf("Explain(%s) compiled a different catalog than CompileWith", node)
		}
		if ex.Digest != Digest(a) {
			t.Errorf("Explain(%s).Digest = %s, want %s", node, ex.Digest, Digest(a))
		}
		if len(ex.Resources) != len(plain.Resources) {
			t.Errorf("Explain(%s) lists %d resources, the catalog has %d", node, len(ex.Resources), len(plain.Resources))
		}
	}
}

func TestExplainClassification(t *testing.T) {
	t.Parallel()
	ex := explainExample(t, "")
	var got []string
	for _, r := range ex.Rules {
		got = append(got, r.At+" "+strings.Join(r.Roles, ",")+" "+map[bool]string{true: "yes", false: "no"}[r.Matched])
	}
	want := []string{"nodes.toml:6:3 base,herd yes", "nodes.toml:10:3 web yes", "nodes.toml:17:3 db no"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if !strings.Contains(ex.Rules[2].Why, "matches none of db-*") {
		t.Errorf("db rule: why = %q, want the glob that did not match", ex.Rules[2].Why)
	}
	wantRoles := []RoleOrigin{
		{Role: "base", File: "roles/base.toml", By: "rule", At: "nodes.toml:7:10", Via: "rule at nodes.toml:6:3"},
		{Role: "herd", File: "roles/herd.toml", By: "rule", At: "nodes.toml:7:18", Via: "rule at nodes.toml:6:3"},
		{Role: "web", File: "roles/web.toml", By: "rule", At: "nodes.toml:12:10", Via: "rule at nodes.toml:10:3"},
	}
	if diff := cmp.Diff(wantRoles, ex.Roles); diff != "" {
		t.Errorf("roles (-want +got):\n%s", diff)
	}
}

// TestExplainDataLevels: a templated attribute names each param it read
// and the level that won, over the levels it overrode.
func TestExplainDataLevels(t *testing.T) {
	t.Parallel()
	r := explainExample(t, "file:/etc/herd-demo-web/app.conf").Resource
	content := attrOf(t, r, "content")
	if content.How != "template file templates/app.conf.tmpl" || content.At != "roles/web.toml:25:1" {
		t.Errorf("content: how %q at %q", content.How, content.At)
	}
	workers := originOf(t, content.From, "params.workers")
	want := Origin{Read: "params.workers", Value: int64(8), Level: "nodes/{node}", At: "data/nodes/web-01.toml:2:1",
		Overrides: []string{"nodes.toml at nodes.toml:14:1", "role defaults at roles/web.toml:6:1"}}
	if diff := cmp.Diff(want, workers); diff != "" {
		t.Errorf("params.workers (-want +got):\n%s", diff)
	}
	port := originOf(t, content.From, "params.port")
	if port.Level != "role defaults" || port.At != "roles/web.toml:5:1" {
		t.Errorf("params.port came from %s at %s, want role defaults at roles/web.toml:5:1", port.Level, port.At)
	}
	if mode := attrOf(t, r, "mode"); mode.How != "written" || mode.At != "roles/web.toml:26:1" || mode.Value != "0644" {
		t.Errorf("mode = %+v", mode)
	}
}

// TestExplainDefinitionInstance: a resource of a use of a definition
// names the use, and its attributes the use's parameters.
func TestExplainDefinitionInstance(t *testing.T) {
	t.Parallel()
	r := explainExample(t, "file:/etc/herd-demo-web/sites/shop.conf").Resource
	if diff := cmp.Diff([]UseStep{{Use: "vhost:shop", At: "roles/web.toml:50:3", Definition: "defines/vhost.toml"}}, r.Uses); diff != "" {
		t.Errorf("uses (-want +got):\n%s", diff)
	}
	if r.DeclaredAt != "defines/vhost.toml:13:3" || r.Role != "web" {
		t.Errorf("declared at %s in role %s", r.DeclaredAt, r.Role)
	}
	port := originOf(t, attrOf(t, r, "content").From, "params.port")
	if diff := cmp.Diff(Origin{Read: "params.port", Value: int64(8081), Level: "use of vhost:shop", At: "roles/web.toml:52:1"}, port); diff != "" {
		t.Errorf("params.port (-want +got):\n%s", diff)
	}
	// The blog gives no server_names: the definition's default.
	blog := explainExample(t, "file:/etc/herd-demo-web/sites/blog.conf").Resource
	names := originOf(t, attrOf(t, blog, "content").From, "params.server_names")
	if names.Level != "default of vhost" || !strings.HasPrefix(names.At, "defines/vhost.toml:") {
		t.Errorf("blog's server_names came from %s at %s, want the definition's default", names.Level, names.At)
	}
}

// TestExplainForEachElement: a resource of a for_each names its element
// and the data the for_each iterated over.
func TestExplainForEachElement(t *testing.T) {
	t.Parallel()
	r := explainExample(t, "authorized_key:carol@herd.example").Resource
	if r.Element == nil || r.Element.Key != "carol" || r.Element.ForEach != "params.web_admins" || r.Element.At != "roles/web.toml:76:1" {
		t.Fatalf("element = %+v", r.Element)
	}
	src := originOf(t, r.Element.From, "params.web_admins")
	if src.Level != "roles/{role}" || !strings.HasPrefix(src.At, "data/roles/web.toml") {
		t.Errorf("params.web_admins came from %s at %s, want data/roles/web.toml", src.Level, src.At)
	}
	user := originOf(t, attrOf(t, r, "user").From, "each.key")
	if user.Value != "carol" || user.Level != "for_each params.web_admins" {
		t.Errorf("user reads each.key = %v from %s", user.Value, user.Level)
	}
}

// TestExplainEdges: explicit edges name where they were written, from
// either end, and implicit ones say why.
func TestExplainEdges(t *testing.T) {
	t.Parallel()
	r := explainExample(t, "service:demo-web").Resource
	want := []EdgeExplanation{
		{Relation: "after", Other: "file:/etc/herd-demo-web/app.conf", Kind: "notify", Refresh: "refreshed by", DeclaredOn: "file:/etc/herd-demo-web/app.conf", At: "roles/web.toml:27:11", Why: "notify at roles/web.toml:27:11"},
		{Relation: "after", Other: "package:herd-demo-web", Kind: "require", DeclaredOn: "service:demo-web", At: "roles/web.toml:34:12", Why: "require at roles/web.toml:34:12"},
	}
	if diff := cmp.Diff(want, r.Edges); diff != "" {
		t.Errorf("edges of service:demo-web (-want +got):\n%s", diff)
	}
	if r.When == nil || r.When.Condition != "facts.os.family == 'debian'" || originOf(t, r.When.From, "facts.os.family").Value != "debian" {
		t.Errorf("when = %+v", r.When)
	}
	// A require of a source directory waits for every file of its tree.
	pkgs := explainExample(t, "file:/var/lib/herd-demo-repo/Packages").Resource
	wantTree := []EdgeExplanation{
		{Relation: "after", Other: "file:/var/lib/herd-demo-repo", Kind: "implicit", DeclaredOn: "file:/var/lib/herd-demo-repo/Packages", Why: "parent directory (implicit)"},
		{Relation: "before", Other: "apt_repository:herd-demo", Kind: "require", DeclaredOn: "apt_repository:herd-demo", At: "roles/web.toml:120:12",
			Why: "require at roles/web.toml:120:12, to every file of the source directory of file:/var/lib/herd-demo-repo"},
	}
	if diff := cmp.Diff(wantTree, pkgs.Edges); diff != "" {
		t.Errorf("edges of a file of a source directory (-want +got):\n%s", diff)
	}
	if pkgs.Tree != "file:/var/lib/herd-demo-repo" {
		t.Errorf("tree = %q", pkgs.Tree)
	}
	sysctl := explainExample(t, "sysctl:net.core.somaxconn").Resource
	if diff := cmp.Diff([]EdgeExplanation{{Relation: "after", Other: "file:/etc/sysctl.d", Kind: "implicit", DeclaredOn: "sysctl:net.core.somaxconn", Why: "directory (implicit)"}}, sysctl.Edges); diff != "" {
		t.Errorf("edges of the sysctl (-want +got):\n%s", diff)
	}
}

// TestExplainUseEdges: an edge written on a use of a definition reaches
// each of its resources, and says so; an edge to a use reaches them all.
func TestExplainUseEdges(t *testing.T) {
	t.Parallel()
	dir := writeSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"app\"]\n",
		"defines/site.toml": `[params]
[[file]]
path = "/srv/{{ .params.name }}"
ensure = "directory"
`,
		"roles/app.toml": `[[package]]
name = "web"

[[site]]
name = "shop"
require = ["package:web"]

[[service]]
name = "web"
run = ["/usr/bin/web"]
require = ["site:shop"]
`,
	})
	s := loadDir(t, dir)
	ex, _, err := s.Explain("n1", nil, CompileOptions{Placeholders: true}, "file:/srv/shop")
	if err != nil {
		t.Fatal(err)
	}
	want := []EdgeExplanation{
		{Relation: "after", Other: "package:web", Kind: "require", DeclaredOn: "file:/srv/shop", At: "roles/app.toml:6:12",
			Why: "require at roles/app.toml:6:12, written on the use site:shop at roles/app.toml:4:3"},
		{Relation: "before", Other: "service:web", Kind: "require", DeclaredOn: "service:web", At: "roles/app.toml:11:12",
			Why: "require at roles/app.toml:11:12, to every resource of the use site:shop at roles/app.toml:4:3"},
	}
	if diff := cmp.Diff(want, ex.Resource.Edges); diff != "" {
		t.Errorf("edges (-want +got):\n%s", diff)
	}
}

// TestExplainSensitive: neither a sensitive attribute's value nor the
// secret it came from shows, in a compile that really opened the secrets;
// where it came from does.
func TestExplainSensitive(t *testing.T) {
	t.Parallel()
	keys := testSecretKeys(t)
	s := loadDir(t, secretSite(t, keys.Recipient(), nil))
	opts := CompileOptions{Secrets: keys, NodeKey: testNodeKey(t).PublicKey()}
	all, _, err := s.Explain("a", nil, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all.Resources {
		ex, _, err := s.Explain("a", nil, opts, r.ID)
		if err != nil {
			t.Fatalf("Explain(%s): %v", r.ID, err)
		}
		b, err := json.Marshal(ex)
		if err != nil {
			t.Fatal(err)
		}
		assertNoPlain(t, "the explanation of "+r.ID, b)
	}
	ex, _, err := s.Explain("a", nil, opts, "file:/etc/app/db.conf")
	if err != nil {
		t.Fatal(err)
	}
	content := attrOf(t, ex.Resource, "content")
	if !content.Sensitive || content.Value != SensitiveText {
		t.Errorf("content = %v (sensitive %v), want %s", content.Value, content.Sensitive, SensitiveText)
	}
	pw := originOf(t, content.From, "params.db.password")
	if pw.Value != SensitiveText || pw.Level != "common" || pw.At != "data/common.toml:4:1" {
		t.Errorf("params.db.password = %+v, want (sensitive) from common at data/common.toml:4:1", pw)
	}
	// What a sensitive value was made from does not show, secret or not.
	if user := originOf(t, content.From, "params.db.user"); user.Value != SensitiveText || user.Level != "common" {
		t.Errorf("params.db.user = %+v, want (sensitive) from common", user)
	}
	plain, _, err := s.Explain("a", nil, opts, "file:/etc/app/plain.conf")
	if err != nil {
		t.Fatal(err)
	}
	if user := originOf(t, attrOf(t, plain.Resource, "content").From, "params.db.user"); user.Value != "app" {
		t.Errorf("params.db.user in a plain value = %v, want app", user.Value)
	}
}

func TestExplainUnknownResource(t *testing.T) {
	t.Parallel()
	s := loadExample(t)
	f := readFactsFile(t, exampleSite+"/tests/facts/debian12.json")
	_, _, err := s.Explain("web-01", f, CompileOptions{Placeholders: true}, "package:herd-demo-tool")
	var unknown *UnknownResourceError
	if !errors.As(err, &unknown) {
		t.Fatalf("Explain(package:herd-demo-tool) = %v, want an UnknownResourceError", err)
	}
	if len(unknown.Near) == 0 || unknown.Near[0] != "package:herd-demo-tools" {
		t.Errorf("near = %v, want package:herd-demo-tools first", unknown.Near)
	}
	if _, _, err := s.Explain("web-01", f, CompileOptions{Placeholders: true}, "nocolon"); err == nil || errors.As(err, &unknown) {
		t.Errorf("Explain(nocolon) = %v, want a bad reference", err)
	}
}

// FuzzExplain feeds Explain the resource argument an operator (or an
// Admin client) sends: it never panics, and it explains exactly the
// resource asked for or says why not.
func FuzzExplain(f *testing.F) {
	s := loadExample(f)
	facts := readFactsFile(f, exampleSite+"/tests/facts/debian12.json")
	for _, seed := range []string{"", "file:/etc/motd", "vhost:shop", "package:", ":x", "file:/etc/herd-demo-web/sites/shop.conf",
		"user:carol", "sysctl:net.core.somaxconn", "file:/var/lib/herd-demo-repo/Packages", "ini:/etc/herd-demo-web/ports.ini: [shop] port", "x:\x00\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, resource string) {
		ex, _, err := s.Explain("web-01", facts, CompileOptions{Placeholders: true}, resource)
		var unknown *UnknownResourceError
		switch {
		case err == nil && resource == "":
			if ex.Resource != nil || len(ex.Resources) == 0 {
				t.Fatalf("Explain(%q) = %+v, want the resource list", resource, ex)
			}
		case err == nil:
			if ex.Resource == nil || ex.Resource.ID != resource {
				t.Fatalf("Explain(%q) explained %+v", resource, ex.Resource)
			}
			if _, err := json.Marshal(ex); err != nil {
				t.Fatalf("Explain(%q): %v", resource, err)
			}
		case errors.As(err, &unknown):
			if unknown.ID != resource || slices.Contains(unknown.Near, resource) {
				t.Fatalf("Explain(%q) = %v", resource, err)
			}
		case checkRefShape(resource) == nil:
			t.Fatalf("Explain(%q) = %v, want an explanation or an unknown resource", resource, err)
		}
	})
}
