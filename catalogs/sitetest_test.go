package catalogs

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestRunTestsGate: a site test with deny = [...] passes only when the
// gate denies its catalog with those messages; one without deny fails when
// the gate denies; a gate error fails the test; no gate fails a test that
// expects a denial.
func TestRunTestsGate(t *testing.T) {
	t.Parallel()
	dir := writeSite(t, map[string]string{"tests/web.toml": `
[[test]]
name = "allowed"
node = "web-01"

[[test]]
name = "denied root"
node = "web-02"
deny = ["runs as root", "motd"]

[[test]]
name = "denied anything"
node = "web-03"
deny = []
`})
	s, err := Load(context.Background(), dir, LoadOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	// The gates under test see the compiled catalog: deny is decided on
	// the node's name and on what the catalog holds.
	gateFor := func(deny map[string][]string, fail error) TestGate {
		return func(node string, f map[string]any, c *Catalog) ([]string, error) {
			if c == nil || c.Node != node {
				return nil, errors.New("gate got another node's catalog")
			}
			if _, ok := c.Resource("file:/etc/motd"); !ok {
				return nil, errors.New("gate got a catalog without file:/etc/motd")
			}
			return deny[node], fail
		}
	}
	tests := []struct {
		name string
		gate TestGate
		want map[string]string // test name → a failure containing this ("" passes)
	}{
		{"gate agrees", gateFor(map[string][]string{"web-02": {"service x runs as root", "file:/etc/motd is world-writable (motd)"}, "web-03": {"no"}}, nil), map[string]string{
			"allowed": "", "denied root": "", "denied anything": "",
		}},
		{"gate denies an allowed node", gateFor(map[string][]string{"web-01": {"too many packages"}, "web-02": {"runs as root: motd"}, "web-03": {"x"}}, nil), map[string]string{
			"allowed": `the policy gates deny the catalog of web-01: too many packages`, "denied root": "", "denied anything": "",
		}},
		{"gate misses a message", gateFor(map[string][]string{"web-02": {"runs as root"}, "web-03": {"x"}}, nil), map[string]string{
			"allowed": "", "denied root": `no deny message for web-02 contains "motd" (denied with: runs as root)`, "denied anything": "",
		}},
		{"gate allows everything", gateFor(nil, nil), map[string]string{
			"allowed": "", "denied root": `the policy gates allow the catalog of web-02, want it denied with "runs as root", "motd"`, "denied anything": "allow the catalog of web-03",
		}},
		{"gate fails", gateFor(nil, errors.New("policies/gate.rego:3: eval_conflict_error")), map[string]string{
			"allowed": "gating the catalog of web-01: policies/gate.rego:3: eval_conflict_error", "denied root": "gating", "denied anything": "gating",
		}},
		{"no gate", nil, map[string]string{
			"allowed": "", "denied root": "no policy gate is loaded", "denied anything": "no policy gate is loaded",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			results := s.RunTests(tt.gate)
			if len(results) != 3 {
				t.Fatalf("RunTests returned %d results, want 3", len(results))
			}
			for _, r := range results {
				want := tt.want[r.Test.Name]
				got := Diagnostics(r.Failures).Error()
				switch {
				case want == "" && !r.Passed():
					t.Errorf("test %q failed: %s; want it to pass", r.Test.Name, got)
				case want != "" && !strings.Contains(got, want):
					t.Errorf("test %q failures = %q, want one containing %q", r.Test.Name, got, want)
				}
			}
		})
	}
}

// TestRunTestsProgress: progress hears of every test as it ends, in
// order, with the site's number of tests.
func TestRunTestsProgress(t *testing.T) {
	t.Parallel()
	dir := writeSite(t, map[string]string{"tests/web.toml": `
[[test]]
name = "one"
node = "web-01"

[[test]]
name = "two"
node = "web-02"
`})
	s, err := Load(context.Background(), dir, LoadOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	results := s.RunTestsProgress(nil, func(done, total int) {
		got = append(got, strings.Repeat("x", done)+"/"+strings.Repeat("x", total))
	})
	if want := []string{"x/xx", "xx/xx"}; len(results) != 2 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("RunTestsProgress told %v for %d results, want %v", got, len(results), want)
	}
}
