package nodecmd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestUserPasswordNeverShown: a user's password hash is sensitive by
// nature. A noop run and a real run set or plan it, and neither the
// events, the report (as JSON, as the spool and server keep it) nor the
// terminal output carries the hash; the hash does reach etc/shadow.
func TestUserPasswordNeverShown(t *testing.T) {
	testkit.NeedTools(t, "useradd", "usermod", "chpasswd")
	testkit.NeedRoot(t, "chpasswd --root chroots into the sandbox")
	const hash = "$6$Zq1wXk3.$4GmS1a8oWb0Tq6ytV8Qkq0mUo4p0yXq7P3cVnQd8D7Ih3H5eH7Y1tZr2jJm9fC0k1lA2sB3dE4fG5hI6jK7lM."
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[user]]\nname = \"alice\"\npassword = \"" + hash + "\"\n",
	})
	root := testkit.NewSandboxHost(t)
	// The hash must not leak in any of its parts, the salt included.
	secretParts := []string{hash, "Zq1wXk3", "4GmS1a8oWb0Tq6ytV8Qkq0mUo4p0y"}
	check := func(what string, r *agent.Report) {
		t.Helper()
		var out bytes.Buffer
		for _, e := range r.Events {
			WriteEvent(&out, e, true, true)
		}
		WriteSummary(&out, r)
		js, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secretParts {
			if strings.Contains(out.String(), s) {
				t.Errorf("%s: the terminal output shows the password hash:\n%s", what, out.String())
			}
			if strings.Contains(string(js), s) {
				t.Errorf("%s: the report shows the password hash: %s", what, js)
			}
		}
		found := false
		for _, e := range r.Events {
			for _, c := range e.Changes {
				if c.Attr == "password" {
					found = true
					if !c.Sensitive || c.From != "" || c.To != "" || c.Diff != "" {
						t.Errorf("%s: the password change is %+v, want sensitive and without values", what, c)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no event names the password change: %+v", what, r.Events)
		}
		if !strings.Contains(out.String(), "password (sensitive)") {
			t.Errorf("%s: the terminal output does not say the password changes:\n%s", what, out.String())
		}
	}
	check("noop", fleet.Apply(t, site, root, "n1", true))
	check("apply", fleet.MustApply(t, site, root, "n1"))
	b, err := os.ReadFile(filepath.Join(root, "etc/shadow"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "alice:"+hash+":") {
		t.Errorf("etc/shadow does not hold alice's hash:\n%s", b)
	}
	again := fleet.Apply(t, site, root, "n1", false)
	if again.Summary.Changed != 0 || again.Summary.Failed != 0 {
		t.Errorf("second run = %+v, want everything in sync", again.Events)
	}
}
