package policies

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/herdcm/herd/catalogs"
)

// slowCatalogValue is the old path: decode, then convert.
func slowCatalogValue(b []byte) (ast.Value, error) {
	c, err := catalogs.Decode(b)
	if err != nil {
		return nil, err
	}
	return catalogValue(c, nil)
}

// sameCatalogValue checks that catalogBytesValue of b (through spans,
// which may be nil) is what the old path gives: the same value, or an
// error of both. It returns whether the fast path read b.
func sameCatalogValue(t *testing.T, b []byte, spans *spanCache) (fast bool) {
	t.Helper()
	want, wantErr := slowCatalogValue(b)
	got, err := catalogBytesValue(b, spans, nil)
	_, fast = fastCatalogValue(b, nil)
	switch {
	case (err != nil) != (wantErr != nil):
		t.Fatalf("catalogBytesValue(%q) error = %v, the old path's %v", b, err, wantErr)
	case err != nil:
		if err.Error() != wantErr.Error() {
			t.Fatalf("catalogBytesValue(%q) error = %v, want %v", b, err, wantErr)
		}
		if fast {
			t.Fatalf("the fast path read %q, which does not decode: %v", b, wantErr)
		}
	case got.Compare(want) != 0 || got.String() != want.String():
		t.Fatalf("catalogBytesValue(%q) =\n%v\nthe old path gives\n%v", b, got, want)
	}
	return fast
}

func encodeCatalog(t testing.TB, c *catalogs.Catalog) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// catalogJSONCases are catalogs of every shape compile produces and a
// few it never does.
func catalogJSONCases(t testing.TB) map[string]*catalogs.Catalog {
	t.Helper()
	return map[string]*catalogs.Catalog{
		"realistic": realisticInput(t, 60).Catalog,
		"nil lists": {Node: "n", Version: "v"},
		"empty":     {Node: "n", Files: []catalogs.FileRef{}, Resources: []catalogs.Resource{}},
		"files": {Node: "n", Files: []catalogs.FileRef{{Digest: "sha256:ab", Path: "files/a b", Size: 0},
			{Digest: "sha256:cd", Path: "files/é", Size: 1 << 40}}},
		"escapes and unicode": {Node: "nœud\u2028", Environment: "a\"b\\c\n\t\r\b\f\x01/<>&", Version: "\xff\xfe bad utf-8",
			Resources: []catalogs.Resource{{ID: "file:/é\u2029", Type: "file", Name: "/é", Source: "roles/ü.toml:1",
				Attrs: map[string]any{"content": "line\n\"quoted\"\\ \x00 \x1f \u00e9 \U0001F600 \xc3", "ünïcode": "ok", "": "empty key"}}}},
		"attribute shapes": {Node: "n", Resources: []catalogs.Resource{{ID: "x:a", Type: "x", Name: "a",
			Attrs: map[string]any{"s": "", "i": int64(-9223372036854775808), "j": int64(9223372036854775807), "z": int64(0),
				"t": true, "f": false, "null": nil, "list": []string{"a", "", "b"}, "nolist": []string(nil), "emptylist": []string{},
				"table": map[string]string{"b": "2", "a": "1", "": ""}, "notable": map[string]string(nil), "emptytable": map[string]string{}}}}},
		"nil attrs and edges": {Node: "n", Resources: []catalogs.Resource{
			{ID: "a:1", Type: "a", Name: "1"},
			{ID: "a:2", Type: "a", Name: "2", Attrs: map[string]any{}, Notify: []string{"a:1"}, Require: []string{"a:1", "b:2"}},
			{ID: "a:3", Type: "a", Name: "3", Notify: []string{}, Require: []string{"a:1"}}}},
	}
}

