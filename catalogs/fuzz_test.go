package catalogs

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/herdcm/herd/facts"
)

// FuzzLoadSite loads a site whose role, nodes.toml and template come from
// the fuzzer and compiles a node. Whatever the input, Load and Compile must
// not panic, must fail only with positioned Diagnostics, and a compiled
// catalog must encode and decode back to the same bytes.
func FuzzLoadSite(f *testing.F) {
	f.Add("[[node]]\nroles = [\"r\"]\n", "[[file]]\npath = \"/etc/x\"\ncontent = \"{{ .node }}\"\nmode = \"0644\"\n", "{{ .params.a }}", "")
	f.Add("[[node]]\nmatch = \"w*\"\nwhen = \"facts.os.family == 'debian'\"\nroles = [\"r\"]\n[node.params]\na = 1\n",
		"include = [\"r\"]\n[params]\na = 2\n[[service]]\nname = \"s\"\nrun = [\"/bin/s\"]\nrequire = [\"file:/x\"]\nhealth = { tcp = \"h:1\" }\n", "", "")
	f.Add("[[node]]\nroles = [\"r\"]\n", "[[exec]]\ncommand = [\"/bin/true\"]\nnotify = \"exec:/bin/true\"\nwhen = \"params.x?.y == 1\"\n", "{{ range .facts }}{{ end }}", "")
	f.Add("[[node]]\nroles = [\"r\"]\n", "[[file]]\npath = \"/a\"\nrequire = [\"file:/a/b\"]\n[[file]]\npath = \"/a/b\"\ntemplate = \"t\"\n", "{{ template \"t\" }}", "")
	// herd.toml's [policy] and [[rollout.stage]] (issue 10).
	for _, herd := range []string{
		"[policy]\non_deny = \"node\"\ntimeout = \"250ms\"\n\n[[rollout.stage]]\nname = \"canary\"\nnodes = [\"web-*\"]\nbake = \"2s\"\nmax_failed = 0\n\n[[rollout.stage]]\nname = \"rest\"\nmax_failed = \"10%\"\n",
		"[[rollout.stage]]\nname = \"rehearsal\"\nnoop = true\npercent = 5.5\n[[rollout.stage]]\nname = \"c\"\nwhen = \"facts.os.family == 'debian' && node matches '^w'\"\napprove = \"manual\"\n",
		"[[rollout.stage]]\nname = \"bad\"\nwhen = \"facts.os.nope.x\"\npercent = 101\nbake = \"-1s\"\nmax_failed = \"nan%\"\n[rollout]\n",
		"[policy]\non_deny = 1\n[[rollout.stage]]\nname = \"a\"\n[[rollout.stage]]\nname = \"a\"\nnodes = [\"[\"]\n",
	} {
		f.Add("[[node]]\nroles = [\"r\"]\n", "[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\n", "", herd)
	}
	// Templates over budget (issue 9): each must fail at its file:line,
	// quickly, whatever the fuzzer makes of them.
	for _, tmpl := range []string{
		"{{ range $i := 100000 }}{{ range $j := 100000 }}{{ $i }} {{ $j }}\n{{ end }}{{ end }}",
		"{{ indent 1e9 .node }}",
		"{{ define \"r\" }}{{ template \"r\" . }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}",
		"{{ $s := \"a\" }}{{ range 64 }}{{ $s = replace \"a\" \"aa\" $s }}{{ end }}{{ $s }}",
		"{{ printf \"%*d\" 999999 1 }}{{ html (printf \"%0900000d\" 0) }}",
		"{{ range 3 }}{{ if eq . 1 }}{{ break }}{{ end }}{{ . }}{{ else }}none{{ end }}",
	} {
		f.Add("[[node]]\nroles = [\"r\"]\n", "[[file]]\npath = \"/etc/x\"\ntemplate = \"t\"\n[[file]]\npath = \"/etc/y\"\ncontent = '''"+tmpl+"'''\n", tmpl, "")
	}
	f.Fuzz(func(t *testing.T, nodes, role, tmpl, herd string) {
		fsys := fstest.MapFS{
			"herd.toml":        {Data: []byte(herd)},
			"nodes.toml":       {Data: []byte(nodes)},
			"roles/r.toml":     {Data: []byte(role)},
			"templates/t":      {Data: []byte(tmpl)},
			"data/common.toml": {Data: []byte("a = 3\n")},
			"files/f":          {Data: []byte("static")},
		}
		s, _, err := loadFS(fsSiteDir(fsys), LoadOptions{Version: "fuzz"}, defaultLimits)
		if err != nil {
			checkDiagnostics(t, err)
			return
		}
		nodeFacts := facts.Facts{"os": map[string]any{"family": "debian"}}
		for i := range s.Settings.Rollout.Stages {
			// Selects may fail on these facts, never panic.
			_, _ = s.Settings.Rollout.Stages[i].Selects("web-01", nodeFacts)
		}
		if p := s.Settings.Policy; (p.OnDeny != "block" && p.OnDeny != "node") || p.Timeout <= 0 {
			t.Fatalf("a loaded site has policy %+v", p)
		}
		cat, err := s.Compile("web-01", nodeFacts)
		if err != nil {
			checkDiagnostics(t, err)
			return
		}
		for _, r := range cat.Resources {
			if c := r.String("content"); len(c) > MaxRenderBytes {
				t.Fatalf("%s: a rendered content of %d bytes passed the %d-byte cap", r.ID, len(c), MaxRenderBytes)
			}
		}
		b, err := cat.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		back, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(c)): %v\n%s", err, b)
		}
		b2, err := back.Encode()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("encoding is not stable over a round trip:\n%s\n%s", b, b2)
		}
	})
}

