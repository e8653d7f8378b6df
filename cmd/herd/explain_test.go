package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// The site version is the commit of the checkout, and the catalog's
// digest covers it: both are masked in the golden files.
var (
	explainVersionRE = regexp.MustCompile(`(?m)(^node .* version |^  "version": ")[^ ",\n]+`)
	explainDigestRE  = regexp.MustCompile(`(?m)(^catalog |^  "digest": ")sha256:[0-9a-f]+`)
)

func maskExplain(s string) string {
	s = explainVersionRE.ReplaceAllString(s, "${1}VERSION")
	return explainDigestRE.ReplaceAllString(s, "${1}DIGEST")
}

// TestExplainGolden explains nodes and resources of the example site, as
// text and as JSON, against testdata/explain-*.golden (go test -update
// rewrites them): a whole node, a resource of a use of a definition, one
// of a for_each, and one with explicit and implicit edges.
func TestExplainGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		golden string
		args   []string
	}{
		{"explain-web-01.golden", []string{"web-01"}},
		{"explain-web-01.json.golden", []string{"web-01", "--json"}},
		{"explain-db-01.golden", []string{"db-01"}},
		{"explain-vhost.golden", []string{"web-01", "file:/etc/herd-demo-web/sites/shop.conf"}},
		{"explain-vhost.json.golden", []string{"web-01", "file:/etc/herd-demo-web/sites/shop.conf", "--json"}},
		{"explain-for-each.golden", []string{"web-01", "authorized_key:carol@herd.example"}},
		{"explain-edges.golden", []string{"web-01", "file:/etc/herd-demo-web/app.conf"}},
		{"explain-edges.json.golden", []string{"web-01", "file:/etc/herd-demo-web/app.conf", "--json"}},
	}
	digest, stderr, code := herd(t, "", "compile", "--site", exampleSite, "--node", "web-01", "--facts", exampleFacts, "--digest")
	if code != 0 {
		t.Fatalf("herd compile exited %d: %s", code, stderr)
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			t.Parallel()
			out, stderr, code := herd(t, "", append([]string{"explain", "--site", exampleSite, "--facts", exampleFacts}, tt.args...)...)
			if code != 0 {
				t.Fatalf("herd explain %v exited %d: %s", tt.args, code, stderr)
			}
			if tt.args[0] == "web-01" && !strings.Contains(out, strings.TrimSpace(digest)) {
				t.Errorf("herd explain %v does not name the catalog's digest %s", tt.args, strings.TrimSpace(digest))
			}
			assertNoControl(t, tt.golden, out)
			got := maskExplain(out)
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.golden, diff)
			}
		})
	}
}

func TestExplainErrors(t *testing.T) {
	t.Parallel()
	site := []string{"--site", exampleSite, "--facts", exampleFacts}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown resource", append([]string{"web-01", "package:herd-demo-tool"}, site...), 1, "no resource package:herd-demo-tool in the catalog of node web-01 (near: package:herd-demo-tools"},
		{"not a reference", append([]string{"web-01", "herd-demo-tools"}, site...), 64, `resource "herd-demo-tools": want type:name`},
		{"no node", site, 64, "want NODE"},
		{"too many", append([]string{"web-01", "package:a", "package:b"}, site...), 64, "want NODE"},
		{"facts without site", []string{"web-01", "--facts", exampleFacts}, 64, "--facts and --secrets-key go with --site"},
		{"bad node", append([]string{"../x"}, site...), 1, "node"},
		{"unclassified", append([]string{"mail-01", "--site", t.TempDir()}, site[2:]...), 1, "nodes.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := herd(t, "", append([]string{"explain"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("herd explain %v = exit %d, %q; want exit %d with %q", tt.args, code, stderr, tt.code, tt.stderr)
			}
		})
	}
}

