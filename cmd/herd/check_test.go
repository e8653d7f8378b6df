package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/testkit"
)

// TestCheckAndCompileRefuseWhatTheSiteMayNotHold runs herd check and herd
// compile on sites an attacker who can push could write, and on settings
// nothing acts on yet: both commands must fail naming the file and line.
func TestCheckAndCompileRefuseWhatTheSiteMayNotHold(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "ca.key")
	if err := os.WriteFile(secret, []byte("SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := map[string]string{
		"nodes.toml":     "[[node]]\nroles = [\"web\"]\n",
		"roles/web.toml": "[[file]]\npath = \"/etc/motd\"\nsource = \"cakey\"\n",
	}
	tests := []struct {
		name  string
		files map[string]string
		setup func(t *testing.T, dir string)
		want  []string
		// check compiles only the nodes of site tests, so a render
		// error shows in compile alone.
		compileOnly bool
	}{
		{"a rollout stage without a name", map[string]string{
			"herd.toml": "environment = \"production\"\n\n[[rollout.stage]]\nnodes = [\"web-01\"]\npercent = 0\n",
		}, nil, []string{"herd.toml:3:3: [[rollout.stage]] #1: missing name", "herd.toml:5:1: percent 0: want a number above 0 and at most 100"}, false},
		{"policy mode", map[string]string{
			"herd.toml": "[policy]\nmode = \"warn\"\n",
		}, nil, []string{"herd.toml:2:1: unknown key \"mode\" in [policy] (want on_deny, timeout)"}, false},
		{"a link to the CA key", nil, func(t *testing.T, dir string) {
			if err := os.Symlink(secret, filepath.Join(dir, "files", "cakey")); err != nil {
				t.Fatal(err)
			}
		}, []string{"files/cakey: reading the site: not a regular file: a symbolic link"}, false},
		{"a template over budget", map[string]string{
			"roles/web.toml":    "[[file]]\npath = \"/etc/motd\"\ntemplate = \"motd\"\n",
			"templates/motd":    "hello\n{{ indent 1e9 .node }}\n",
			"files/placeholder": "x",
		}, nil, []string{"templates/motd:2:4: template: at <indent 1e9 .node>: error calling indent: indent 1000000000: want 0 to 1000 spaces"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"files/.keep": ""}
			for k, v := range site {
				files[k] = v
			}
			for k, v := range tt.files {
				files[k] = v
			}
			dir := testkit.WriteSite(t, files)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			runs := [][]string{
				{"check", "--site", dir},
				{"compile", "--site", dir, "--node", "web-01", "--facts", exampleFacts},
			}
			if tt.compileOnly {
				runs = runs[1:]
			}
			for _, args := range runs {
				out, stderr, code := herd(t, "", args...)
				if code != nodecmd.ExitError {
					t.Fatalf("herd %s exited %d, want %d:\n%s%s", args[0], code, nodecmd.ExitError, out, stderr)
				}
				for _, want := range tt.want {
					if !strings.Contains(stderr, dir+"/"+want) {
						t.Errorf("herd %s: stderr lacks %q:\n%s", args[0], dir+"/"+want, stderr)
					}
				}
				if strings.Contains(out+stderr, "SECRET") {
					t.Errorf("herd %s printed the secret", args[0])
				}
			}
		})
	}
}
