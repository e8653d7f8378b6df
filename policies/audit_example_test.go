package policies

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// exampleAudit prepares the example site's audit controls.
func exampleAudit(tb testing.TB) *Audit {
	tb.Helper()
	a, err := PrepareAudit(context.Background(), exampleFiles(tb), Options{})
	if err != nil {
		tb.Fatalf("PrepareAudit(example policies): %v", err)
	}
	if a.Empty() {
		tb.Fatal("the example site has no audit controls")
	}
	return a
}

func TestExampleAudit(t *testing.T) {
	t.Parallel()
	a := exampleAudit(t)
	var ids []string
	for _, c := range a.Controls() {
		ids = append(ids, c.ID)
		if c.Title == "" || c.Severity.Rank() == 0 || c.Reference == "" || c.Remediation == "" || c.File == "" || c.Line == 0 {
			t.Errorf("control %s lacks metadata: %+v", c.ID, c)
		}
	}
	if diff := cmp.Diff([]string{"last-run-clean", "no-file-drift", "services-non-root", "shadow-perms", "ssh-password-auth", "ssh-root-login"}, ids); diff != "" {
		t.Errorf("example controls (-want +got):\n%s", diff)
	}
	node := exampleNode(t)
	in := AuditInput{Node: node.Node, Facts: node.Facts, Catalog: node.Catalog}
	rs, err := a.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Result{}
	for _, r := range rs {
		got[r.Control] = r
	}
	// web-01 as compiled: sshd hardened, /etc/shadow not managed, no
	// run, no drift; demo-web runs as root (the gate allows it by name,
	// the audit reports it).
	want := map[string]Result{
		"last-run-clean":    {Control: "last-run-clean", State: StatePass},
		"no-file-drift":     {Control: "no-file-drift", State: StatePass},
		"shadow-perms":      {Control: "shadow-perms", State: StatePass},
		"ssh-password-auth": {Control: "ssh-password-auth", State: StatePass},
		"ssh-root-login":    {Control: "ssh-root-login", State: StatePass},
		"services-non-root": {Control: "services-non-root", State: StateFail,
			Evidence: []Message{{Message: "service demo-web runs as root: it sets no user", Resource: "service:demo-web"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Evaluate(web-01) (-want +got):\n%s", diff)
	}
}