// TestExplainServer explains through a real fleet's server while a
// rollout waits for approval: the canary is approved at the new version,
// the other node waits for it in stage rest.
func TestExplainServer(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"herd.toml": `[[rollout.stage]]
name = "canary"
nodes = ["node-1"]

[[rollout.stage]]
name = "rest"
approve = "manual"
`,
		"nodes.toml":       "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml":  "[[file]]\npath = \"/etc/motd\"\ncontent = \"{{ .node }}: {{ .params.greeting }}\\n\"\n",
		"data/common.toml": "greeting = \"v1\"\n",
	})
	f := fleet.NewFleet(t, site, 2)
	f.AwaitConverged(60*time.Second, nil)
	v1 := f.Version()
	conn := []string{"--server", f.Addr(), "--admin-dir", f.AdminDir("ops")}
	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"v2\"\n"})
	r := f.AwaitRollout(60*time.Second, v1, "waiting for approval of stage rest", func(r *herdv1.GetRolloutResponse) bool {
		s := fleet.Stage(r.Rollout, "rest")
		return r.Rollout.Version != v1 && s != nil && s.State == "awaiting-approval"
	})
	v2 := r.Rollout.Version

	out, stderr, code := herd(t, "", append([]string{"explain", "node-2", "file:/etc/motd"}, conn...)...)
	if code != 0 {
		t.Fatalf("herd explain node-2: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"approved  " + v1, "pending   " + v2, "stage     rest (stage 2, awaiting-approval)", "node      pending",
		`content = "node-2: v2\n"`, `params.greeting = "v2"  ← common at data/common.toml:1:1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("herd explain node-2 lacks %q:\n%s", want, out)
		}
	}
	out, stderr, code = herd(t, "", append([]string{"explain", "node-1", "--json"}, conn...)...)
	var ex catalogs.Explanation
	if err := json.Unmarshal([]byte(out), &ex); err != nil || code != 0 {
		t.Fatalf("herd explain node-1 --json: exit %d, %v: %s%s", code, err, stderr, out)
	}
	if ex.Rollout == nil || ex.Rollout.Approved != v2 || ex.Rollout.Pending != "" || ex.Rollout.Stage != "canary" || len(ex.Resources) != 1 {
		t.Errorf("herd explain node-1 --json: rollout %+v, resources %v; want approved at %s in canary", ex.Rollout, ex.Resources, v2)
	}
	if _, stderr, code := herd(t, "", append([]string{"explain", "node-1", "file:/etc/mot"}, conn...)...); code != 1 || !strings.Contains(stderr, "near: file:/etc/motd") {
		t.Errorf("herd explain of an unknown resource: exit %d, %q; want 1 naming file:/etc/motd", code, stderr)
	}
}

// TestExplainSensitiveCLI: a sensitive attribute shows as (sensitive),
// with where it was written, and its value nowhere.
func TestExplainSensitiveCLI(t *testing.T) {
	t.Parallel()
	const hash = "$6$saltsalt$Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":       "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml":  "[[user]]\nname = \"app\"\npassword = \"{{ .params.hash }}\"\n",
		"data/common.toml": "hash = \"" + hash + "\"\n",
	})
	for _, args := range [][]string{{}, {"--json"}} {
		out, stderr, code := herd(t, "", append([]string{"explain", "n1", "user:app", "--site", site, "--facts", exampleFacts}, args...)...)
		if code != 0 {
			t.Fatalf("herd explain %v: exit %d: %s", args, code, stderr)
		}
		if strings.Contains(out, "saltsalt") {
			t.Errorf("herd explain %v shows the password hash:\n%s", args, out)
		}
		if !strings.Contains(out, catalogs.SensitiveText) || !strings.Contains(out, "roles/base.toml:3:1") {
			t.Errorf("herd explain %v does not say the password is (sensitive), written at roles/base.toml:3:1:\n%s", args, out)
		}
	}
}

// TestExplainValue: a value is cut to a line at a character boundary, and
// what could drive a terminal shows escaped.
func TestExplainValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{"plain", `"plain"`},
		{int64(8081), "8081"},
		{strings.Repeat("é", 80), `"` + strings.Repeat("é", 48) + "…"},
		{"\x1b[31mred", `"\u001b[31mred"`},
		{"\u202eevil", `"\"\u202eevil\""`},
	}
	for _, tt := range tests {
		got := value(tt.in)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("value(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
