package catalogs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
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

// TestDecodeHead: the environment and file list come back from a
// canonical encoding without the resources being read (bytes after the
// file list that are not JSON at all do not matter), and from any other
// encoding by a full decode, with the same answer; what is not a catalog
// is an error.
func TestDecodeHead(t *testing.T) {
	t.Parallel()
	files := []FileRef{{Digest: "sha256:aa", Path: "files/a", Size: 3}, {Digest: "sha256:bb", Path: "files/b\"c", Size: 0}}
	c := &Catalog{Environment: "staging", Node: "web-01", Version: "v1", Files: files,
		Resources: []Resource{{ID: "file:/a", Type: "file", Name: "/a", Attrs: map[string]any{"content": "x"}}}}
	canonical, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cut := canonical[:bytes.Index(canonical, []byte(`,"node"`))]
	tests := []struct {
		name      string
		in        string
		env       string
		files     []FileRef
		wantError bool
	}{
		{name: "canonical", in: string(canonical), env: "staging", files: files},
		{name: "only the head is read", in: string(cut) + `,"node": not json at all`, env: "staging", files: files},
		{name: "no files", in: `{"environment":"","files":null,"node":"n","resources":[],"version":"v"}`},
		{name: "another order", in: `{"version":"v","files":[{"digest":"sha256:aa","path":"files/a","size":3}],"environment":"prod"}`,
			env: "prod", files: files[:1]},
		{name: "files first", in: `{"files":[],"environment":"prod"}`, env: "prod", files: []FileRef{}},
		{name: "a key repeated", in: `{"environment":"a","environment":"b","files":[]}`, env: "b", files: []FileRef{}},
		{name: "spaces", in: " {\n \"environment\" : \"e\" ,\n \"files\" : [ ] }", env: "e", files: []FileRef{}},
		{name: "not an object", in: `[1,2]`, wantError: true},
		{name: "truncated in the head", in: `{"environment":"e","files":[{"digest":`, wantError: true},
		{name: "a file that is not one", in: `{"environment":"e","files":[7]}`, wantError: true},
		{name: "empty", in: ``, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, got, err := DecodeHead([]byte(tt.in))
			if tt.wantError {
				if err == nil {
					t.Fatalf("DecodeHead(%q) = %q, %v, want an error", tt.in, env, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeHead(%q): %v", tt.in, err)
			}
			if env != tt.env || !reflect.DeepEqual(got, tt.files) {
				t.Errorf("DecodeHead(%q) = %q, %#v, want %q, %#v", tt.in, env, got, tt.env, tt.files)
			}
		})
	}
}

// FuzzDecodeHead: on a canonical encoding DecodeHead gives the catalog's
// environment and files; on any JSON that encoding/json decodes, its
// answer; and on any bytes it does not panic.
func FuzzDecodeHead(f *testing.F) {
	f.Add("prod", "sha256:aa", "files/a", int64(3), []byte(`{"environment":"e","files":[]}`))
	f.Add("\u2028", "\xff", "\x00\"\\", int64(-1), []byte(`{"files":null,"environment":"x","files":[{"size":1}]}`))
	f.Fuzz(func(t *testing.T, env, digest, path string, size int64, raw []byte) {
		c := &Catalog{Environment: env, Node: "n", Version: "v", Files: []FileRef{{Digest: digest, Path: path, Size: size}},
			Resources: []Resource{{ID: "file:" + path, Type: "file", Name: path}}}
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		gotEnv, gotFiles, err := DecodeHead(b)
		wantEnv, wantFiles, werr := decodeHeadWhole(b)
		if err != nil || werr != nil || gotEnv != wantEnv || !reflect.DeepEqual(gotFiles, wantFiles) {
			t.Fatalf("DecodeHead(%q) = %q, %v, %v; a full decode gives %q, %v, %v", b, gotEnv, gotFiles, err, wantEnv, wantFiles, werr)
		}
		gotEnv, gotFiles, err = DecodeHead(raw)
		wantEnv, wantFiles, werr = decodeHeadWhole(raw)
		if werr != nil || repeatsKey(raw) {
			// Not a catalog's head, or a key given twice (encoding/json
			// takes the last; the canonical encoding never repeats one):
			// DecodeHead may read less and answer otherwise.
			return
		}
		if err != nil || gotEnv != wantEnv || !reflect.DeepEqual(gotFiles, wantFiles) {
			t.Fatalf("DecodeHead(%q) = %q, %v, %v; a full decode gives %q, %v", raw, gotEnv, gotFiles, err, wantEnv, wantFiles)
		}
	})
}

// repeatsKey says whether the JSON object b has a top-level key twice, as
// encoding/json matches keys: without regard to case.
func repeatsKey(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		k, ok := t.(string)
		if err != nil || !ok {
			return false
		}
		for _, seen := range keys {
			if strings.EqualFold(seen, k) {
				return true
			}
		}
		keys = append(keys, k)
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}
