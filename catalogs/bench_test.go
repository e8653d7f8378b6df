package catalogs_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
	"github.com/herdcm/herd/testkit"
)

// BenchmarkCompileNode200 compiles one node of about 200 resources from a
// site parsed once: the per-node cost the server pays on every recompile.
func BenchmarkCompileNode200(b *testing.B) {
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	s, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	f := facts.Facts(testkit.SyntheticFacts(1))
	cat, err := s.Compile("node-1", f)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Compile("node-1", f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(cat.Resources)), "resources")
}

// node200 is node-1's catalog of the 200-resource synthetic site.
func node200(b *testing.B) *catalogs.Catalog {
	b.Helper()
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	s, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	cat, err := s.Compile("node-1", facts.Facts(testkit.SyntheticFacts(1)))
	if err != nil {
		b.Fatal(err)
	}
	return cat
}

// BenchmarkEncodeDigest200 encodes and digests that node's catalog.
func BenchmarkEncodeDigest200(b *testing.B) {
	cat := node200(b)
	enc, _ := cat.Encode()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		enc, err := cat.Encode()
		if err != nil {
			b.Fatal(err)
		}
		_ = catalogs.Digest(enc)
	}
}

// BenchmarkDecodeHead reads that node's environment and file list from
// its encoding, as a server does for each catalog it takes from the store
// (a release, a restart's warm-up); Whole is the full decode it replaced.
func BenchmarkDecodeHead(b *testing.B) {
	enc, err := node200(b).Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Head", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := catalogs.DecodeHead(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var head struct {
				Environment string             `json:"environment"`
				Files       []catalogs.FileRef `json:"files"`
			}
			if err := json.Unmarshal(enc, &head); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(len(enc)), "catalog-bytes")
}

// BenchmarkLoadSite parses the 50-role synthetic site: the once-per-version
// cost.
func BenchmarkLoadSite(b *testing.B) {
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileFleet10k compiles, encodes and digests 10,000 nodes with
// varied facts from one site version, on every core: what a site change
// costs the server. One op is the whole fleet.
func BenchmarkCompileFleet10k(b *testing.B) {
	const nodes = 10000
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 20})
	s, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	fs := make([]facts.Facts, nodes)
	for i := range fs {
		fs[i] = facts.Facts(testkit.SyntheticFacts(i))
	}
	var resources atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		resources.Store(0)
		var next atomic.Int64
		var g errgroup.Group
		for range runtime.GOMAXPROCS(0) {
			g.Go(func() error {
				for {
					i := int(next.Add(1)) - 1
					if i >= nodes {
						return nil
					}
					cat, err := s.Compile(fmt.Sprintf("node-%d", i), fs[i])
					if err != nil {
						return err
					}
					enc, err := cat.Encode()
					if err != nil {
						return err
					}
					_ = catalogs.Digest(enc)
					resources.Add(int64(len(cat.Resources)))
				}
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(resources.Load())/nodes, "resources/node")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/nodes, "ns/node")
}

