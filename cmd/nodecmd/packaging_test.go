package nodecmd

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestPackagedAgentConfig loads the agent.toml the herd-agent package
// installs with the agent's own strict parser, so the two never drift, and
// holds it to the unit that reads it.
func TestPackagedAgentConfig(t *testing.T) {
	t.Parallel()
	const path = "../../packaging/agent.toml"
	cmd := newAgentCmd()
	var cfg agentConfig
	if err := ApplyConfigFile(cmd, path, &cfg); err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	// Packaged for a managed host: the real root, no site (a server's
	// agent), and no join token a package would spread to every host.
	if cfg.Root != "/" || cfg.Site != "" || cfg.JoinToken != "" || time.Duration(cfg.Interval) <= 0 || cfg.LogLevel == "" {
		t.Errorf("%s gives %+v: want root /, no site, no join token, an interval and a log level", path, cfg)
	}
	unit, err := os.ReadFile("../../packaging/herd-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nExecStart=/usr/bin/herd-agent agent --config /etc/herd/agent.toml\n",
		"\nKillMode=process\n", "\nDelegate=yes\n", "\nRestart=on-failure\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("herd-agent.service has no line %q", strings.TrimSpace(want))
		}
	}
}
