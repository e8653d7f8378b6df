package resources

import (
	"testing"

	"github.com/herdcm/herd/testkit"
)

// groupConformance returns the group type's conformance cases, run by this
// machine's groupadd, groupmod and groupdel with --prefix.
func groupConformance(t *testing.T) []conformanceCase {
	tools := []string{"groupadd", "groupmod", "groupdel"}
	sandbox := func(t *testing.T, h *Host, _ *testFiles) { testkit.InitSandboxHost(t, h.Root) }
	withOps := func(t *testing.T, h *Host, files *testFiles) {
		sandbox(t, h, files)
		r := res("group", "ops", map[string]any{"gid": int64(3000)})
		pkgConverge(t, h, &Group{}, &r)
	}
	return []conformanceCase{
		{name: "group/create", typ: &Group{}, tools: tools, setup: sandbox, res: res("group", "ops", map[string]any{"gid": int64(3000)})},
		{name: "group/system", typ: &Group{}, tools: tools, setup: sandbox, res: res("group", "svc", map[string]any{"system": true})},
		{name: "group/gid", typ: &Group{}, tools: tools, setup: withOps, res: res("group", "ops", map[string]any{"gid": int64(3100)})},
		{name: "group/absent", typ: &Group{}, tools: tools, setup: withOps, res: res("group", "ops", map[string]any{"ensure": "absent"})},
	}
}
