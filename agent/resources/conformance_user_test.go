package resources

import (
	"testing"

	"github.com/herdcm/herd/testkit"
)

// userConformance returns the user type's conformance cases: accounts
// created, changed and removed in the sandbox root by this machine's
// shadow tools with --prefix.
func userConformance(t *testing.T) []conformanceCase {
	tools := []string{"useradd", "usermod", "userdel", "groupadd"}
	// withGroups lays out a sandbox host with the groups the cases use,
	// made by the group type itself.
	withGroups := func(t *testing.T, h *Host, _ *testFiles) {
		testkit.InitSandboxHost(t, h.Root)
		for name, gid := range map[string]int64{"admins": 3000, "devs": 3001} {
			r := res("group", name, map[string]any{"gid": gid})
			pkgConverge(t, h, &Group{}, &r)
		}
	}
	withAlice := func(t *testing.T, h *Host, files *testFiles) {
		withGroups(t, h, files)
		r := res("user", "alice", map[string]any{"uid": int64(2001), "groups": []string{"devs"}, "shell": "/bin/sh", "managehome": true, "home": "/home/alice"})
		pkgConverge(t, h, &User{}, &r)
	}
	full := map[string]any{
		"uid": int64(2001), "gid": "admins", "groups": []string{"users", "devs"},
		"home": "/home/alice", "shell": "/bin/bash", "comment": "Alice Admin", "managehome": true,
	}
	return []conformanceCase{
		{name: "user/create", typ: &User{}, tools: tools, setup: withGroups, res: res("user", "alice", full)},
		{name: "user/system", typ: &User{}, tools: tools, setup: withGroups,
			res: res("user", "svc-web", map[string]any{"system": true, "shell": "/usr/sbin/nologin", "home": "/srv/web"})},
		{name: "user/change", typ: &User{}, tools: tools, root: shadowRoot, setup: withAlice, res: res("user", "alice", full)},
		{name: "user/password", typ: &User{}, tools: append(tools, "chpasswd"), root: "chpasswd --root chroots into the host root", setup: withAlice,
			res: res("user", "alice", map[string]any{"password": "$y$j9T$abcdefgh$0123456789abcdefABCDEF"})},
		{name: "user/create-with-password", typ: &User{}, tools: append(tools, "chpasswd"), root: "chpasswd --root chroots into the host root", setup: withGroups,
			res: res("user", "bob", map[string]any{"password": "!", "shell": "/bin/sh"})},
		{name: "user/absent", typ: &User{}, tools: tools, root: shadowRoot, setup: withAlice,
			res: res("user", "alice", map[string]any{"ensure": "absent", "managehome": true})},
	}
}