// BenchmarkDiff diffs two catalogs of 192 resources that differ in 5: two
// file contents (unified diffs), a package version, a service's command
// and a file added in place of another. It is the per-node cost of a
// rollout's stored diff and of herd diff.
func BenchmarkDiff(b *testing.B) {
	build := func(next bool) *catalogs.Catalog {
		c := &catalogs.Catalog{Node: "web-001", Version: "v"}
		for i := range 64 {
			content := fmt.Sprintf("# app %d, managed by Herd\nlisten = %d\nworkers = 4\nlog_level = info\nlog_format = json\nserver_name = web-001\n", i, 8000+i)
			if next && i < 2 {
				content = strings.Replace(content, "workers = 4", "workers = 8", 1)
			}
			path := fmt.Sprintf("/etc/app%02d.conf", i)
			ensure, run := "1.24", []string{"/usr/bin/app", "-c", path}
			if next && i == 63 {
				path = "/etc/app99.conf"
			}
			if next && i == 10 {
				ensure = "1.26"
			}
			if next && i == 20 {
				run = append(run, "-v")
			}
			c.Resources = append(c.Resources,
				catalogs.Resource{ID: "file:" + path, Type: "file", Name: path, Source: "roles/web.toml:3",
					Attrs: map[string]any{"path": path, "content": content, "mode": "0644"}, Notify: []string{fmt.Sprintf("service:app%02d", i)}},
				catalogs.Resource{ID: fmt.Sprintf("package:app%02d", i), Type: "package", Name: fmt.Sprintf("app%02d", i), Source: "roles/web.toml:9",
					Attrs: map[string]any{"name": fmt.Sprintf("app%02d", i), "ensure": ensure}},
				catalogs.Resource{ID: fmt.Sprintf("service:app%02d", i), Type: "service", Name: fmt.Sprintf("app%02d", i), Source: "roles/web.toml:12",
					Attrs:   map[string]any{"name": fmt.Sprintf("app%02d", i), "run": run, "env": map[string]string{"PORT": fmt.Sprint(8000 + i)}},
					Require: []string{fmt.Sprintf("package:app%02d", i)}},
			)
		}
		slices.SortFunc(c.Resources, func(x, y catalogs.Resource) int { return strings.Compare(x.ID, y.ID) })
		return c
	}
	prev, next := build(false), build(true)
	ch := catalogs.Diff(prev, next, nil)
	if len(prev.Resources) != 192 || ch.Count() != 6 {
		// 5 changes: the renamed file counts as one removed and one added.
		b.Fatalf("%d resources, %d changed resources; want 192 and 6", len(prev.Resources), ch.Count())
	}
	b.ReportAllocs()
	for b.Loop() {
		catalogs.Diff(prev, next, nil)
	}
}

// BenchmarkCompileNode200Secrets compiles that node with 20 secrets in its
// data, each used by a resource of its own: opening (cached after the
// first compile), tracking and sealing to the node's key. Issue 12 asks
// for at most 1 ms median.
func BenchmarkCompileNode200Secrets(b *testing.B) {
	s, _, opts, f := secretsBenchSite(b)
	cat, err := s.CompileWith("node-1", f, opts)
	if err != nil {
		b.Fatal(err)
	}
	sealed := 0
	for _, r := range cat.Resources {
		for _, v := range r.Attrs {
			if catalogs.IsSensitive(v) {
				sealed++
			}
		}
	}
	if sealed != 20 {
		b.Fatalf("%d sealed values, want 20", sealed)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.CompileWith("node-1", f, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(cat.Resources)), "resources")
}

