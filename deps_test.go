// Package herd_test holds repository-wide checks: the import rules between
// Herd's packages (shared/CONVENTIONS.md §2) and what each binary may link.
package herd_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/herdcm/herd"

// rules says, for each room, which of Herd's own packages it may import
// (besides itself) and which outside packages it must never pull in,
// directly or through a dependency. Every package of the module needs a
// rule: a new package is denied until it is added here.
var rules = map[string]struct {
	allowHerd []string // Herd packages it may depend on
	forbid    []string // import path prefixes it must not depend on
}{
	"facts": {},
	// Tells systemd how a daemon is doing: nothing of Herd's own.
	"sdnotify": {forbid: nodeForbid},
	"catalogs": {allowHerd: []string{"facts"}, forbid: []string{
		"google.golang.org/grpc", "github.com/mattn/go-sqlite3", "github.com/open-policy-agent/opa", "net/http",
	}},
	"policies":        {allowHerd: []string{"catalogs", "facts"}},
	"agent":           {allowHerd: []string{"catalogs", "facts", "api/herdv1", "agent/resources", "agent/supervise", "agent/sandbox", "sdnotify"}, forbid: nodeForbid},
	"agent/resources": {allowHerd: []string{"catalogs", "facts"}, forbid: nodeForbid},
	"agent/supervise": {forbid: nodeForbid},
	"agent/sandbox":   {forbid: nodeForbid},
	"server":          {allowHerd: []string{"catalogs", "facts", "policies", "server/store", "server/ca", "server/dashboard", "api/herdv1"}},
	"server/store":    {allowHerd: []string{"catalogs", "facts", "server/ca"}},
	"server/ca":       {allowHerd: []string{"catalogs", "facts"}},
	// The audit report an auditor keeps: made from the wire's answer.
	"server/auditreport": {allowHerd: []string{"api/herdv1"}},
	"api/herdv1":         {},
	"testkit":            {allowHerd: []string{"agent/sandbox"}},
	"testkit/fleet":      {allowHerd: []string{"sdnotify", "agent", "agent/resources", "agent/supervise", "agent/sandbox", "api/herdv1", "catalogs", "facts", "server", "server/ca", "server/dashboard", "server/store", "policies", "testkit"}},
	"bench/loadgen":      {allowHerd: []string{"agent/sandbox", "api/herdv1", "catalogs", "facts", "server", "server/ca", "server/dashboard", "server/store", "policies", "testkit"}},
	"cmd/herd":           {allowHerd: []string{"agent", "agent/resources", "agent/supervise", "agent/sandbox", "api/herdv1", "catalogs", "facts", "server", "server/ca", "server/dashboard", "server/store", "policies", "cmd/nodecmd", "server/auditreport", "sdnotify"}},
	"cmd/nodecmd":        {allowHerd: []string{"agent", "agent/resources", "agent/supervise", "agent/sandbox", "api/herdv1", "catalogs", "facts", "sdnotify"}, forbid: nodeForbid},
	"cmd/herd-agent":     {allowHerd: []string{"agent", "agent/resources", "agent/supervise", "agent/sandbox", "api/herdv1", "catalogs", "facts", "cmd/nodecmd", "sdnotify"}, forbid: nodeForbid},

	// The dashboard's pages read the fleet through its Source interface:
	// it needs nothing of Herd's own.
	"server/dashboard": {},

	// Tests only: Herd's Debian packages, built by cmd/herd-pkg (a module
	// of its own, which this list does not reach) and checked with dpkg.
	"packaging": {allowHerd: []string{"testkit", "agent/sandbox"}},
}

// nodeForbid is what every node pays for and none may link: the node binary
// and the packages it is built from carry no server, no policy engine and no
// metrics server (Tailscale's deptest, applied to herd-agent).
var nodeForbid = []string{
	module + "/server", module + "/policies", module + "/testkit",
	"github.com/open-policy-agent/opa",
	"github.com/prometheus/client_golang",
	"github.com/jackc/pgx/v5",
}

type listedPkg struct {
	ImportPath string
	Name       string
	Deps       []string
}

// listModule runs go list over the whole module with the build tags the
// node binary ships with, so that what is checked is what is linked.
func listModule(t *testing.T) map[string]listedPkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-tags", "grpcnotrace", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listedPkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p listedPkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = p
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	if testing.Short() {
		t.Skip("go list over the whole module is slow; skipped in -short")
	}
	pkgs := listModule(t)
	for rel, p := range pkgs {
		if rel == "" {
			continue // this file's own package: tests only
		}
		r, ok := rules[rel]
		if !ok {
			t.Errorf("package %s has no rule in deps_test.go: say which rooms it may use (CONVENTIONS.md §2)", rel)
			continue
		}
		for _, dep := range p.Deps {
			if depRel, ok := strings.CutPrefix(dep, module+"/"); ok {
				if depRel == rel || slices.Contains(r.allowHerd, depRel) {
					continue
				}
				t.Errorf("%s depends on %s: CONVENTIONS.md §2 allows it only %v", rel, depRel, r.allowHerd)
				continue
			}
		}
		for _, dep := range p.Deps {
			for _, f := range r.forbid {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s, which it must never link", rel, dep)
				}
			}
		}
	}
	for rel := range rules {
		if _, ok := pkgs[rel]; !ok {
			t.Errorf("deps_test.go has a rule for %s, which does not exist", rel)
		}
	}
}

// TestNodeBinaryLinks builds what herd-agent links, as `go build` would,
// and fails when a forbidden module reaches it through any path.
func TestNodeBinaryLinks(t *testing.T) {
	if testing.Short() {
		t.Skip("go list is slow; skipped in -short")
	}
	out, err := exec.Command("go", "list", "-tags", "grpcnotrace", "-deps", "./cmd/herd-agent").Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/herd-agent: %v", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		dep := sc.Text()
		n++
		for _, f := range nodeForbid {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("herd-agent links %s: a node must not pay for it", dep)
			}
		}
		if strings.HasPrefix(dep, "golang.org/x/net/trace") || dep == "html/template" {
			t.Errorf("herd-agent links %s: build it with -tags grpcnotrace", dep)
		}
	}
	if n < 10 {
		t.Fatalf("go list -deps ./cmd/herd-agent listed %d packages: is the binary there?", n)
	}
}
