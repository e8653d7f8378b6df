package main

import (
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// The canaries: plain secret values searched for in every byte Herd
// writes. Each is plain ASCII, so that JSON, TOML and sqlite keep it as
// it is and a search of raw bytes finds any copy.
const (
	canaryDB     = "CanaryDbPass0x51"  // data/common.toml, a template and an exec's environment
	canaryDB2    = "CanaryDbRotated77" // the same secret after rotation
	canaryToken  = "CanaryApiTok3n"    // an attribute written "age:…"
	canaryTLS    = "CanaryTlsKey9"     // secrets/tls/key.age, read with {{ secret }}
	canaryOnlyN1 = "CanaryOnlyNode1"   // node-1's own data: node-2 never has it
	canaryRole   = "CanaryRolePass5"   // role params, an exec's stdin
	canarySvc    = "CanarySvcEnv3"     // secrets/svc.age, a supervised service's environment
)

// TestSecretsCanary is issue 12's canary test: a site with secrets in
// every place a secret can be used is compiled, served, applied by a
// fleet, reported, diffed, rolled out (twice: the second a rotation) and
// audited; then every byte Herd wrote (the server's directory and store,
// each agent's root with its state, database, spool, backups and caches,
// the logs of both at debug level, CLI outputs, HTTP answers) is searched
// for each canary: it appears only in the managed files of the node that
// owns it, and in that node's backups of them.
func TestSecretsCanary(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{} // up_test.go's
	plainSite := map[string]string{
		"nodes.toml":       "[[node]]\nroles = [\"app\"]\n",
		"roles/app.toml":   "[[file]]\npath = \"/etc/motd\"\ncontent = \"hello {{ .node }}\\n\"\n",
		"data/common.toml": "port = 5432\n",
		// Every rollout first rehearses on node-1: a noop run of the
		// new catalog, whose report is kept too.
		"herd.toml": "[[rollout.stage]]\nname = \"rehearsal\"\nnodes = [\"node-1\"]\nnoop = true\n\n[[rollout.stage]]\nname = \"all\"\n",
	}
	site := testkit.WriteSite(t, plainSite)
	// The server's default wait for a site change to settle, not the test
	// fleet's 50 ms: WriteSite writes file by file, and a rollout of a
	// half-written secret site would take the rotation before the one
	// the test watches.
	f := fleet.NewFleetWith(t, site, 2, fleet.Options{HTTP: true, LogTo: logs, Services: true, Debounce: 500 * time.Millisecond})
	before := f.AwaitConverged(60*time.Second, nil)

	keys, _, err := server.LoadSecretKeys(f.Dir)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(plain string) string {
		t.Helper()
		v, err := catalogs.EncryptSecret(keys.Recipient(), []byte(plain))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tlsFile, err := catalogs.EncryptSecretFile(keys.Recipient(), []byte(canaryTLS))
	if err != nil {
		t.Fatal(err)
	}
	svcFile, err := catalogs.EncryptSecretFile(keys.Recipient(), []byte(canarySvc))
	if err != nil {
		t.Fatal(err)
	}
	secretSite := func(db string) map[string]string {
		return map[string]string{
			"data/common.toml":       "port = 5432\n[db]\nuser = \"app\"\npassword = \"" + enc(db) + "\"\n",
			"data/nodes/node-1.toml": "only_1 = \"" + enc(canaryOnlyN1) + "\"\n",
			"secrets/tls/key.age":    string(tlsFile),
			"secrets/svc.age":        string(svcFile),
			"templates/app.conf":     "[db]\nhost = localhost\npassword = {{ .params.db.password }}\n",
			"roles/app.toml": `
[params]
role_pass = "` + enc(canaryRole) + `"
only_1 = ""

[[file]]
path = "/etc/motd"
content = "hello {{ .node }}\n"

[[file]]
path = "/etc/app.conf"
template = "app.conf"
mode = "0644"

[[file]]
path = "/etc/db.conf"
content = "user={{ .params.db.user }} password={{ .params.db.password }}\n"
mode = "0600"

[[file]]
path = "/etc/token"
content = "` + enc(canaryToken) + `"

[[file]]
path = "/etc/tls.key"
content = "{{ secret \"tls/key\" }}"

[[file]]
path = "/etc/only"
content = "{{ .params.only_1 }}"

[[exec]]
name = "migrate"
command = ["/bin/sh", "-c", "cat; env"]
env = { PGPASSWORD = "{{ .params.db.password }}", PGUSER = "app" }
stdin = "{{ .params.role_pass }}"

[[service]]
name = "app"
run = ["/bin/sleep", "1000"]
env = { TOKEN = "{{ secret \"svc\" }}" }
`,
			"policies/gate.rego": `package herd.gate

# Tries to leak: every change, whole, as a warning the rollout keeps.
warn contains json.marshal(input.change) if true
warn contains json.marshal(r.attrs) if some r in input.catalog.resources
`,
			"policies/audit/secrets.rego": `# METADATA
# title: database passwords come from a secret
# custom:
#   id: db-secret
#   severity: high
#   remediation: Encrypt it with herd secret encrypt.
package herd.audit.secrets

# Always a violation, quoting the attributes: evidence is stored and shown.
violations contains {"message": json.marshal(r.attrs), "resource": r.id} if {
	r := input.resources["file:/etc/db.conf"]
	r.attrs.content.sensitive
}
`,
		}
	}
	// Each wait is for the rollout of the whole site written: on a loaded
	// machine the server may load it half-written first.
	v1 := f.Version()
	f.WriteSite(secretSite(canaryDB))
	want := f.SiteVersion()
	f.AwaitRollout(60*time.Second, v1, "done at "+want, func(r *herdv1.GetRolloutResponse) bool {
		return r.Rollout.State == "done" && r.Rollout.Version == want
	})
	mid := f.AwaitConverged(60*time.Second, before)

	// The owning node got the plain values, in its managed files only.
	n1, n2 := f.Agents[0], f.Agents[1]
	fleet.AssertFile(t, n1.Root, "/etc/db.conf", "password="+canaryDB)
	fleet.AssertFile(t, n1.Root, "/etc/only", canaryOnlyN1)
	fleet.AssertFile(t, n1.Root, "/etc/tls.key", canaryTLS)

	// Rotation: the database password changes.
	v2 := f.Version()
	f.WriteSite(secretSite(canaryDB2))
	want = f.SiteVersion()
	rot := f.AwaitRollout(60*time.Second, v2, "done at "+want, func(r *herdv1.GetRolloutResponse) bool {
		return r.Rollout.State == "done" && r.Rollout.Version == want
	})
	if n := fleet.Node(rot, "node-1"); n.GetRehearsal().GetChanged() == 0 {
		t.Errorf("node-1 rehearsed nothing of the rotation: %v", n)
	}
	f.AwaitConverged(60*time.Second, mid)
	fleet.AssertFile(t, n1.Root, "/etc/db.conf", "password="+canaryDB2)

	// Every view an operator has.
	conn := []string{"--server", f.Addr(), "--admin-dir", f.AdminDir("ops")}
	outputs := map[string]string{}
	cli := func(args ...string) string {
		t.Helper()
		out, stderr, code := herd(t, "", append(args, conn...)...)
		if code != 0 && code != 2 {
			t.Errorf("herd %q: exit %d: %s", args, code, stderr)
		}
		outputs["herd "+strings.Join(args, " ")] = out + stderr
		return out
	}
	var audit string
	deadline := time.Now().Add(60 * time.Second)
	for {
		if audit = cli("audit"); strings.Contains(audit, "db-secret") && strings.Contains(audit, "fail since") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("herd audit never failed db-secret:\n%s", audit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cli("audit", "--format", "json")
	cli("reports", "node-1")
	cli("reports", "node-1", "--json")
	cli("nodes")
	cli("rollout", "list")
	cli("rollout", "status")
	rdiff := cli("rollout", "diff")
	cli("rollout", "diff", "--json")
	cli("rollout", "diff", "--node", "node-1")
	for _, want := range []string{"(sensitive) changed"} {
		if !strings.Contains(rdiff, want) {
			t.Errorf("herd rollout diff lacks %q:\n%s", want, rdiff)
		}
	}
	t.Logf("herd rollout diff:\n%s", rdiff)
	if runs := cli("reports", "node-1"); !strings.Contains(runs, "node-1") {
		t.Errorf("herd reports node-1:\n%s", runs)
	}
	reports := cli("reports", "node-1", "--json")
	var js struct {
		Reports []struct {
			Report struct {
				RunID string `json:"runId"`
			} `json:"report"`
		} `json:"reports"`
	}
	if err := json.Unmarshal([]byte(reports), &js); err == nil && len(js.Reports) > 0 {
		run := js.Reports[0].Report.RunID
		out := cli("reports", "node-1", run)
		t.Logf("herd reports node-1 %s:\n%s", run, out)
		if !strings.Contains(out, "(sensitive) changed") {
			t.Errorf("herd reports node-1 %s shows no sensitive change:\n%s", run, out)
		}
	}

	// herd diff, locally from git revisions of the site: no key, so no
	// value, only that a sensitive attribute changed.
	t.Run("herd diff", func(t *testing.T) {
		testkit.NeedTools(t, "git")
		repo := t.TempDir()
		git := func(args ...string) string {
			t.Helper()
			out, err := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("git %v: %v: %s", args, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		write := func(files map[string]string) {
			for rel, data := range files {
				p := filepath.Join(repo, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		git("init", "-q", "-b", "main")
		write(plainSite)
		write(map[string]string{"tests/nodes.toml": "[[test]]\nnode = \"node-1\"\n\n[[test]]\nnode = \"node-2\"\n"})
		git("add", ".")
		git("commit", "-q", "-m", "plain")
		plain := git("rev-parse", "HEAD")
		write(secretSite(canaryDB))
		git("add", ".")
		git("commit", "-q", "-m", "secrets")
		from := git("rev-parse", "HEAD")
		out, stderr, _ := herd(t, "", "diff", "--site", repo, "--from", plain, "--to", from, "--all", "--json")
		outputs["herd diff --json (secrets added)"] = out + stderr
		if !strings.Contains(out, `"sensitive":true`) && !strings.Contains(out, `"sensitive": true`) {
			t.Errorf("herd diff --json of the secrets added shows no sensitive value:\n%s%s", out, stderr)
		}
		write(secretSite(canaryDB2))
		git("commit", "-q", "-am", "rotated")
		out, stderr, code := herd(t, "", "diff", "--site", repo, "--from", from, "--to", "HEAD", "--all")
		outputs["herd diff"] = out + stderr
		// Without the server's key a local compile seals placeholders,
		// the same whatever the value: a rotation shows no change here
		// (rollout diff, on the server, shows it).
		if code != 0 || !strings.Contains(out, "2 nodes compiled") {
			t.Errorf("herd diff of a rotation: exit %d:\n%s%s", code, out, stderr)
		}
		out, stderr, _ = herd(t, "", "diff", "--site", repo, "--from", from, "--to", "HEAD", "--all", "--json")
		outputs["herd diff --json"] = out + stderr
	})

	client, base := f.HTTPClient()
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s\n%s", path, resp.Status, b)
		}
		outputs["GET "+path] = string(b)
		return string(b)
	}
	apiCatalog := get("/api/v1/nodes/node-1/catalog")
	if !strings.Contains(apiCatalog, `"sensitive":true`) {
		t.Errorf("the API's catalog shows no sensitive value:\n%s", apiCatalog)
	}
	get("/api/v1/nodes/node-1/reports")
	get("/api/v1/nodes/node-2/reports")
	get("/api/v1/nodes")
	get("/api/v1/rollouts")
	get("/api/v1/audits")
	if page := get("/nodes/node-1"); !strings.Contains(page, "(sensitive)") {
		t.Errorf("the dashboard's node page shows no (sensitive)")
	}
	get("/")
	get("/site")
	get("/rollouts")
	get("/metrics")
	for _, a := range f.Agents {
		st, err := agent.OpenState(agent.DefaultStateDir(a.Root).String())
		if err != nil {
			t.Fatal(err)
		}
		runs, err := st.Runs(t.Context(), 5)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			get("/nodes/" + a.Name + "/runs/" + r.ID)
		}
	}

	// Search. Every write is durable already (sqlite with
	// synchronous=FULL: the database or its WAL file has it).
	logText := logs.String()
	allowed := func(c, path string) bool {
		// A node's own managed files, and its backups of them.
		for _, a := range f.Agents {
			if c == canaryOnlyN1 && a != n1 {
				continue
			}
			rel, ok := strings.CutPrefix(path, a.Root)
			if !ok {
				continue
			}
			if strings.HasPrefix(rel, "/var/lib/herd/content/") || slices.Contains(managedFiles[c], rel) {
				return true
			}
			// A supervised service's record is its definition, as a
			// systemd unit file is: it holds the environment the
			// service runs with (state.db's services table, checked
			// below, and supervise/NAME.json).
			if c == canarySvc && (rel == "/var/lib/herd/supervise/app.json" || strings.HasPrefix(rel, "/var/lib/herd/state.db")) {
				return true
			}
		}
		return false
	}
	for _, c := range []string{canaryDB, canaryDB2, canaryToken, canaryTLS, canaryOnlyN1, canaryRole} {
		found := 0
		for _, p := range testkit.FilesHolding(t, []byte(c), f.Dir, f.Site, n1.Root, n2.Root) {
			if strings.HasPrefix(p, f.Site) || !allowed(c, p) {
				t.Errorf("%s holds the canary %s", p, c)
			}
			found++
		}
		// The search itself is held to finding the managed files.
		if len(managedFiles[c]) > 0 && found == 0 {
			t.Errorf("the canary %s is in no managed file: the search finds nothing", c)
		}
		if strings.Contains(logText, c) {
			t.Errorf("the logs hold the canary %s", c)
		}
		for what, out := range outputs {
			if strings.Contains(out, c) {
				t.Errorf("%s shows the canary %s", what, c)
			}
		}
	}
	if got := testkit.FilesHolding(t, []byte(canarySvc), n1.Root); !slices.ContainsFunc(got, func(p string) bool { return strings.HasSuffix(p, "/supervise/app.json") }) {
		t.Errorf("the service's record does not hold its environment (did it run?): %v", got)
	}
	for _, a := range f.Agents {
		assertOnlyServicesHold(t, agent.DefaultStateDir(a.Root).String()+"/state.db", canarySvc)
	}
	// The owning node's database holds no copy either (its backups are
	// files, not rows), and node-2 never saw node-1's secret.
	if got := testkit.FilesHolding(t, []byte(canaryOnlyN1), n2.Root); len(got) > 0 {
		t.Errorf("node-2 holds node-1's secret in %v", got)
	}
}

// managedFiles are the files of the canary site each canary may be in on
// its owning node.
var managedFiles = map[string][]string{
	canaryDB:     {"/etc/db.conf", "/etc/app.conf"},
	canaryDB2:    {"/etc/db.conf", "/etc/app.conf"},
	canaryToken:  {"/etc/token"},
	canaryTLS:    {"/etc/tls.key"},
	canaryOnlyN1: {"/etc/only"},
	canaryRole:   {},
	canarySvc:    {},
}

// assertOnlyServicesHold fails when a row of the agent's state database
// outside the supervisor's records holds needle.
func assertOnlyServicesHold(t *testing.T, path, needle string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 5 {
		t.Fatalf("%s has tables %v: not the agent's state", path, tables)
	}
	for _, table := range tables {
		if table == "services" {
			continue
		}
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				var s string
				switch v := v.(type) {
				case string:
					s = v
				case []byte:
					s = string(v)
				}
				if strings.Contains(s, needle) {
					t.Errorf("%s: table %s, column %s holds %s", path, table, cols[i], needle)
				}
			}
		}
		rows.Close()
	}
}

// TestApplySecretsCanary: a masterless herd apply with the secrets key
// writes the plain value into the managed file and its backup only: its
// terminal output (with --diff, in noop too), its JSON report and its
// state (history, database) hold none, and a rotation shows no diff.
func TestApplySecretsCanary(t *testing.T) {
	t.Parallel()
	keyText, err := catalogs.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(keyFile, []byte(keyText+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := catalogs.ParseSecretKeys([]byte(keyText + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	site := func(v string) map[string]string {
		enc, err := catalogs.EncryptSecret(keys.Recipient(), []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{
			"nodes.toml":       "[[node]]\nroles = [\"r\"]\n",
			"data/common.toml": "password = \"" + enc + "\"\n",
			"roles/r.toml": `
[[file]]
path = "/db.conf"
mode = "0644"
content = "password = {{ .params.password }}\n"

[[exec]]
name = "echo"
command = ["/bin/sh", "-c", "env"]
env = { PASSWORD = "{{ .params.password }}" }
`,
		}
	}
	dir := testkit.WriteSite(t, site(canaryDB))
	root := t.TempDir()
	args := []string{"apply", "--site", dir, "--root", root, "--node", "n1", "--secrets-key", keyFile}
	var outputs []string
	run := func(extra ...string) string {
		t.Helper()
		out, stderr, code := herd(t, "", append(args, extra...)...)
		if code != 2 {
			t.Errorf("herd %q: exit %d, want 2:\n%s%s", extra, code, out, stderr)
		}
		outputs = append(outputs, out+stderr)
		return out
	}
	first := run("--diff")
	fleet.AssertFile(t, root, "/db.conf", "password = "+canaryDB)
	if !strings.Contains(first, "content (sensitive) changed") {
		t.Errorf("herd apply --diff:\n%s", first)
	}
	for name, body := range site(canaryDB2) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("--noop", "--diff")
	run("--json")
	run("--diff", "--verbose")
	fleet.AssertFile(t, root, "/db.conf", "password = "+canaryDB2)
	for _, c := range []string{canaryDB, canaryDB2} {
		for _, out := range outputs {
			if strings.Contains(out, c) {
				t.Errorf("herd apply shows %s:\n%s", c, out)
			}
		}
		for _, p := range testkit.FilesHolding(t, []byte(c), root) {
			rel := strings.TrimPrefix(p, root)
			if rel != "/db.conf" && !strings.HasPrefix(rel, "/var/lib/herd/content/") {
				t.Errorf("%s holds %s", p, c)
			}
		}
	}
}