func checkDiagnostics(t *testing.T, err error) {
	t.Helper()
	var ds Diagnostics
	if !errors.As(err, &ds) {
		t.Fatalf("error %v is %T, want Diagnostics", err, err)
	}
	if len(ds) == 0 {
		t.Fatal("empty Diagnostics returned as an error")
	}
	for _, d := range ds {
		if d.Msg == "" {
			t.Fatalf("diagnostic without a message at %s", d.Pos)
		}
	}
}

// FuzzCondition compiles and runs arbitrary conditions: no input may panic
// or hang the compiler, and a compiled condition yields a bool or an error.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{
		"facts.os.family == 'debian'", "node startsWith 'web-'", "params.workers > 2 && 'ssd' in facts.disks",
		"facts.memory.total_bytes >= 1024 * 1024 * 1024", "len(facts.mounts) > 0", "params.x?.y ?? false",
		"now() > 0", "1/0 == 1", "facts.a.b.c.d", "(", "environment matches '^prod'",
	} {
		f.Add(s)
	}
	env := compileEnv("web-01", "production", facts.Facts{
		"os":     map[string]any{"family": "debian"},
		"disks":  []any{"ssd", "hdd"},
		"mounts": []any{map[string]any{"path": "/"}},
		"memory": map[string]any{"total_bytes": int64(1 << 30)},
	}, map[string]any{"workers": int64(4)})
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 500 {
			return
		}
		c, err := compileCondition(src, Pos{File: "roles/r.toml", Line: 1})
		if err != nil {
			var d Diagnostic
			if !errors.As(err, &d) || d.File == "" {
				t.Fatalf("compile error %v is not a positioned Diagnostic", err)
			}
			return
		}
		if _, err := c.eval(env); err != nil && !strings.Contains(err.Error(), "roles/r.toml") {
			t.Fatalf("eval error %v does not name the file", err)
		}
	})
}

