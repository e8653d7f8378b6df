package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/cmd/nodecmd"
)

// TestPackagedServerConfig loads the server.toml the herd package installs
// with the server's own strict parser and checks, so the two never drift,
// and holds it to the unit: the server's directory is the one path the
// unit lets it write.
func TestPackagedServerConfig(t *testing.T) {
	t.Parallel()
	const path = "../../packaging/server.toml"
	var cfg serverConfig
	if err := nodecmd.ApplyConfigFile(newServerCmd(), path, &cfg); err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	if err := cfg.check(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if cfg.Site == "" || cfg.Dir != "/var/lib/herd-server" || cfg.Listen == "" || time.Duration(cfg.CheckinInterval) <= 0 {
		t.Errorf("%s gives %+v: want a site, dir /var/lib/herd-server, a listen address and a check-in interval", path, cfg)
	}
	unit, err := os.ReadFile("../../packaging/herd-server.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nReadWritePaths=" + cfg.Dir + "\n",
		"\nExecStart=/usr/bin/herd server --config /etc/herd/server.toml\n",
		"\nUser=herd\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("herd-server.service has no line %q", strings.TrimSpace(want))
		}
	}
}
