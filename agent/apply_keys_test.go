package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestApplyAuthorizedKeyForNewUser: a user and her key in one site. Noop on
// a fresh root reports the key unknown (its user is not there yet), not
// failed; a run creates the user, then .ssh (0700) and authorized_keys
// (0600), both hers; a second run is in sync.
func TestApplyAuthorizedKeyForNewUser(t *testing.T) {
	needTools(t, "useradd")
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": `
[[user]]
name = "alice"
uid = 2001
home = "/home/alice"
managehome = true

[[authorized_key]]
name = "alice@laptop"
user = "alice"
key = "` + key + `"
options = ["no-pty"]
`,
	})
	root := sandbox(t)
	noop := fleet.Apply(t, site, root, "n1", true)
	for _, e := range noop.Events {
		if e.ID == "authorized_key:alice@laptop" && e.Status != agent.Unknown {
			t.Errorf("noop: the key is %s (%s), want unknown", e.Status, e.Error)
		}
	}
	fleet.MustApply(t, site, root, "n1")
	fleet.AssertFile(t, root, "home/alice/.ssh/authorized_keys", "no-pty "+key+" alice@laptop\n")
	for rel, mode := range map[string]os.FileMode{"home/alice/.ssh": os.ModeDir | 0o700, "home/alice/.ssh/authorized_keys": 0o600} {
		fi, err := os.Lstat(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != mode || st.Uid != 2001 {
			t.Errorf("%s: %v owned by %d, want %v owned by 2001", rel, fi.Mode(), st.Uid, mode)
		}
	}
	again := fleet.Apply(t, site, root, "n1", false)
	for _, e := range again.Events {
		if e.Status != agent.InSync {
			t.Errorf("second run: %s is %s %s", e.ID, e.Status, strings.TrimSpace(e.Error))
		}
	}
}