// FuzzParseTOML checks that every position the indexer records lies
// inside the document, whatever the document.
func FuzzParseTOML(f *testing.F) {
	f.Add("a = 1\n[t]\nb = [1, {c = 2}]\n[[x]]\ny.z = 3\n[[x]]\n[x.w]\nq = 'r'\n")
	f.Add("[[a.b]]\n[[a.b]]\n[a.b.c]\nd = 1\n")
	f.Add("[policy]\non_deny = \"block\"\n[[rollout.stage]]\nname = \"canary\"\nnodes = [\"web-*\"]\n[[rollout.stage]]\nname = \"rest\"\npercent = 100\n")
	// Leading zeroes: the "write the mode as a string" hint reads the
	// line back at the error's column.
	f.Add("[[file]]\nmode = 0600\n")
	f.Add("x = { mode = 0755 }\n")
	f.Add("é = 0600")
	f.Add("a = [01, 0_7]\r\nb=00")
	f.Fuzz(func(t *testing.T, src string) {
		d, err := parseTOML("f.toml", []byte(src))
		if err != nil {
			var diag Diagnostic
			if !errors.As(err, &diag) {
				t.Fatalf("error %v is not a Diagnostic", err)
			}
			return
		}
		lines := strings.Count(src, "\n") + 1
		for k, p := range d.pos {
			if p.Line < 1 || p.Line > lines || p.Col < 1 {
				t.Fatalf("position of %q is %v, outside a %d-line document", k, p, lines)
			}
		}
	})
}

