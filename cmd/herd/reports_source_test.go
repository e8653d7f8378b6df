package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/testkit"
)

// TestReportsSource: a real agent run against a real server with a
// failing resource; the report the server stored names the failed
// resource's source line, and `herd reports` says it in its list, in one
// run in full and in --json.
func TestReportsSource(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": `
[[exec]]
name = "boom"
command = ["/bin/sh", "-c", "echo broken >&2; exit 3"]
`,
	})
	s, dir := startServer(t, site)
	token, _, err := s.CA().NewToken(context.Background(), "web-01", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := herd(t, "", "agent", "--server", s.Addr, "--join-token", token, "--name", "web-01",
		"--root", t.TempDir(), "--once")
	if code != 4 {
		t.Fatalf("herd agent --once with a failing resource exited %d, want 4:\n%s%s", code, out, stderr)
	}
	adminDir := filepath.Join(t.TempDir(), "admin")
	if out, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: exit %d: %s%s", code, out, stderr)
	}
	conn := []string{"--server", s.Addr, "--admin-dir", adminDir}

	out, stderr, code = herd(t, "", append([]string{"reports", "web-01"}, conn...)...)
	if want := regexp.MustCompile(`(?m)^    failed +exec:boom \(roles/r\.toml:2\)  \S`); code != 0 || !want.MatchString(out) {
		t.Fatalf("herd reports web-01: exit %d:\n%s%s\nwant a line matching %s", code, out, stderr, want)
	}

	out, stderr, code = herd(t, "", append([]string{"reports", "web-01", "--json"}, conn...)...)
	var list struct {
		Reports []struct {
			Report struct {
				RunID  string `json:"runId"`
				Events []struct{ ID, Status, Source string }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list.Reports) != 1 {
		t.Fatalf("herd reports web-01 --json: exit %d, %v:\n%s%s", code, err, out, stderr)
	}
	r := list.Reports[0].Report
	if len(r.Events) != 1 || r.Events[0].ID != "exec:boom" || r.Events[0].Source != "roles/r.toml:2" {
		t.Fatalf("herd reports --json events = %+v, want exec:boom with source roles/r.toml:2", r.Events)
	}

	out, stderr, code = herd(t, "", append([]string{"reports", "web-01", r.RunID}, conn...)...)
	if want := regexp.MustCompile(`(?m)^  failed +exec:boom \(roles/r\.toml:2, [^)]+\)  `); code != 0 || !want.MatchString(out) {
		t.Errorf("herd reports web-01 %s: exit %d:\n%s%s\nwant a line matching %s", r.RunID, code, out, stderr, want)
	}
	if !strings.Contains(out, "exited 3") {
		t.Errorf("herd reports web-01 %s does not show the error:\n%s", r.RunID, out)
	}
}

// TestStoredSummarySource: the one run summary names a stored report's
// failed resource with its source line, and a report of an agent older
// than the source field still renders, without one.
func TestStoredSummarySource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, source, want string
	}{
		{"with source", "roles/app.toml:14", "  failed exec:migrate (roles/app.toml:14)\n      exit status 2\n"},
		{"old report", "", "  failed exec:migrate\n      exit status 2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sr := goldenRun()
			for _, e := range sr.Report.Events {
				e.Source = ""
				if e.Status == "failed" {
					e.Id, e.Source = "exec:migrate", tt.source
				}
			}
			var b strings.Builder
			nodecmd.WriteRunSummary(&b, storedSummary(sr))
			if !strings.Contains(b.String(), tt.want) {
				t.Errorf("summary of a stored report:\n%s\nwant it to contain\n%s", b.String(), tt.want)
			}
		})
	}
}
