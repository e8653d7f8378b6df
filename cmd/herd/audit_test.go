package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/server/auditreport"
	"github.com/herdcm/herd/testkit"
)

// auditHostile is what a node may put in evidence (a file's content, a
// failed command's error): markup and terminal escapes.
const auditHostile = "<script>alert(1)</script>\x1b]0;owned\x07\x1b[2J\" onload=\"x"

func goldenAudit() *herdv1.AuditResponse {
	since := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC).UnixMilli()
	return &herdv1.AuditResponse{
		Version: "9c1d7e0a4b21ffffffffffffffffffffffffffff",
		Controls: []*herdv1.AuditControl{
			{Id: "ssh-root-login", Title: "sshd refuses root logins", Severity: "high", Reference: "CIS Debian 12, 5.1.20",
				Remediation: "Set PermitRootLogin no.", Location: "policies/audit/ssh.rego:8", Pass: 1, Fail: 1, PercentCompliant: 50},
			{Id: "last-run-clean", Title: "the last run failed nothing", Severity: "medium", Location: "policies/audit/run.rego:6",
				Pass: 1, Error: 1, PercentCompliant: 50},
			{Id: "no-file-drift", Title: "no managed file drifted <b>", Severity: "low", NoData: 1, Pass: 1, PercentCompliant: 100},
		},
		Results: []*herdv1.AuditResult{
			{Node: "db-01", Control: "last-run-clean", State: "error", Error: "=HYPERLINK(\"http://evil\")", SinceUnixMs: since, Version: "v2"},
			{Node: "db-01", Control: "no-file-drift", State: "no-data", SinceUnixMs: since, Version: "v2"},
			{Node: "db-01", Control: "ssh-root-login", State: "fail", SinceUnixMs: since, Version: "v2", Evidence: []*herdv1.AuditEvidence{
				{Message: "PermitRootLogin is yes" + auditHostile, Resource: "file:/etc/ssh/sshd_config"},
				{Message: "=cmd|' /C calc'!A0"},
			}},
			{Node: "web-01", Control: "last-run-clean", State: "pass", SinceUnixMs: since, Version: "v1"},
			{Node: "web-01", Control: "no-file-drift", State: "pass", SinceUnixMs: since, Version: "v1"},
			{Node: "web-01", Control: "ssh-root-login", State: "pass", SinceUnixMs: since, Version: "v1"},
		},
	}
}