// FuzzDecode feeds arbitrary bytes to Decode, the agent's entry point for
// catalogs off the wire and out of its cache.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"environment":"p","files":[],"node":"n","resources":[{"attrs":{"a":1,"b":["x"],"c":{"k":"v"},"d":true},"id":"file:/a","name":"/a","source":"r:1","type":"file"}],"version":"v"}`))
	f.Add([]byte(`{"resources":[{"attrs":{"a":1.5}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode(Decode(b)): %v", err)
		}
		c2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(b))): %v\n%s", err, enc)
		}
		enc2, _ := c2.Encode()
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// FuzzPrintfSize holds printfSize, the bound the template functions check
// before formatting, to what fmt really prints: a bound under the truth
// would let printf build more than a render may produce.
func FuzzPrintfSize(f *testing.F) {
	for _, format := range []string{
		"%s", "%d:%s", "%999999d", "%*d", "%[1]s%[1]s%[1]s", "%q", "% x", "%#v", "%+q", "%.1000f",
		"%v %v %v", "%%%d%%", "%!", "%[3]*.[2]*[1]f", "%-08.3e", "%U", "%b", "%c",
	} {
		f.Add(format, "a\x00\u00e9\U0001F600\"", int64(42), 1e308, true)
	}
	f.Fuzz(func(t *testing.T, format, s string, n int64, x float64, b bool) {
		if len(format) > 200 || len(s) > 1000 {
			return
		}
		for _, args := range [][]any{
			{s, n, x, b},
			{[]any{s, n, map[string]any{s: []any{x, b, nil}}}},
			{map[string]any{"k": s, s: []any{[]any{}, []any{[]any{}}}}, []string{s, s}},
			{int(n % 2_000_000), s},
		} {
			bound := printfSize(format, args)
			if bound > 4*MaxRenderBytes {
				continue // refused anyway; not worth formatting
			}
			if got := len(fmt.Sprintf(format, args...)); got > bound {
				t.Fatalf("printfSize(%q, %v) = %d, but fmt printed %d bytes", format, args, bound, got)
			}
			if got, bound := len(fmt.Sprint(args...)), printArgsSize(args)+len(args); got > bound {
				t.Fatalf("printArgsSize(%v) = %d, but fmt printed %d bytes", args, bound, got)
			}
		}
	})
}

// FuzzDiff diffs two catalogs decoded from fuzzed JSON: Diff never panics,
// a catalog against itself is no change, and two catalogs differ exactly
// when their resources (by id, the first of a duplicate id) differ in
// anything but their source position. The grouped text of the change is
// regrouped without losing or making up a change, and written, carrying
// no control character from the catalogs.
func FuzzDiff(f *testing.F) {
	base := `{"environment":"p","files":[],"node":"n","resources":[` +
		`{"attrs":{"content":"a\nb\n","mode":"0644","path":"/etc/a"},"id":"file:/etc/a","name":"/etc/a","notify":["service:s"],"source":"r:1","type":"file"},` +
		`{"attrs":{"ensure":"1.24","name":"nginx"},"id":"package:nginx","name":"nginx","source":"r:5","type":"package"},` +
		`{"attrs":{"env":{"A":"1"},"name":"s","run":["/bin/s"]},"id":"service:s","name":"s","require":["package:nginx"],"source":"r:9","type":"service"}],"version":"v"}`
	f.Add([]byte(base), []byte(base))
	f.Add([]byte(base), []byte(strings.NewReplacer(`"r:5"`, `"r:50"`).Replace(base)))
	f.Add([]byte(base), []byte(strings.NewReplacer(`1.24`, `1.26`, `a\nb\n`, `a\nB\n\u001b[2J`, `["package:nginx"]`, `[]`).Replace(base)))
	f.Add([]byte(base), []byte(`{"resources":[{"attrs":{},"id":"x:y","name":"z","source":"","type":"q"},{"attrs":{"a":1},"id":"x:y","name":"y","source":"","type":"x"}]}`))
	f.Add([]byte(`{"resources":[]}`), []byte(base))
	f.Fuzz(func(t *testing.T, ja, jb []byte) {
		a, errA := Decode(ja)
		b, errB := Decode(jb)
		if errA != nil || errB != nil {
			return
		}
		content := func(d string) ([]byte, bool) { return []byte(d + "\n"), true }
		if ch := Diff(a, a, content); !ch.Empty() {
			t.Fatalf("Diff(a, a) = %+v, want empty", ch)
		}
		ch := Diff(a, b, content)
		if same := sameResources(a, b); ch.Empty() != same {
			t.Fatalf("Diff(a, b).Empty() = %v, but the resources are the same: %v\n%+v", ch.Empty(), same, ch)
		}
		if ch.Count() != len(ch.Added)+len(ch.Removed)+len(ch.Changed) {
			t.Fatalf("Count() = %d for %+v", ch.Count(), ch)
		}
		all := Diff(nil, b, nil)
		if len(all.Removed)+len(all.Changed) != 0 {
			t.Fatalf("Diff(nil, b) removes or changes: %+v", all)
		}
		changes := map[string]Change{"a": ch, "b": all}
		groups := GroupChanges(changes)
		if diff := cmp.Diff(changes, ungroup(groups, changes), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("the groups do not add up to the nodes' changes (-want +got):\n%s", diff)
		}
		var out bytes.Buffer
		if err := WriteChanges(&out, groups, WriteOptions{}); err != nil {
			t.Fatalf("WriteChanges: %v", err)
		}
		if strings.ContainsAny(out.String(), "\x1b\x00\r\x07") {
			t.Fatalf("WriteChanges wrote a control character:\n%q", out.String())
		}
	})
}

// sameResources is FuzzDiff's oracle, written apart from Diff: the first
// resource of each id, compared on everything but Source.
func sameResources(a, b *Catalog) bool {
	first := func(c *Catalog) map[string]Resource {
		m := map[string]Resource{}
		for _, r := range c.Resources {
			if _, ok := m[r.ID]; !ok {
				m[r.ID] = r
			}
		}
		return m
	}
	ma, mb := first(a), first(b)
	if len(ma) != len(mb) {
		return false
	}
	for id, ra := range ma {
		rb, ok := mb[id]
		if !ok || ra.Type != rb.Type || ra.Name != rb.Name || !reflect.DeepEqual(ra.Attrs, rb.Attrs) ||
			!slices.Equal(ra.Require, rb.Require) || !slices.Equal(ra.Notify, rb.Notify) {
			return false
		}
	}
	return true
}