func TestCatalogBytesValue(t *testing.T) {
	t.Parallel()
	for name, c := range catalogJSONCases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := encodeCatalog(t, c)
			if !sameCatalogValue(t, b, nil) {
				t.Errorf("the fast path did not read the canonical encoding %s", b)
			}
			// Through a cache: the same catalog of other nodes (the same
			// resources) keeps them the second time and takes them the
			// third, still the same value.
			spans := newSpanCache()
			for i := range 3 {
				other := *c
				other.Node = fmt.Sprintf("%s-%d", c.Node, i)
				sameCatalogValue(t, encodeCatalog(t, &other), spans)
			}
			if len(c.Resources) > 0 {
				span := encodeCatalog(t, &catalogs.Catalog{Resources: c.Resources[:1]})
				span = span[bytes.Index(span, []byte(`"resources":[`))+len(`"resources":[`):]
				if end, ok := resourceEnd(span, 0); !ok {
					t.Fatalf("no resource in %s", span)
				} else if _, hit := spans.get(span[:end]); hit == nil {
					t.Errorf("the first resource was not kept after a second node had it")
				}
			}
		})
	}
	realistic := string(encodeCatalog(t, catalogJSONCases(t)["realistic"]))
	// Bytes that are not canonical, decodable or not, take the old path
	// and give what it gives.
	for name, s := range map[string]string{
		"space":             `{"environment": "", "files":null,"node":"n","resources":null,"version":""}`,
		"trailing space":    `{"environment":"","files":null,"node":"n","resources":null,"version":""}` + " \n",
		"trailing data":     `{"environment":"","files":null,"node":"n","resources":null,"version":""}{}`,
		"keys reordered":    `{"node":"n","environment":"","files":null,"resources":null,"version":""}`,
		"key in capitals":   `{"Environment":"","files":null,"node":"n","resources":null,"version":""}`,
		"key missing":       `{"environment":"","files":null,"node":"n","version":""}`,
		"unknown key":       `{"environment":"","files":null,"node":"n","resources":null,"version":"","x":1}`,
		"empty notify":      `{"environment":"","files":null,"node":"n","resources":[{"attrs":{},"id":"a:b","name":"b","notify":[],"source":"","type":"a"}],"version":""}`,
		"null notify":       `{"environment":"","files":null,"node":"n","resources":[{"attrs":{},"id":"a:b","name":"b","notify":null,"source":"","type":"a"}],"version":""}`,
		"duplicate attr":    `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":"1","a":"2"},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"unsorted attrs":    `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"b":"1","a":"2"},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"float":             `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":1.5},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"exponent":          `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":1e3},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"minus zero":        `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":-0},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"leading zero":      `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":01},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"too big":           `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":9223372036854775808},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"mixed list":        `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":["x",1]},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"nested table":      `{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":{"b":{}}},"id":"a:b","name":"b","source":"","type":"a"}],"version":""}`,
		"u escape":          `{"environment":"\u00e9\ud83d\ude00\ud800","files":null,"node":"\u0041","resources":null,"version":"\/"}`,
		"bad escape":        `{"environment":"\x","files":null,"node":"n","resources":null,"version":""}`,
		"raw control":       "{\"environment\":\"a\tb\",\"files\":null,\"node\":\"n\",\"resources\":null,\"version\":\"\"}",
		"raw bad utf-8":     "{\"environment\":\"\xff\",\"files\":null,\"node\":\"n\",\"resources\":null,\"version\":\"\"}",
		"unterminated":      `{"environment":"`,
		"truncated":         realistic[:len(realistic)/2],
		"files size string": `{"environment":"","files":[{"digest":"d","path":"p","size":"1"}],"node":"n","resources":null,"version":""}`,
		"empty":             ``,
		"not an object":     `[]`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if sameCatalogValue(t, []byte(s), nil) && strings.ContainsAny(s, " \n") {
				t.Errorf("the fast path read %q, which is not canonical", s)
			}
		})
	}
}

