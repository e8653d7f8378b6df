package resources

import "testing"

// execConformance returns the exec type's conformance cases. Only a
// guarded exec can keep the contract's "a second run is in sync": an
// unguarded one runs on every run, by design.
func execConformance(t *testing.T) []conformanceCase {
	return []conformanceCase{{
		name: "exec/creates",
		typ:  &Exec{},
		res: res("exec", "make-done", map[string]any{
			"command": []string{"/bin/sh", "-c", `echo made > "$HERD_ROOT/done"`},
			"creates": "/done",
		}),
		refresh: true,
	}}
}
