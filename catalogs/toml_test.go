package catalogs

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTOMLPositions(t *testing.T) {
	t.Parallel()
	src := `include = ["base"]

[params]
port = 8080
nested = { a = 1, b = [ { c = 2 } ] }

[[file]]
path = "/etc/a"

[[file]]
path = "/etc/b"
mode = "0644"

[file.extra]
x.y = 1

[[service]]
name = "web"
`
	d, err := parseTOML("roles/web.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"include":              "roles/web.toml:1:1",
		"include[0]":           "roles/web.toml:1:12",
		"params.port":          "roles/web.toml:4:1",
		"params.nested.a":      "roles/web.toml:5:12",
		"params.nested.b[0].c": "roles/web.toml:5:27",
		"file[0]":              "roles/web.toml:7:3",
		"file[0].path":         "roles/web.toml:8:1",
		"file[1].path":         "roles/web.toml:11:1",
		"file[1].mode":         "roles/web.toml:12:1",
		"file[1].extra.x.y":    "roles/web.toml:15:3",
		"service[0].name":      "roles/web.toml:18:1",
	}
	got := map[string]string{}
	for k := range want {
		got[k] = d.posOf(k).String()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
	files := d.data["file"].([]any)
	if len(files) != 2 || files[1].(map[string]any)["mode"] != "0644" {
		t.Errorf("data[file] = %v, want two tables, the second with mode 0644", files)
	}
}

func TestTOMLSyntaxErrorHasPosition(t *testing.T) {
	t.Parallel()
	_, err := parseTOML("nodes.toml", []byte("a = 1\nb = \n"))
	d, ok := err.(Diagnostic)
	if !ok || d.File != "nodes.toml" || d.Line != 2 {
		t.Fatalf("parseTOML error = %#v, want a Diagnostic at nodes.toml:2", err)
	}
}
