package catalogs

import (
	"context"
	"strings"
	"testing"

	"github.com/herdcm/herd/facts"
)

// TestNodeEnvironment: the last matching rule that names an environment
// places the node (by name glob and by condition); a node no such rule
// matches has none from classification; a bad name is a diagnostic.
func TestNodeEnvironment(t *testing.T) {
	t.Parallel()
	dir := writeSite(t, map[string]string{
		"nodes.toml": `
[[node]]
roles = []

[[node]]
match = ["web-*"]
environment = "staging"
roles = []

[[node]]
match = ["web-*"]
when = "facts.os.family == 'redhat'"
environment = "rhel-canary"
roles = []
`,
	})
	s, err := Load(context.Background(), dir, LoadOptions{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		node, family, want string
	}{
		{"web-01", "debian", "staging"},
		{"web-02", "redhat", "rhel-canary"},
		{"db-01", "redhat", ""},
	}
	for _, tt := range tests {
		got, err := s.NodeEnvironment(tt.node, facts.Facts{"os": map[string]any{"family": tt.family}})
		if err != nil || got != tt.want {
			t.Errorf("NodeEnvironment(%s, %s) = %q, %v; want %q", tt.node, tt.family, got, err, tt.want)
		}
	}

	bad := writeSite(t, map[string]string{"nodes.toml": "[[node]]\nroles = []\nenvironment = \"a b\"\n"})
	if _, err := Load(context.Background(), bad, LoadOptions{Version: "v1"}); err == nil || !strings.Contains(err.Error(), `environment "a b"`) {
		t.Errorf("Load with environment = \"a b\": %v, want a diagnostic naming it", err)
	}
}

// TestLoadEnvironmentOverride: LoadOptions.Environment names the site's
// environment, in its catalogs too; herd.toml's own, when it differs, is
// ignored and said in EnvironmentIgnored.
func TestLoadEnvironmentOverride(t *testing.T) {
	t.Parallel()
	tests := []struct {
		herdToml, force      string
		wantEnv, wantIgnored string
	}{
		{"", "", "production", ""},
		{"", "staging", "staging", ""},
		{"environment = \"production\"\n", "staging", "staging", "production"},
		{"environment = \"staging\"\n", "staging", "staging", ""},
		{"environment = \"qa\"\n", "", "qa", ""},
	}
	for _, tt := range tests {
		files := map[string]string{"nodes.toml": "[[node]]\nroles = []\n"}
		if tt.herdToml != "" {
			files["herd.toml"] = tt.herdToml
		}
		s, err := Load(context.Background(), writeSite(t, files), LoadOptions{Version: "v1", Environment: tt.force})
		if err != nil {
			t.Fatal(err)
		}
		cat, err := s.Compile("web-01", facts.Facts{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Settings.Environment != tt.wantEnv || cat.Environment != tt.wantEnv || s.EnvironmentIgnored != tt.wantIgnored {
			t.Errorf("herd.toml %q, forced %q: environment %q (catalog %q), ignored %q; want %q, ignored %q",
				tt.herdToml, tt.force, s.Settings.Environment, cat.Environment, s.EnvironmentIgnored, tt.wantEnv, tt.wantIgnored)
		}
	}
}
