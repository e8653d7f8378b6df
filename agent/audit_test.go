package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit"
)

// auditSite declares an audited file, a file that requires it and one
// that the audited file notifies: an audit resource must be checked,
// never changed, and must neither skip nor refresh anything.
var auditSite = map[string]string{
	"nodes.toml": "[[node]]\nroles = [\"base\"]\n",
	"roles/base.toml": `
[[file]]
path = "/etc/audited.conf"
content = "PermitRootLogin no\n"
mode = "0600"
audit = true
notify = ["exec:/bin/true"]

[[file]]
path = "/etc/after.conf"
content = "after\n"
require = ["file:/etc/audited.conf"]

[[exec]]
command = ["/bin/true"]
refreshonly = true
`,
}

// TestApplyAuditResource runs herd apply over real files: a drifted file
// marked audit = true stays drifted, run after run, reported as drift
// with what differs; its dependent is applied; the exit code is 2 (a
// difference, not a failure); a file in sync is in sync.
func TestApplyAuditResource(t *testing.T) {
	t.Parallel()
	root := testkit.NewSandboxHost(t)
	site := testkit.WriteSite(t, auditSite)
	audited := filepath.Join(root, "etc/audited.conf")
	if err := os.WriteFile(audited, []byte("PermitRootLogin yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, noop := range []bool{false, false, true} {
		r, err := agent.Apply(context.Background(), agent.ApplyOptions{Site: site, Root: root, Node: "web-01", Noop: noop})
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]agent.Event{}
		for _, e := range r.Events {
			byID[e.ID] = e
		}
		e := byID["file:/etc/audited.conf"]
		if e.Status != agent.Drift || e.Noop {
			t.Fatalf("noop=%v: audited file = %+v, want drift", noop, e)
		}
		attrs := map[string]bool{}
		for _, c := range e.Changes {
			attrs[c.Attr] = true
			if c.Attr == "content" && !strings.Contains(c.Diff, "+PermitRootLogin no") {
				t.Errorf("noop=%v: the drift's content diff %q does not say what differs", noop, c.Diff)
			}
		}
		if !attrs["content"] || !attrs["mode"] {
			t.Errorf("noop=%v: drift changes %+v, want content and mode", noop, e.Changes)
		}
		if got := byID["file:/etc/after.conf"]; got.Status == agent.Skipped || got.Status == agent.Unknown || got.Status == agent.Failed {
			t.Errorf("noop=%v: the audited file's dependent = %+v, want it run", noop, got)
		}
		if got := byID["exec:/bin/true"]; got.Refresh != "" {
			t.Errorf("noop=%v: the audited file's drift refreshed %+v", noop, got)
		}
		if r.Summary.Drift != 1 || r.Summary.Failed != 0 {
			t.Errorf("noop=%v: summary %+v, want drift 1 and no failure", noop, r.Summary)
		}
		if r.ExitCode() != 2 {
			t.Errorf("noop=%v: exit code %d, want 2 (drift is a difference, never a failure)", noop, r.ExitCode())
		}
		b, err := os.ReadFile(audited)
		if err != nil || string(b) != "PermitRootLogin yes\n" {
			t.Fatalf("noop=%v: the audited file was changed: %q, %v", noop, b, err)
		}
		if fi, err := os.Stat(audited); err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("noop=%v: the audited file's mode was changed: %v, %v", noop, fi.Mode(), err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/after.conf")); err != nil || string(b) != "after\n" {
		t.Errorf("the dependent was not applied: %q, %v", b, err)
	}

	// Put right by hand, the audited file is in sync.
	if err := os.WriteFile(audited, []byte("PermitRootLogin no\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(audited, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := agent.Apply(context.Background(), agent.ApplyOptions{Site: site, Root: root, Node: "web-01"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Summary.Drift != 0 || r.ExitCode() != 0 {
		t.Errorf("after the hand fix: summary %+v, exit %d; want no drift and exit 0", r.Summary, r.ExitCode())
	}
}