// BenchmarkCompileNode200SecretsCold is that compile with nothing cached:
// each of the 20 secrets opened (age: one X25519) and sealed (two), as
// on the first compile after the server starts or a secret changes.
func BenchmarkCompileNode200SecretsCold(b *testing.B) {
	s, text, opts, f := secretsBenchSite(b)
	b.ReportAllocs()
	for b.Loop() {
		keys, err := catalogs.ParseSecretKeys([]byte(text))
		if err != nil {
			b.Fatal(err)
		}
		opts.Secrets = keys
		if _, err := s.CompileWith("node-1", f, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// secretsBenchSite is the synthetic site of BenchmarkCompileNode200 with
// 20 secrets in its common data and a resource using each in role-0,
// which every node has.
func secretsBenchSite(b *testing.B) (*catalogs.Site, string, catalogs.CompileOptions, facts.Facts) {
	b.Helper()
	dir := testkit.SyntheticSite(b, testkit.SyntheticOptions{Roles: 50, RolesPerNode: 10, PerRole: 18})
	text, err := catalogs.GenerateSecretKey()
	if err != nil {
		b.Fatal(err)
	}
	keys, err := catalogs.ParseSecretKeys([]byte(text))
	if err != nil {
		b.Fatal(err)
	}
	var data, role strings.Builder
	for i := range 20 {
		v, err := catalogs.EncryptSecret(keys.Recipient(), fmt.Appendf(nil, "secret-value-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&data, "secret_%d = %q\n", i, v)
		fmt.Fprintf(&role, "\n[[file]]\npath = \"/etc/secret-%d.conf\"\ncontent = \"password={{ .params.secret_%d }}\\n\"\nmode = \"0600\"\n", i, i)
	}
	// Before the file's first table, so that the keys are top-level.
	common := filepath.Join(dir, "data/common.toml")
	old, err := os.ReadFile(common)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(common, append([]byte(data.String()), old...), 0o644); err != nil {
		b.Fatal(err)
	}
	appendFile(b, filepath.Join(dir, "roles/role-0.toml"), role.String())
	s, err := catalogs.Load(context.Background(), dir, catalogs.LoadOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	node, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	opts := catalogs.CompileOptions{Secrets: keys, NodeKey: node.PublicKey()}
	return s, text, opts, facts.Facts(testkit.SyntheticFacts(1))
}

func appendFile(b *testing.B, path, text string) {
	b.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCompileReuse compiles one node that uses 20 instances of a
// definition (each a templated config file, a directory and a service,
// one with a nested definition) and 3 for_each loops of 50 elements
// (users, files from a map, packages): issue 13's per-node cost of reuse.
func BenchmarkCompileReuse(b *testing.B) {
	files := map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"web\"]\n",
		"defines/vhost.toml": `
[params]
port = { type = "integer", default = 80 }
root = { type = "string", default = "/srv" }

[[file]]
path = "/etc/vhost/{{ .params.name }}"
ensure = "directory"

[[file]]
path = "/etc/vhost/{{ .params.name }}/site.conf"
template = "vhost.conf.tmpl"
notify = ["service:vhost-{{ .params.name }}"]

[[service]]
name = "vhost-{{ .params.name }}"
run = ["/usr/sbin/httpd", "--port", "{{ .params.port }}"]

[[logrotate]]
name = "{{ .params.name }}"
`,
		"defines/logrotate.toml": `
[[file]]
path = "/etc/logrotate.d/{{ .params.name }}"
content = "/var/log/{{ .params.name }}/*.log { weekly }\n"
`,
		"templates/vhost.conf.tmpl": "server {{ .params.name }} {\n  listen {{ .params.port }};\n  root {{ .params.root }}/{{ .params.name }};\n}\n",
	}
	var role strings.Builder
	role.WriteString("[params]\nadmins = [")
	for i := range 50 {
		fmt.Fprintf(&role, "%q, ", fmt.Sprintf("admin%02d", i))
	}
	role.WriteString("]\npkgs = [")
	for i := range 50 {
		fmt.Fprintf(&role, "%q, ", fmt.Sprintf("pkg%02d", i))
	}
	role.WriteString("]\n[params.motds]\n")
	for i := range 50 {
		fmt.Fprintf(&role, "m%02d = \"message %d\"\n", i, i)
	}
	role.WriteString(`
[[user]]
for_each = "params.admins"
name = "{{ .each.value }}"
groups = ["adm"]

[[group]]
name = "adm"

[[file]]
for_each = "params.motds"
path = "/etc/motd.d/{{ .each.key }}"
content = "{{ .each.value }}\n"

[[package]]
for_each = "params.pkgs"
name = "{{ .each.value }}"
`)
	for i := range 20 {
		fmt.Fprintf(&role, "\n[[vhost]]\nname = \"site%02d\"\nport = %d\n", i, 8000+i)
	}
	files["roles/web.toml"] = role.String()
	s, err := catalogs.Load(context.Background(), testkit.WriteSite(b, files), catalogs.LoadOptions{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	f := facts.Facts(testkit.SyntheticFacts(1))
	cat, err := s.Compile("node-1", f)
	if err != nil {
		b.Fatal(err)
	}
	if want := 50 + 1 + 50 + 50 + 20*4; len(cat.Resources) != want {
		b.Fatalf("the catalog has %d resources, want %d", len(cat.Resources), want)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Compile("node-1", f); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(cat.Resources)), "resources")
}
