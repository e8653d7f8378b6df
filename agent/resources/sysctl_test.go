package resources

import (
	"context"
	"strings"
	"testing"
)

// TestSysctlUnderASandboxRoot: without a proc/sys of its own, a sandbox
// root gets the persisted file and a plan that says the live value is not
// managed; a root that has proc/sys but not the parameter is an error
// naming it, as on a real host.
func TestSysctlUnderASandboxRoot(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	r := res("sysctl", "vm.swappiness", map[string]any{"value": "10"})
	p, err := (&Sysctl{}).Check(context.Background(), h, &r)
	if err != nil {
		t.Fatal(err)
	}
	var attrs []string
	for _, c := range p.Changes {
		attrs = append(attrs, c.Attr)
	}
	if got := strings.Join(attrs, ","); !strings.Contains(got, "live value not managed under --root") || !strings.Contains(got, "persist") {
		t.Errorf("plan changes = %s, want the persisted file and the note", got)
	}

	writeRootFile(t, h, "proc/sys/vm/overcommit_memory", "0\n")
	if _, err := (&Sysctl{}).Check(context.Background(), h, &r); err == nil || !strings.Contains(err.Error(), "no kernel parameter vm.swappiness") {
		t.Errorf("Check with proc/sys but no parameter: %v", err)
	}
}