// TestAuditFormats: the table, CSV, JSON and HTML reports, as in
// testdata/audit.* (go test -update rewrites them). Nothing a node wrote
// reaches a terminal as a control character, the HTML as markup, or a
// spreadsheet as a formula.
func TestAuditFormats(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	view := auditreport.View{Resp: goldenAudit(), Now: now}
	past := auditreport.View{Resp: goldenAudit(), Now: now, At: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	broken := auditreport.View{Resp: goldenAudit(), Now: now}
	broken.Resp.AuditError = "audit controls: policies/audit/bad.rego:8: rego_type_error: undefined ref: input.reprot"
	tests := []struct {
		golden string
		print  func(w *bytes.Buffer) error
	}{
		{"audit.txt", func(w *bytes.Buffer) error { return printAudit(w, view) }},
		{"audit-at.txt", func(w *bytes.Buffer) error { return printAudit(w, past) }},
		{"audit-broken.txt", func(w *bytes.Buffer) error { return printAudit(w, broken) }},
		{"audit.csv", func(w *bytes.Buffer) error { return printAuditCSV(w, view.Resp) }},
		{"audit.json", func(w *bytes.Buffer) error { return printAuditJSON(w, view.Resp) }},
		{"audit.html", func(w *bytes.Buffer) error { return auditreport.WriteHTML(w, view) }},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			if err := tt.print(&b); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			assertNoControl(t, tt.golden, out)
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if d := cmp.Diff(string(want), out); d != "" {
				t.Errorf("%s (-want +got):\n%s", tt.golden, d)
			}
		})
	}

	// The HTML: every node string escaped, nothing fetched, no script.
	var h bytes.Buffer
	if err := auditreport.WriteHTML(&h, view); err != nil {
		t.Fatal(err)
	}
	html := h.String()
	for _, bad := range []string{"<script", "onload=\"", "<b>", "src=", "href=\"http", "@import", "url("} {
		if strings.Contains(html, bad) {
			t.Errorf("the HTML report holds %q", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", `\x1b]0;owned\a`, "default-src &#39;none&#39;", "<style>"} {
		if !strings.Contains(html, want) && !strings.Contains(html, strings.ReplaceAll(want, "&#39;", "'")) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}

	// The CSV: a header, one row per (node, control), formulas defused.
	rows, err := csv.NewReader(strings.NewReader(mustPrint(t, func(w *bytes.Buffer) error { return printAuditCSV(w, view.Resp) }))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(view.Resp.Results) || rows[0][0] != "node" {
		t.Errorf("CSV has %d rows (header %q), want a header and %d", len(rows), rows[0], len(view.Resp.Results))
	}
	for _, r := range rows {
		for _, cell := range r {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("CSV cell %q starts a formula", cell)
			}
		}
	}
}

func mustPrint(t *testing.T, print func(w *bytes.Buffer) error) string {
	t.Helper()
	var b bytes.Buffer
	if err := print(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestParseAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{in: "24h", want: now.Add(-24 * time.Hour)},
		{in: "2026-11-01T10:00:00Z", want: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)},
		{in: "2026-11-01", want: time.Date(2026, 11, 1, 0, 0, 0, 0, time.Local)},
		{in: "2026-11-01 10:30", want: time.Date(2026, 11, 1, 10, 30, 0, 0, time.Local)},
		{in: "-1h", wantErr: "cannot be negative"},
		{in: "yesterday", wantErr: `--at "yesterday"`},
	}
	for _, tt := range tests {
		got, err := parseAt(tt.in, now)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseAt(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// TestAuditCommand runs a real server with a compliant and a
// non-compliant node and drives herd audit against it.
func TestAuditCommand(t *testing.T) {
	t.Parallel()
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": "[[file]]\npath = \"/motd\"\ncontent = \"{{ .facts.motd }}\\n\"\n",
		"policies/audit/motd.rego": `# METADATA
# title: motd is polite
# custom:
#   id: motd-polite
#   severity: high
#   remediation: Be polite.
package herd.audit.motd

violations contains {"message": sprintf("motd says %s", [r.attrs.content]), "resource": r.id} if {
	r := input.resources["file:/motd"]
	contains(r.attrs.content, "rude")
}
`,
	})
	s, dir := startServer(t, site)
	for name, motd := range map[string]string{"web-01": "hello", "db-01": "rude " + auditHostile} {
		nc := checkedIn(t, s, name, map[string]any{"motd": motd})
		if _, err := nc.SendReport(context.Background(), &herdv1.SendReportRequest{Report: &herdv1.Report{
			RunId: "run-1", Version: "v1", StartedUnixNs: time.Now().UnixNano(), Summary: &herdv1.Summary{Resources: 1, InSync: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	adminDir := filepath.Join(t.TempDir(), "admin")
	if _, stderr, code := herd(t, "", "ca", "admin", "ops", "--dir", dir, "--out", adminDir); code != 0 {
		t.Fatalf("herd ca admin: %s", stderr)
	}
	conn := []string{"--server", s.Addr, "--admin-dir", adminDir}
	// The auditor works in the background: wait for its verdict.
	var out string
	deadline := time.Now().Add(time.Minute)
	for {
		o, stderr, code := herd(t, "", append([]string{"audit", "--format", "csv"}, conn...)...)
		// Both verdicts in: web-01 is no-data until its report is audited.
		if code == 2 && strings.Count(o, "\n") == 3 && !strings.Contains(o, ",no-data,") {
			out = o
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("herd audit --format csv: exit %d, want 2 with two rows: %s%s", code, o, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "db-01,motd-polite,high,fail,") || !strings.Contains(out, "web-01,motd-polite,high,pass,") {
		t.Errorf("herd audit --format csv:\n%s", out)
	}
	html := filepath.Join(t.TempDir(), "report.html")
	tests := []struct {
		args []string
		code int
		want []string
	}{
		{args: []string{"audit"}, code: 2, want: []string{"motd-polite  high      50.0%", "db-01: fail since", "remediation: Be polite.", `motd says rude <script>`}},
		{args: []string{"audit", "--node", "web-01"}, code: 0, want: []string{"motd-polite  high      100.0%"}},
		{args: []string{"audit", "--control", "motd-polite", "--at", "2000-01-01"}, code: 1},
		{args: []string{"audit", "--at", "1h"}, code: 0, want: []string{"no audit controls"}},
		{args: []string{"audit", "--format", "xml"}, code: 64},
		{args: []string{"audit", "--format", "html", "-o", html}, code: 2},
		{args: []string{"audit", "--format", "json"}, code: 2, want: []string{`"percentCompliant": 50`}},
	}
	for _, tt := range tests {
		o, stderr, code := herd(t, "", append(tt.args, conn...)...)
		if code != tt.code {
			t.Errorf("herd %q: exit %d, want %d: %s%s", tt.args, code, tt.code, o, stderr)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(o, w) {
				t.Errorf("herd %q lacks %q:\n%s", tt.args, w, o)
			}
		}
		assertNoControl(t, strings.Join(tt.args, " "), o)
	}
	b, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(b), "motd says rude &lt;script&gt;") {
		t.Errorf("herd audit -o %s wrote %v:\n%s", html, err, b)
	}
}

// FuzzAuditPrinters: whatever a node puts in its evidence or a control's
// error, the table and CSV send no control character to a terminal, the
// HTML holds none and no markup of it, and no CSV cell starts a formula.
func FuzzAuditPrinters(f *testing.F) {
	f.Add("db-01", auditHostile, "=1+1")
	f.Add("x", "\xff\xfe<b>", "@SUM(A1)")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, node, message, errText string) {
		r := goldenAudit()
		r.Results[0].Node, r.Results[0].Error = node, errText
		// <zq is in no template: found in the HTML, it came through raw.
		r.Results[2].Evidence[0].Message, r.Results[2].Evidence[1].Resource = "<zq"+message, message
		v := auditreport.View{Resp: r, Now: time.Unix(0, 0)}
		for name, print := range map[string]func(w *bytes.Buffer) error{
			"table": func(w *bytes.Buffer) error { return printAudit(w, v) },
			"csv":   func(w *bytes.Buffer) error { return printAuditCSV(w, r) },
			"html":  func(w *bytes.Buffer) error { return auditreport.WriteHTML(w, v) },
		} {
			var b bytes.Buffer
			if err := print(&b); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			assertNoControl(t, name, b.String())
			if name == "html" && strings.Contains(b.String(), "<zq") {
				t.Errorf("the HTML holds %q unescaped", "<zq"+message)
			}
			if name == "csv" {
				rows, err := csv.NewReader(&b).ReadAll()
				if err != nil {
					t.Fatalf("the CSV does not read back: %v", err)
				}
				for _, row := range rows {
					for _, cell := range row {
						if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
							t.Errorf("CSV cell %q starts a formula", cell)
						}
					}
				}
			}
		}
	})
}
