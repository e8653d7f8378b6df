// Package herd_test holds repository-wide checks: the import rules between
// Herd's packages (shared/CONVENTIONS.md §2).
package herd_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/herdcm/herd"

// rules says, for each room, which of Herd's own packages it may import
// (besides itself and its sub-packages when listed) and which outside
// packages it must never pull in, directly or through a dependency.
var rules = []struct {
	pkg       string
	allowHerd []string // Herd packages it may depend on
	forbid    []string // import path prefixes it must not depend on
}{
	{pkg: "facts", allowHerd: nil},
	{pkg: "catalogs", allowHerd: []string{"facts"}, forbid: []string{
		"google.golang.org/grpc", "github.com/mattn/go-sqlite3", "github.com/open-policy-agent/opa", "net/http",
	}},
	{pkg: "policies", allowHerd: []string{"catalogs", "facts"}},
	{pkg: "agent", allowHerd: []string{"catalogs", "facts", "api/herdv1", "agent/resources", "agent/supervise", "agent/sandbox"}},
	{pkg: "agent/resources", allowHerd: []string{"catalogs", "facts"}},
	{pkg: "agent/supervise", allowHerd: nil},
	{pkg: "server", allowHerd: []string{"catalogs", "facts", "policies", "server/store", "server/ca", "api/herdv1"}},
	{pkg: "server/store", allowHerd: []string{"catalogs", "facts", "server/ca"}},
	{pkg: "server/ca", allowHerd: []string{"catalogs", "facts"}},
	{pkg: "api/herdv1", allowHerd: nil},
	{pkg: "testkit", allowHerd: []string{"agent/sandbox"}},
	{pkg: "agent/sandbox", allowHerd: nil},
}

type listedPkg struct {
	ImportPath string
	Deps       []string
}

func TestImportRules(t *testing.T) {
	if testing.Short() {
		t.Skip("go list over the whole module is slow; skipped in -short")
	}
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listedPkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listedPkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = p
	}
	checked := 0
	for _, r := range rules {
		p, ok := pkgs[r.pkg]
		if !ok {
			continue // the room is not built yet
		}
		checked++
		for _, dep := range p.Deps {
			if rel, ok := strings.CutPrefix(dep, module+"/"); ok {
				if rel == r.pkg || strings.HasPrefix(rel, r.pkg+"/") || slices.Contains(r.allowHerd, rel) {
					continue
				}
				t.Errorf("%s depends on %s: CONVENTIONS.md §2 allows it only %v", r.pkg, rel, r.allowHerd)
				continue
			}
			for _, f := range r.forbid {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s (forbidden: compile must stay pure)", r.pkg, dep)
				}
			}
		}
		// testkit is for tests only.
		for _, dep := range p.Deps {
			if dep == module+"/testkit" {
				t.Errorf("%s imports testkit outside a test", r.pkg)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package of the rules was found: is go list run in the module root?")
	}
}
