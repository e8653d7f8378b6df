package catalogs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// reflectEncode is the reference canonical encoding: encoding/json with
// HTML escaping off.
func reflectEncode(t testing.TB, c *Catalog) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestEncodeMatchesJSON(t *testing.T) {
	t.Parallel()
	cats := []*Catalog{
		{},
		{Node: "n", Files: []FileRef{}, Resources: []Resource{}},
		{
			Environment: "prod<>&", Node: "web-01", Version: "abc\u2028\u2029",
			Files: []FileRef{{Digest: "sha256:00", Path: "files/a b", Size: 12}},
			Resources: []Resource{
				{ID: "file:/a", Type: "file", Name: "/a", Source: "roles/x.toml:1", Attrs: map[string]any{
					"content": "tab\there \"quoted\" back\\slash \x00\x01\x1f\b\f\r\n <html> & \xff\xfe invalid é 日本",
					"mode":    "0644", "purge": true, "uid": int64(-12), "zero": int64(0),
					"list":  []string{"a", "", "\n"},
					"empty": []string{},
					"nil":   []string(nil),
					"env":   map[string]string{"B": "2", "A": "1\"", "": ""},
					"float": 1.5,
				}, Require: []string{"x:y"}, Notify: []string{"s:t"}},
				{ID: "x:y", Type: "x", Name: "y", Attrs: nil},
			},
		},
	}
	for i, c := range cats {
		got, err := c.Encode()
		if err != nil {
			t.Fatalf("catalog %d: Encode: %v", i, err)
		}
		if want := reflectEncode(t, c); !bytes.Equal(got, want) {
			t.Errorf("catalog %d: Encode =\n%s\nwant (encoding/json)\n%s", i, got, want)
		}
	}
}

// FuzzEncode holds the hand-written encoder to encoding/json for any
// strings a site could put in a catalog.
func FuzzEncode(f *testing.F) {
	f.Add("web-01", "content", "hello\n", "k", "v")
	f.Add("\u2028", "\xff", "\x00\"\\", "<&>", "日本")
	f.Fuzz(func(t *testing.T, node, key, value, mk, mv string) {
		c := &Catalog{Node: node, Version: value, Files: []FileRef{{Digest: key, Path: value}},
			Resources: []Resource{{ID: node + ":" + key, Name: key, Type: mk, Source: mv,
				Attrs:   map[string]any{key: value, mk: []string{mv, value}, "m": map[string]string{mk: mv, key: value}, "n": int64(len(value))},
				Require: []string{value}}}}
		got, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if want := reflectEncode(t, c); !bytes.Equal(got, want) {
			t.Fatalf("Encode =\n%q\nwant\n%q", got, want)
		}
	})
}

// TestEncodeIndexed: the indexed encoding is Encode's, its spans hold
// each resource's own JSON, and the id digest tells apart catalogs whose
// resources differ in ids or order, not in values.
func TestEncodeIndexed(t *testing.T) {
	t.Parallel()
	mk := func(ids ...string) *Catalog {
		c := &Catalog{Node: "n", Version: "v", Files: []FileRef{}}
		for i, id := range ids {
			typ, name, _ := SplitID(id)
			c.Resources = append(c.Resources, Resource{ID: id, Type: typ, Name: name, Source: "r:1",
				Attrs: map[string]any{"content": fmt.Sprintf("{\"q\": %d}\n", i), "mode": "0644"}})
		}
		return c
	}
	c := mk("file:/a", "file:/b\"c", "package:x")
	b, idx, err := c.EncodeIndexed()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := c.Encode()
	if err != nil || !bytes.Equal(b, plain) {
		t.Fatalf("EncodeIndexed's bytes differ from Encode's (%v)", err)
	}
	if len(idx.Spans) != 2*len(c.Resources) {
		t.Fatalf("%d spans for %d resources", len(idx.Spans), len(c.Resources))
	}
	for i := range c.Resources {
		var r Resource
		if err := json.Unmarshal(b[idx.Spans[2*i]:idx.Spans[2*i+1]], &r); err != nil || r.ID != c.Resources[i].ID {
			t.Errorf("span %d = %q (%v), want resource %s", i, b[idx.Spans[2*i]:idx.Spans[2*i+1]], err, c.Resources[i].ID)
		}
	}
	other := mk("file:/a", "file:/b\"c", "package:x")
	other.Resources[0].Attrs["mode"] = "0600"
	_, same, _ := other.EncodeIndexed()
	_, fewer, _ := mk("file:/a", "package:x").EncodeIndexed()
	_, renamed, _ := mk("file:/a", "file:/bc", "package:x").EncodeIndexed()
	_, joined, _ := mk("file:/a", "file:/b\"cpackage:x").EncodeIndexed()
	if same.IDs != idx.IDs {
		t.Error("a changed value changed the id digest")
	}
	for name, o := range map[string]Index{"fewer": fewer, "renamed": renamed, "joined": joined} {
		if o.IDs == idx.IDs {
			t.Errorf("%s ids: same digest", name)
		}
	}
}