// FuzzCatalogBytesValue holds the fast conversion to the old path on
// arbitrary bytes, and on the canonical encodings of arbitrary catalogs
// (which the fast path must read itself).
func FuzzCatalogBytesValue(f *testing.F) {
	for _, c := range catalogJSONCases(f) {
		b := encodeCatalog(f, c)
		f.Add(b, "", "", "", int64(0))
		f.Add(b[:len(b)-1], "", "", "", int64(0))
	}
	f.Add([]byte(`{"environment":"\u00e9","files":null,"node":"n","resources":null,"version":""}`), "a\nb", "\xff", "x:y", int64(-1))
	f.Add([]byte(`{"environment":"","files":null,"node":"n","resources":[{"attrs":{"a":["x"],"b":{"k":"v"}},"id":"a:b","name":"b","require":["c:d"],"source":"","type":"a"}],"version":""}`), "k", "v\u2028", "t", int64(7))
	f.Fuzz(func(t *testing.T, b []byte, key, val, id string, n int64) {
		spans := newSpanCache()
		for range 3 {
			sameCatalogValue(t, b, spans)
		}
		c := &catalogs.Catalog{Version: key, Files: []catalogs.FileRef{{Digest: val, Path: key, Size: n}},
			Resources: []catalogs.Resource{
				{ID: id, Type: key, Name: val, Source: id, Attrs: map[string]any{key: val, "n": n, val: []string{key, id}, id: map[string]string{key: val, val: id}}, Notify: []string{val}},
				{ID: val, Type: id, Name: key, Attrs: map[string]any{"b": n%2 == 0, key: nil}, Require: []string{key, id}},
			}}
		for i := range 3 {
			c.Node = fmt.Sprintf("%s%d", val, i)
			if enc := encodeCatalog(t, c); !sameCatalogValue(t, enc, spans) {
				t.Fatalf("the fast path did not read the canonical encoding %s", enc)
			}
		}
	})
}

// TestAuditCatalogJSON: a node's audit over its catalog's bytes judges
// as over the decoded catalog, through the span cache's second and third
// sight too; bytes that do not decode are Evaluate's error.
func TestAuditCatalogJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := PrepareAudit(ctx, benchControls(t, true), Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := benchAuditInput(t, 200)
	in.Catalog.Resources[0].Attrs = maps.Clone(in.Catalog.Resources[0].Attrs)
	in.Catalog.Resources[0].Attrs["mode"] = "0666"
	want, err := a.Evaluate(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	byBytes := in
	for i := range 3 {
		// Other nodes' catalogs with the same resources: the second
		// keeps them in the span cache, the third takes them from it.
		other := *in.Catalog
		other.Node = fmt.Sprintf("%s-%d", in.Catalog.Node, i)
		byBytes.Catalog, byBytes.CatalogJSON = nil, encodeCatalog(t, &other)
		got, err := a.Evaluate(ctx, byBytes)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("evaluation %d over the bytes (-decoded +bytes):\n%s", i, diff)
		}
	}
	byBytes.CatalogJSON = byBytes.CatalogJSON[:len(byBytes.CatalogJSON)-1]
	if rs, err := a.Evaluate(ctx, byBytes); err == nil || !strings.Contains(err.Error(), "input.catalog") {
		t.Errorf("Evaluate(truncated catalog) = %v, %v; want an error about input.catalog", rs, err)
	}
}

// TestSpanCache: a span is kept once a second node has it, never for
// one node seen again and again (a node's own resources), and a kept
// span is found only for equal bytes.
func TestSpanCache(t *testing.T) {
	t.Parallel()
	sc := newSpanCache()
	span := []byte(`{"attrs":{},"id":"a:b","name":"b","source":"","type":"a"}`)
	term := ast.StringTerm("value")
	web1, web2 := sc.nodeTag([]byte(`"web-1"`)), sc.nodeTag([]byte(`"web-2"`))
	for i := 3; web1 == web2; i++ {
		// One in 65,536 seeds gives the two names one tag.
		web2 = sc.nodeTag([]byte(fmt.Sprintf(`"web-%d"`, i)))
	}
	for range 3 {
		h, got := sc.get(span)
		if got != nil {
			t.Fatal("a span seen on one node only was kept")
		}
		sc.put(h, web1, span, term)
	}
	h, _ := sc.get(span)
	sc.put(h, web2, span, term)
	if _, got := sc.get(span); got != term {
		t.Fatalf("get after a second node = %v, want the kept term", got)
	}
	other := []byte(`{"attrs":{},"id":"a:c","name":"c","source":"","type":"a"}`)
	if _, got := sc.get(other); got != nil {
		t.Errorf("get(other bytes) = %v, want nothing", got)
	}
}
