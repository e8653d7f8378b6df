package catalogs

import (
	"bytes"
	"encoding/json"
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
