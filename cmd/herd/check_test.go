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

// TestCheckRunsPoliciesAndGatesSiteTests runs herd check on sites with
// policies: a failing policy test, a broken policy, and site tests that
// expect a denial (or none).
func TestCheckRunsPoliciesAndGatesSiteTests(t *testing.T) {
	t.Parallel()
	gate := `package herd.gate

deny contains sprintf("%s is world-writable", [r.id]) if {
	some r in input.catalog.resources
	r.type == "file"
	r.attrs.mode == "0666"
}
`
	base := map[string]string{
		"files/.keep":    "",
		"nodes.toml":     "[[node]]\nroles = [\"web\"]\n",
		"roles/web.toml": "[[file]]\npath = \"/etc/motd\"\nmode = \"{{ if eq .node \\\"bad-01\\\" }}0666{{ else }}0644{{ end }}\"\ncontent = \"hi\\n\"\n",
	}
	tests := []struct {
		name    string
		files   map[string]string
		code    int
		want    []string // in stdout
		wantErr []string // in stderr, after the site directory and a slash
	}{
		{"denial expected and got, allowed and allowed", map[string]string{
			"policies/gate.rego": gate,
			"policies/gate_test.rego": "package herd.gate_test\n\nimport data.herd.gate\n\n" +
				"test_world_writable if {\n\tcount(gate.deny) == 1 with input as {\"catalog\": {\"resources\": [{\"id\": \"file:/x\", \"type\": \"file\", \"attrs\": {\"mode\": \"0666\"}}]}}\n}\n",
			"tests/web.toml": "[[test]]\nname = \"bad is denied\"\nnode = \"bad-01\"\ndeny = [\"file:/etc/motd is world-writable\"]\n\n" +
				"[[test]]\nname = \"good is allowed\"\nnode = \"good-01\"\n",
		}, 0, []string{
			"policy gate loaded, 2 tests, 1 policy tests",
			"ok   bad-01: bad is denied (1 resources, denied)",
			"ok   good-01: good is allowed (1 resources)",
			"ok   policy herd.gate_test: test_world_writable (",
			"policies/gate_test.rego:5)",
			"site tests: 2 passed, 0 failed",
			"policy tests: 1 passed, 0 failed",
		}, nil},
		{"denial expected, not got; denial not expected, got", map[string]string{
			"policies/gate.rego": gate,
			"tests/web.toml": "[[test]]\nname = \"good should be denied\"\nnode = \"good-01\"\ndeny = [\"world-writable\"]\n\n" +
				"[[test]]\nname = \"bad should be allowed\"\nnode = \"bad-01\"\n",
		}, nodecmd.ExitError, []string{
			"FAIL good-01: good should be denied",
			"the policy gates allow the catalog of good-01, want it denied with \"world-writable\"",
			"FAIL bad-01: bad should be allowed",
			"the policy gates deny the catalog of bad-01: file:/etc/motd is world-writable",
			"site tests: 0 passed, 2 failed",
		}, nil},
		{"a failing policy test", map[string]string{
			"policies/gate.rego": gate,
			"policies/gate_test.rego": "package herd.gate_test\n\nimport data.herd.gate\n\n" +
				"test_nothing_denied if {\n\tcount(gate.deny) == 0 with input as {\"catalog\": {\"resources\": [{\"id\": \"file:/x\", \"type\": \"file\", \"attrs\": {\"mode\": \"0666\"}}]}}\n}\n",
		}, nodecmd.ExitError, []string{
			"FAIL policy herd.gate_test: test_nothing_denied (",
			"policies/gate_test.rego:6: failed: count(gate.deny) == 0",
			"policy tests: 0 passed, 1 failed",
		}, nil},
		{"a broken policy", map[string]string{
			"policies/gate.rego": "package herd.gate\n\ndeny contains msg if {\n\tinput.x == 1\n}\n",
		}, nodecmd.ExitError, nil, []string{"policies/gate.rego:3: rego_unsafe_var_error"}},
		{"audit controls and their tests", map[string]string{
			"policies/audit/runs.rego": "# METADATA\n# title: no failures\n# custom:\n#   id: runs\n#   severity: low\npackage herd.audit.runs\n\n" +
				"violations contains e.id if {\n\tsome e in input.report.events\n\te.status == \"failed\"\n}\n",
			"policies/audit/runs_test.rego": "package herd.audit.runs_test\n\nimport data.herd.audit.runs\n\n" +
				"test_failed if runs.violations == {\"x\"} with input as {\"report\": {\"events\": [{\"id\": \"x\", \"status\": \"failed\"}]}}\n",
		}, 0, []string{
			"no policy gate, 0 tests, 1 policy tests, 1 audit controls",
			"ok   policy herd.audit.runs_test: test_failed (",
		}, nil},
		{"a control without a severity", map[string]string{
			"policies/audit/runs.rego": "# METADATA\n# title: no failures\n# custom:\n#   id: runs\npackage herd.audit.runs\n\nviolations contains \"x\" if false\n",
		}, nodecmd.ExitError, nil, []string{"policies/audit/runs.rego:1: rego_compile_error: control herd.audit.runs: custom.severity is missing"}},
		{"a broken policy test", map[string]string{
			"policies/gate.rego":      gate,
			"policies/gate_test.rego": "package herd.gate_test\n\ntest_x if {\n",
		}, nodecmd.ExitError, nil, []string{"policies/gate_test.rego:4: rego_parse_error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{}
			for k, v := range base {
				files[k] = v
			}
			for k, v := range tt.files {
				files[k] = v
			}
			dir := testkit.WriteSite(t, files)
			out, stderr, code := herd(t, "", "check", "--site", dir)
			if code != tt.code {
				t.Fatalf("herd check exited %d, want %d:\n%s%s", code, tt.code, out, stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("herd check: stdout lacks %q:\n%s", want, out)
				}
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(stderr, dir+"/"+want) {
					t.Errorf("herd check: stderr lacks %q:\n%s", dir+"/"+want, stderr)
				}
			}
		})
	}
}
