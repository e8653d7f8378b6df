package policies

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

const exampleSite = "../examples/site"

// exampleGate prepares the example site's gates.
func exampleGate(tb testing.TB) *Gate {
	tb.Helper()
	s, err := catalogs.Load(context.Background(), exampleSite, catalogs.LoadOptions{})
	if err != nil {
		tb.Fatalf("loading %s: %v", exampleSite, err)
	}
	g, err := Prepare(context.Background(), s.PolicyFiles(), Options{})
	if err != nil {
		tb.Fatalf("Prepare(example policies): %v", err)
	}
	if g.Empty() {
		tb.Fatal("the example site has no gate")
	}
	return g
}

// realisticInput is a node of n resources in the example site's style
// (files under /etc with content, directories, an sshd drop-in, packages,
// services with users, users), whose change against its previous catalog moves one package's
// version, in a rollout of 1,000 nodes of which 300 move it.
func realisticInput(tb testing.TB, n int) Input {
	tb.Helper()
	b, err := os.ReadFile(exampleSite + "/tests/facts/debian12.json")
	if err != nil {
		tb.Fatal(err)
	}
	f, err := facts.FromJSON(b)
	if err != nil {
		tb.Fatal(err)
	}
	build := func(version string) *catalogs.Catalog {
		c := &catalogs.Catalog{Environment: "production", Node: "web-042", Version: version, Files: []catalogs.FileRef{}}
		for i := range n {
			var r catalogs.Resource
			switch i % 6 {
			case 0, 1:
				p := fmt.Sprintf("/etc/app%d/conf-%d.conf", i%7, i)
				r = catalogs.Resource{Type: "file", Name: p, Attrs: map[string]any{
					"path": p, "mode": "0644", "owner": "root", "group": "root",
					"content": fmt.Sprintf("# managed by herd\nlisten = %d\nworkers = 8\nlog = info\n", 8000+i),
				}, Notify: []string{fmt.Sprintf("service:svc-%d", i)}}
			case 2:
				name := fmt.Sprintf("pkg-%d", i)
				ensure := "1.0"
				if i == 2 && version == "v2" {
					ensure = "1.1"
				}
				r = catalogs.Resource{Type: "package", Name: name, Attrs: map[string]any{"name": name, "ensure": ensure}}
			case 3:
				name := fmt.Sprintf("svc-%d", i)
				r = catalogs.Resource{Type: "service", Name: name, Attrs: map[string]any{
					"name": name, "run": []string{"/usr/bin/" + name, "--port", "8080"}, "user": "app",
					"restart": "always", "env": map[string]string{"GOMAXPROCS": "2"},
				}, Require: []string{fmt.Sprintf("package:pkg-%d", i-1)}}
			case 4:
				name := fmt.Sprintf("user-%d", i)
				r = catalogs.Resource{Type: "user", Name: name, Attrs: map[string]any{
					"name": name, "uid": int64(2000 + i), "groups": []string{"admins"}, "home": "/home/" + name,
				}}
			case 5:
				// One sshd drop-in, as a host has; directories otherwise.
				p := fmt.Sprintf("/var/lib/app%d", i)
				attrs := map[string]any{"path": p, "ensure": "directory", "mode": "0750", "owner": "app"}
				if i == 5 {
					p = "/etc/ssh/sshd_config.d/50-herd.conf"
					attrs = map[string]any{"path": p, "mode": "0600", "content": "PermitRootLogin no\nPasswordAuthentication no\n"}
				}
				r = catalogs.Resource{Type: "file", Name: p, Attrs: attrs}
			}
			r.ID = r.Type + ":" + r.Name
			r.Source = fmt.Sprintf("roles/r%d.toml:%d", i%5, i+1)
			c.Resources = append(c.Resources, r)
		}
		return c
	}
	prev, next := build("v1"), build("v2")
	change := catalogs.Diff(prev, next, nil)
	changes := map[string]catalogs.Change{}
	for i := range 1000 {
		if i < 300 {
			changes[fmt.Sprintf("web-%03d", i)] = change
		} else {
			changes[fmt.Sprintf("web-%03d", i)] = catalogs.Change{}
		}
	}
	return Input{Node: "web-042", Facts: f, Catalog: next, Previous: prev, Change: change,
		Fleet: Summarize("v2", "v1", 1000, changes)}
}

func TestExampleGateAllowsRealisticNodes(t *testing.T) {
	t.Parallel()
	g := exampleGate(t)
	for _, n := range []int{30, 192} {
		in := realisticInput(t, n)
		d, err := g.Evaluate(context.Background(), in)
		if err != nil || d.Denied() {
			t.Errorf("Evaluate(%d resources) = %+v, %v; want allowed", n, d, err)
		}
		// The same node with a world-writable file is denied: the
		// benchmark measures gates that look at every resource.
		in.Catalog.Resources[0].Attrs["mode"] = "0666"
		d, err = g.Evaluate(context.Background(), in)
		if err != nil || len(d.Deny) != 1 || d.Deny[0].Resource != in.Catalog.Resources[0].ID {
			t.Errorf("Evaluate(%d resources, one world-writable) = %+v, %v; want it denied", n, d, err)
		}
	}
}

// exampleNode is web-01 of the example site, compiled, as a new node of a
// one-node rollout.
func exampleNode(tb testing.TB) Input {
	tb.Helper()
	s, err := catalogs.Load(context.Background(), exampleSite, catalogs.LoadOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(exampleSite + "/tests/facts/debian12.json")
	if err != nil {
		tb.Fatal(err)
	}
	f, err := facts.FromJSON(b)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := s.Compile("web-01", f)
	if err != nil {
		tb.Fatal(err)
	}
	change := catalogs.Diff(nil, c, nil)
	return Input{Node: "web-01", Facts: f, Catalog: c, Change: change,
		Fleet: Summarize(c.Version, "", 1, map[string]catalogs.Change{"web-01": change})}
}

// BenchmarkGateEvaluate is one node's gate evaluation with the example
// site's gates (target: at most 0.3 ms median per node): the example's
// web-01 (a new node: all of it is judged), and nodes of 30 and 192
// resources, judged whole and judged by their change.
func BenchmarkGateEvaluate(b *testing.B) {
	g := exampleGate(b)
	inputs := map[string]Input{"example-web-01": exampleNode(b)}
	for _, n := range []int{30, 192} {
		inputs[fmt.Sprintf("resources=%d", n)] = realisticInput(b, n)
	}
	for _, name := range []string{"example-web-01", "resources=30", "resources=192"} {
		in := inputs[name]
		// warm: the gate has seen these resources on other nodes (a
		// role's nodes share most); cold: every resource is new; judged:
		// the node's previous catalog passed the same policies, so that
		// input.judge holds only what the change adds or changes.
		for _, variant := range []string{"", "/cold", "/judged"} {
			if variant == "/judged" && in.Previous == nil {
				continue
			}
			b.Run(name+variant, func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				in := in
				in.Judged = variant == "/judged"
				for b.Loop() {
					if variant == "/cold" {
						g.cache = newResourceCache()
					}
					d, err := g.Evaluate(ctx, in)
					if err != nil || d.Denied() {
						b.Fatalf("Evaluate = %+v, %v", d, err)
					}
				}
			})
		}
	}
}
