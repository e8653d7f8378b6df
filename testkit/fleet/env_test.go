package fleet_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// envSite is a site whose nodes get /etc/motd saying "NODE ENVIRONMENT
// GREETING"; nodes.toml is given.
func envSite(nodesToml string) map[string]string {
	return map[string]string{
		"nodes.toml": nodesToml,
		"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "{{ .node }} {{ .environment }} {{ .params.greeting }}\n"
`,
		"data/common.toml": "greeting = \"v1\"\n",
	}
}

// commitFiles writes files into the work tree dir and commits them.
func commitFiles(t *testing.T, dir, msg string, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Git(t, dir, "add", "-A")
	testkit.Git(t, dir, "commit", "-q", "-m", msg)
	return testkit.Git(t, dir, "rev-parse", "HEAD")
}

// awaitMotd waits until a's /etc/motd says want.
func awaitMotd(t *testing.T, a *fleet.Agent, want string) {
	t.Helper()
	deadline := time.Now().Add(await)
	for {
		b, _ := os.ReadFile(filepath.Join(a.Root, "etc/motd"))
		got := strings.TrimSpace(string(b))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /etc/motd says %q, want %q", a.Name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeInfo is the server's view of node.
func nodeInfo(t *testing.T, f *fleet.Fleet, node string) *herdv1.NodeInfo {
	t.Helper()
	resp, err := f.Admin.ListNodes(context.Background(), &herdv1.ListNodesRequest{Where: "name == \"" + node + "\""})
	if err != nil || len(resp.Nodes) != 1 {
		t.Fatalf("ListNodes(%s) = %v, %v", node, resp, err)
	}
	return resp.Nodes[0]
}

// awaitCompileError waits until node has a compile error holding every
// one of wants.
func awaitCompileError(t *testing.T, f *fleet.Fleet, node string, wants ...string) *herdv1.NodeInfo {
	t.Helper()
	deadline := time.Now().Add(await)
	for {
		n := nodeInfo(t, f, node)
		ok := n.CompileError != ""
		for _, w := range wants {
			ok = ok && strings.Contains(n.CompileError, w)
		}
		if ok {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: compile error %q, want one saying %q", node, n.CompileError, wants)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newestRollout is environment env's newest rollout.
func newestRollout(t *testing.T, f *fleet.Fleet, env string) *herdv1.Rollout {
	t.Helper()
	resp, err := f.Admin.GetRollout(context.Background(), &herdv1.GetRolloutRequest{Environment: env, Nodes: "all"})
	if err != nil {
		t.Fatalf("GetRollout(%s): %v", env, err)
	}
	return resp.Rollout
}

// TestEnvironments serves two branches of a real git repository as
// environments, with real agents: nodes are placed by classification
// (a nodes.toml rule in the default environment) and by their agent's
// setting; a commit on staging changes only staging's nodes and starts
// only staging's rollout; an environment that is not served is a compile
// error that keeps the node's catalog; a branch that appears is served
// and one that goes stops being served, its nodes keeping their
// catalogs.
func TestEnvironments(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "git")
	site := testkit.WriteSite(t, envSite(`
[[node]]
roles = ["base"]

[[node]]
match = ["node-1"]
environment = "staging"
roles = []
`))
	testkit.Git(t, site, "init", "-q", "-b", "production")
	production := commitFiles(t, site, "first", nil)
	testkit.Git(t, site, "branch", "staging")
	// Staging is worked on in its own work tree; the server's site
	// stays on production.
	stagingTree := filepath.Join(t.TempDir(), "staging")
	testkit.Git(t, site, "worktree", "add", "-q", stagingTree, "staging")

	f := fleet.NewFleetWith(t, site, 0, fleet.Options{
		Environments:     []string{"production", "staging", "qa"},
		AgentEnvironment: map[string]string{"node-2": "staging"},
	})
	n1, n2, n3 := f.AddAgent("node-1"), f.AddAgent("node-2"), f.AddAgent("node-3")
	f.AwaitConverged(await, nil)
	awaitMotd(t, n1, "node-1 staging v1")
	awaitMotd(t, n2, "node-2 staging v1")
	awaitMotd(t, n3, "node-3 production v1")

	// The environment is a where name and is in every node object.
	resp, err := f.Admin.ListNodes(context.Background(), &herdv1.ListNodesRequest{Where: `environment == "staging"`})
	if err != nil {
		t.Fatal(err)
	}
	var staged []string
	for _, n := range resp.Nodes {
		staged = append(staged, n.Name+"="+n.Environment)
	}
	if want := []string{"node-1=staging", "node-2=staging"}; !slices.Equal(staged, want) {
		t.Errorf("nodes where environment == staging: %q, want %q", staged, want)
	}
	if r := newestRollout(t, f, "production"); r.Version != production || r.Environment != "production" {
		t.Errorf("production's newest rollout: version %s environment %q, want %s production", r.Version, r.Environment, production)
	}

	// A commit on staging: staging's nodes change, production's do not,
	// and only staging has a new rollout.
	before := f.Approved()
	prodRollout := newestRollout(t, f, "production").Id
	staging2 := commitFiles(t, stagingTree, "v2", map[string]string{"data/common.toml": "greeting = \"v2\"\n"})
	awaitMotd(t, n1, "node-1 staging v2")
	awaitMotd(t, n2, "node-2 staging v2")
	after := f.Approved()
	if after["node-3"] != before["node-3"] {
		t.Errorf("node-3 (production) got a new catalog from a commit on staging")
	}
	if motd(t, n3) != "node-3 production v1" {
		t.Errorf("node-3: /etc/motd says %q", motd(t, n3))
	}
	r := newestRollout(t, f, "staging")
	if r.Version != staging2 || r.Environment != "staging" {
		t.Errorf("staging's newest rollout: version %s environment %q, want %s staging", r.Version, r.Environment, staging2)
	}
	if got := newestRollout(t, f, "production").Id; got != prodRollout {
		t.Errorf("production's newest rollout is %d after a commit on staging, want still %d", got, prodRollout)
	}
	if _, err := f.Admin.GetRollout(context.Background(), &herdv1.GetRolloutRequest{Environment: "nope"}); err == nil || !strings.Contains(err.Error(), "not served") {
		t.Errorf("GetRollout of an unserved environment: %v, want an error saying it is not served", err)
	}
	// An action goes to the environment's own newest rollout (which may
	// have finished by now: then it says so of that rollout).
	act, err := f.Admin.RolloutAction(context.Background(), &herdv1.RolloutActionRequest{Action: "pause", Environment: "staging"})
	switch {
	case err == nil && (act.Rollout.Id != r.Id || act.Rollout.Environment != "staging" || act.Rollout.State != "paused"):
		t.Errorf("pausing staging's rollout paused %d of %q (%s), want %d of staging", act.Rollout.Id, act.Rollout.Environment, act.Rollout.State, r.Id)
	case err == nil:
		// Its last stage had released everything: it may end paused.
		if _, err := f.Admin.RolloutAction(context.Background(), &herdv1.RolloutActionRequest{Action: "resume", Id: r.Id}); err != nil && !strings.Contains(err.Error(), "it is done") {
			t.Errorf("resuming staging's rollout %d by its id: %v", r.Id, err)
		}
	case !strings.Contains(err.Error(), fmt.Sprintf("rollout %d", r.Id)):
		t.Errorf("pausing staging's rollout %d: %v, want an answer about that rollout", r.Id, err)
	}

	// A restart: until a node checks in, the server does not know what
	// its agent asks for, and keeps it in the environment of the catalog
	// it holds. node-2 (staging by its agent alone) stays away while
	// production moves on.
	n2.Stop()
	f.StopServer()
	f.StartServer()
	node2 := f.Approved()["node-2"]
	production3 := commitFiles(t, site, "v3", map[string]string{"data/common.toml": "greeting = \"v3\"\n"})
	awaitMotd(t, n3, "node-3 production v3")
	if n := nodeInfo(t, f, "node-2"); n.CatalogEtag != node2 || n.Environment != "staging" {
		t.Errorf("node-2 after a restart and a commit on production: catalog %s (was %s), environment %q; want it unchanged in staging", n.CatalogEtag, node2, n.Environment)
	}
	if r := newestRollout(t, f, "production"); r.Version != production3 {
		t.Errorf("production's newest rollout is of %s, want %s", r.Version, production3)
	}
	after = f.Approved()

	// Classification wins: production's nodes.toml puts node-3 in qa,
	// which is not a branch: a compile error naming what is served, and
	// node-3 keeps its catalog.
	catalog3 := after["node-3"]
	commitFiles(t, site, "node-3 to qa", map[string]string{"nodes.toml": `
[[node]]
roles = ["base"]

[[node]]
match = ["node-1"]
environment = "staging"
roles = []

[[node]]
match = ["node-3"]
environment = "qa"
roles = []
`})
	n := awaitCompileError(t, f, "node-3", `environment "qa" is not served`, "production, staging")
	if n.CatalogEtag != catalog3 {
		t.Errorf("node-3's catalog changed to %s although its environment is not served (was %s)", n.CatalogEtag, catalog3)
	}
	if n.Environment != "qa" {
		t.Errorf("node-3's environment is %q, want qa", n.Environment)
	}

	// The branch qa appears: it is served, and node-3 moves to it.
	testkit.Git(t, site, "branch", "qa", "production")
	awaitMotd(t, n3, "node-3 qa v3")
	if n := nodeInfo(t, f, "node-3"); n.CompileError != "" || n.Environment != "qa" {
		t.Errorf("node-3 in qa: compile error %q, environment %q", n.CompileError, n.Environment)
	}

	// The branch staging goes: its nodes keep what they run and say
	// why they get nothing new.
	stagingCatalog := f.Approved()["node-1"]
	testkit.Git(t, site, "worktree", "remove", "--force", stagingTree)
	testkit.Git(t, site, "branch", "-D", "staging")
	n = awaitCompileError(t, f, "node-1", `environment "staging" is not served`)
	if n.CatalogEtag != stagingCatalog {
		t.Errorf("node-1's catalog changed to %s when its branch went (was %s)", n.CatalogEtag, stagingCatalog)
	}
	if motd(t, n1) != "node-1 staging v2" {
		t.Errorf("node-1: /etc/motd says %q", motd(t, n1))
	}
}

// TestEnvironmentAudits: each node is judged by its own environment's
// audit controls: a control committed on staging only judges staging's
// node, and production's node has no result of it.
func TestEnvironmentAudits(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "git")
	site := testkit.WriteSite(t, envSite("[[node]]\nroles = [\"base\"]\n\n[[node]]\nmatch = [\"node-1\"]\nenvironment = \"staging\"\nroles = []\n"))
	testkit.Git(t, site, "init", "-q", "-b", "production")
	commitFiles(t, site, "first", nil)
	stagingTree := filepath.Join(t.TempDir(), "staging")
	testkit.Git(t, site, "worktree", "add", "-q", "-b", "staging", stagingTree)
	commitFiles(t, stagingTree, "a control", map[string]string{"policies/audit/motd.rego": `# METADATA
# title: the motd names staging
# custom:
#   id: motd-staging
#   severity: low
package herd.audit.motd

violations contains {"message": "no motd", "resource": "file:/etc/motd"} if {
	not input.resources["file:/etc/motd"]
}
`})
	f := fleet.NewFleetWith(t, site, 0, fleet.Options{Environments: []string{"production", "staging"}})
	f.AddAgent("node-1")
	f.AddAgent("node-2")
	f.AwaitConverged(await, nil)
	deadline := time.Now().Add(await)
	for {
		resp, err := f.Admin.Audit(context.Background(), &herdv1.AuditRequest{})
		got := map[string]string{}
		if err == nil {
			for _, r := range resp.Results {
				got[r.Node+" "+r.Control] = r.State
			}
		}
		if got["node-1 motd-staging"] == "pass" {
			if s, ok := got["node-2 motd-staging"]; ok && s != "" {
				t.Errorf("production's node-2 was judged by staging's control: %q", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("staging's control never judged node-1: %v, %v", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
