package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// buildAgent builds herd-agent as it ships, stamped with version.
func buildAgent(t *testing.T, version, out string) []byte {
	t.Helper()
	c := exec.Command("go", "build", "-tags", "grpcnotrace", "-trimpath",
		"-ldflags", "-X github.com/herdcm/herd/cmd/nodecmd.version="+version, "-o", out, "github.com/herdcm/herd/cmd/herd-agent")
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("building herd-agent %s: %v\n%s", version, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAgentUpgradesItself: a running agent daemon (herd-agent 1.0.0 from
// a .deb in a sandbox root) supervising a service installs herd-agent
// 2.0.0 through its own catalog. The run finishes and is reported exactly
// once; the same process re-executes the new program, which checks in as
// 2.0.0 and adopts the service: its pid is the same.
func TestAgentUpgradesItself(t *testing.T) {
	testkit.NeedRoot(t, "dpkg installs the agent's package into the sandbox root")
	testkit.NeedTools(t, "dpkg", "dpkg-deb", "go")
	t.Parallel()
	bin := t.TempDir()
	debs := map[string][]byte{}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		prog := buildAgent(t, v, filepath.Join(bin, "herd-agent-"+v))
		_, deb := testkit.BuildDeb(t, testkit.DebSpec{
			Name: "herd-agent", Version: v, Arch: "all",
			Files: map[string]string{"/usr/bin/herd-agent": string(prog)},
			Modes: map[string]fs.FileMode{"/usr/bin/herd-agent": 0o755},
		})
		debs[v] = deb
	}
	root := testkit.NewSandboxHost(t)
	oldDeb := filepath.Join(t.TempDir(), "herd-agent_1.0.0_all.deb")
	if err := os.WriteFile(oldDeb, debs["1.0.0"], 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg", "--root", root, "-i", oldDeb).CombinedOutput(); err != nil {
		t.Fatalf("installing herd-agent 1.0.0 in the sandbox: %v\n%s", err, out)
	}

	service := "[[service]]\nname = \"sleeper\"\nrun = [\"/bin/sleep\", \"3600\"]\n"
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": service,
	})
	s, dir := startServer(t, site)
	adminDir := filepath.Join(t.TempDir(), "admin")
	if out, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: exit %d: %s%s", code, out, stderr)
	}
	conn := []string{"--server", s.Addr, "--admin-dir", adminDir}
	token, stderr, code := herd(t, "", append([]string{"ca", "token"}, conn...)...)
	if code != 0 {
		t.Fatalf("herd ca token: %s", stderr)
	}

	agentProg := filepath.Join(root, "usr/bin/herd-agent")
	child := exec.Command(agentProg, "agent", "--server", s.Addr, "--join-token", strings.TrimSpace(token), "--name", "n1",
		"--root", root, "--interval", "1h", "--log-level", "debug")
	var out testkit.SyncBuffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = child.Wait(); close(exited) }()
	t.Cleanup(func() {
		child.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			child.Process.Kill()
			<-exited
		}
		fleet.StopServices(t, root)
	})
	await := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(120 * time.Second)
		for !ok() {
			select {
			case <-exited:
				t.Fatalf("the agent exited (%v) while waiting for %s:\n%s", waitErr, what, out.String())
			case <-deadline:
				t.Fatalf("waiting for %s: gave up; the agent said:\n%s", what, out.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	sleeperPID := func() int {
		o, _, code := herd(t, "", "services", "--root", root, "--json")
		if code != 0 {
			return 0
		}
		var list []struct {
			Name  string `json:"name"`
			State string `json:"state"`
			PID   int    `json:"pid"`
		}
		if json.Unmarshal([]byte(o), &list) != nil {
			return 0
		}
		for _, s := range list {
			if s.Name == "sleeper" && s.State == "running" {
				return s.PID
			}
		}
		return 0
	}
	var pid int
	await("the service to run", func() bool { pid = sleeperPID(); return pid != 0 })
	versionIs := func(v string) func() bool {
		return func() bool {
			o, _, code := herd(t, "", append([]string{"nodes", "--where", fmt.Sprintf("agent_version == %q", v)}, conn...)...)
			return code == 0 && strings.Contains(o, "n1")
		}
	}
	await("the agent to check in as 1.0.0", versionIs("1.0.0"))

	// The site pins herd-agent 2.0.0 from a .deb it ships.
	for name, body := range map[string][]byte{
		"files/herd-agent_2.0.0_all.deb": debs["2.0.0"],
		"roles/r.toml":                   []byte(service + "\n[[package]]\nname = \"herd-agent\"\nsource = \"files/herd-agent_2.0.0_all.deb\"\nensure = \"2.0.0\"\n"),
	} {
		p := filepath.Join(site, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	await("the upgraded agent to check in as 2.0.0", versionIs("2.0.0"))
	if !strings.Contains(out.String(), "re-executing") {
		t.Errorf("the agent did not say it re-executes itself:\n%s", out.String())
	}
	select {
	case <-exited:
		t.Fatalf("the agent process ended (%v): the upgrade must re-execute in place:\n%s", waitErr, out.String())
	default:
	}
	await("the upgraded agent's supervisor to answer", func() bool { return sleeperPID() != 0 })
	if got := sleeperPID(); got != pid {
		t.Errorf("the service's pid is %d after the upgrade, was %d: it was restarted", got, pid)
	}

	// The run that installed the package was reported exactly once.
	var upgradeRuns []string
	seen := map[string]int{}
	await("the upgrade's report", func() bool {
		o, _, code := herd(t, "", append([]string{"reports", "n1", "--json", "--limit", "0"}, conn...)...)
		if code != 0 {
			return false
		}
		var resp herdv1.ListReportsResponse
		if protojson.Unmarshal([]byte(o), &resp) != nil {
			return false
		}
		upgradeRuns, seen = nil, map[string]int{}
		for _, sr := range resp.Reports {
			r := sr.Report
			seen[r.RunId]++
			for _, e := range r.Events {
				if e.Id == "package:herd-agent" && e.Status == "changed" {
					upgradeRuns = append(upgradeRuns, r.RunId)
				}
			}
		}
		return len(upgradeRuns) > 0
	})
	if len(upgradeRuns) != 1 {
		t.Errorf("runs that upgraded herd-agent: %q, want exactly one", upgradeRuns)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("run %s reported %d times", id, n)
		}
	}
}
