package catalogs

import (
	"context"
	"errors"
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

// TestSyntaxErrorReportedOnce: a role that is not valid TOML is one
// diagnostic, at its line, and what refers to it (a rule's roles, an
// include) adds no false "no role" on top; a file mode written as a
// number gets the "write the mode as a string" hint.
func TestSyntaxErrorReportedOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  []string // the whole diagnostic list, as file:line:col: msg
	}{
		{
			name: "broken table header",
			files: map[string]string{
				"nodes.toml":      "[[node]]\nmatch = \"*\"\nroles = [\"base\", \"web\"]\n",
				"roles/base.toml": "[[file]\npath = \"/etc/motd\"\n",
				"roles/web.toml":  "include = [\"base\"]\n",
			},
			want: []string{"roles/base.toml:1:7: invalid TOML: toml: expected ']]' to close array table name"},
		},
		{
			name: "mode as an octal number",
			files: map[string]string{
				"roles/web.toml": "[[file]]\npath = \"/etc/motd\"\nmode = 0600\n",
			},
			want: []string{`roles/web.toml:3:8: invalid TOML: toml: integers cannot have leading zeroes (write the mode as a string: mode = "0600")`},
		},
		{
			name: "mode in an inline table",
			files: map[string]string{
				"roles/web.toml": "[[file]]\npath = \"/etc/motd\"\nsource = { mode = 0755 }\n",
			},
			want: []string{`roles/web.toml:3:19: invalid TOML: toml: integers cannot have leading zeroes (write the mode as a string: mode = "0755")`},
		},
		{
			name: "a role that does not exist is still named",
			files: map[string]string{
				"nodes.toml": "[[node]]\nroles = [\"nope\"]\n",
			},
			want: []string{`nodes.toml:2:10: roles: no role "nope" (no file roles/nope.toml; want one of: web)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(context.Background(), writeSite(t, tt.files), LoadOptions{})
			var ds Diagnostics
			if !errors.As(err, &ds) {
				t.Fatalf("Load error = %v, want diagnostics", err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}
