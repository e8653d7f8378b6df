// Package auditreport renders the fleet's compliance, as the server's
// audit answer holds it, into the report an auditor keeps: one
// self-contained HTML file. herd audit --format html writes it, and the
// views it is made of (counts per node, failing results per control) serve
// herd audit's table too.
package auditreport

import (
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/api/herdv1"
)

// View is what the table and HTML reports show: the answer (every page
// of it), the time asked for (zero: now), and when the report was made.
type View struct {
	Resp *herdv1.AuditResponse
	At   time.Time
	Now  time.Time
}

// NodeTally is one node's counts, for the per-node part.
type NodeTally struct {
	Node                       string
	Pass, Fail, NoData, Errors int
	Failing                    []string // control ids that fail or are in error
}

// Nodes counts each node's results, in the answer's order (by node).
func (v View) Nodes() []NodeTally {
	var out []NodeTally
	for _, r := range v.Resp.Results {
		if len(out) == 0 || out[len(out)-1].Node != r.Node {
			out = append(out, NodeTally{Node: r.Node})
		}
		n := &out[len(out)-1]
		switch r.State {
		case "pass":
			n.Pass++
		case "fail":
			n.Fail++
			n.Failing = append(n.Failing, r.Control)
		case "no-data":
			n.NoData++
		case "error":
			n.Errors++
			n.Failing = append(n.Failing, r.Control)
		}
	}
	return out
}

// Failing returns the results of control that fail or are in error.
func (v View) Failing(control string) []*herdv1.AuditResult {
	var out []*herdv1.AuditResult
	for _, r := range v.Resp.Results {
		if r.Control == control && (r.State == "fail" || r.State == "error") {
			out = append(out, r)
		}
	}
	return out
}

// When is the time the results are of, for a reader.
func (v View) When() string {
	if v.At.IsZero() {
		return "now (" + v.Now.UTC().Format(time.RFC3339) + ")"
	}
	return v.At.UTC().Format(time.RFC3339)
}

// EvidenceLine is one violation as one line: the resource first when the
// message does not name it.
func EvidenceLine(e *herdv1.AuditEvidence) string {
	if e.Resource == "" || strings.Contains(e.Message, e.Resource) {
		return e.Message
	}
	return e.Resource + ": " + e.Message
}

// Percent is a control's percent compliant for a reader, "-" when it
// judged no node.
func Percent(c *herdv1.AuditControl) string {
	if c.Pass+c.Fail+c.Error == 0 {
		return "-"
	}
	return strconv.FormatFloat(c.PercentCompliant, 'f', 1, 64) + "%"
}

// auditHTML is the audit report an auditor keeps: one file, its CSS
// inline, no script and nothing fetched, so that it opens offline and
// the same years later. html/template escapes everything a node or the
// site wrote; a Content-Security-Policy forbids scripts and loads too,
// in case some escaping were ever missed.
var auditHTML = template.Must(template.New("audit").Funcs(template.FuncMap{
	"percent":  Percent,
	"evidence": EvidenceLine,
	"stamp":    func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) },
	"short":    shortVersion,
	"lines":    func(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") },
	"sevclass": func(s string) string {
		return "sev-" + map[string]string{"low": "low", "medium": "medium", "high": "high", "critical": "critical"}[s]
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Herd compliance report: {{.When}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e4e4e4;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#176f2c}.fail,.error{color:#b3261e;font-weight:600}.no-data{color:#777}
.sev-critical,.sev-high{color:#b3261e}.sev-medium{color:#9a6700}.sev-low{color:#555}
code,pre{font:12px/1.4 ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
.bar{background:#eee;height:.6em;width:8em;display:inline-block;vertical-align:middle}
.bar span{background:#2e7d32;height:100%;display:block}
.warn{background:#fff4e5;border:1px solid #f0c36d;padding:.5em 1em}
footer{margin-top:3em;color:#777;font-size:.9em}
</style>
</head>
<body>
<h1>Compliance report</h1>
<p>Site version <code>{{short .Version}}</code>, compliance at {{.When}}.
{{- with .Nodes}} {{len .}} nodes{{end}}, {{len .Controls}} controls.</p>
{{- if .AuditError}}
<div class="warn"><p>The site's audit controls do not compile: the results below are the last judged.</p>
<pre>{{.AuditError}}</pre></div>
{{- end}}
<h2>Controls</h2>
{{- if not .Controls}}
<p>No audit controls.</p>
{{- else}}
<table>
<thead><tr><th>Control</th><th>Severity</th><th>Compliant</th><th>Pass</th><th>Fail</th><th>No data</th><th>Error</th><th>Title</th><th>Reference</th></tr></thead>
<tbody>
{{- range .Controls}}
<tr><td><a href="#control-{{.Id}}"><code>{{.Id}}</code></a></td><td class="{{sevclass .Severity}}">{{.Severity}}</td>
<td>{{percent .}} <span class="bar"><span style="width:{{printf "%.0f" .PercentCompliant}}%"></span></span></td>
<td class="n">{{.Pass}}</td><td class="n">{{.Fail}}</td><td class="n">{{.NoData}}</td><td class="n">{{.Error}}</td><td>{{.Title}}</td><td>{{.Reference}}</td></tr>
{{- end}}
</tbody>
</table>
{{- end}}
{{- range .Details}}
<h2 id="control-{{.Control.Id}}"><code>{{.Control.Id}}</code>: {{.Control.Title}}</h2>
{{- with .Control.Description}}<p>{{.}}</p>{{end}}
<p>Severity <span class="{{sevclass .Control.Severity}}">{{.Control.Severity}}</span>
{{- with .Control.Reference}}; reference: {{.}}{{end}}
{{- with .Control.Location}}; defined at <code>{{.}}</code>{{end}}.</p>
{{- with .Control.Remediation}}<p>Remediation: {{.}}</p>{{end}}
{{- if .Failing}}
<table>
<thead><tr><th>Node</th><th>State</th><th>Since</th><th>Evidence</th></tr></thead>
<tbody>
{{- range .Failing}}
<tr><td><a href="#node-{{.Node}}">{{.Node}}</a></td><td class="{{.State}}">{{.State}}</td><td>{{stamp .SinceUnixMs}}</td><td>
{{- if .Error}}<pre>{{.Error}}</pre>{{end}}
{{- range .Evidence}}<div><code>{{evidence .}}</code></div>{{end}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p class="pass">No node fails it.</p>
{{- end}}
{{- end}}
<h2>Nodes</h2>
<table>
<thead><tr><th>Node</th><th>Pass</th><th>Fail</th><th>No data</th><th>Error</th><th>Failing controls</th></tr></thead>
<tbody>
{{- range .Nodes}}
<tr id="node-{{.Node}}"><td>{{.Node}}</td><td class="n">{{.Pass}}</td><td class="n">{{.Fail}}</td><td class="n">{{.NoData}}</td><td class="n">{{.Errors}}</td><td>
{{- range $i, $c := .Failing}}{{if $i}}, {{end}}<a href="#control-{{$c}}"><code>{{$c}}</code></a>{{end}}</td></tr>
{{- end}}
</tbody>
</table>
<footer>Made by herd audit at {{.Made}}.</footer>
</body>
</html>
`))

// auditDetail is one control's section of the HTML report.
type auditDetail struct {
	Control *herdv1.AuditControl
	Failing []*herdv1.AuditResult
}

// WriteHTML writes v as one self-contained HTML file.
func WriteHTML(w io.Writer, v View) error {
	v.Resp = visibleResponse(v.Resp)
	var details []auditDetail
	for _, c := range v.Resp.Controls {
		details = append(details, auditDetail{Control: c, Failing: v.Failing(c.Id)})
	}
	data := struct {
		Version, AuditError, When, Made string
		Controls                        []*herdv1.AuditControl
		Details                         []auditDetail
		Nodes                           []NodeTally
	}{
		Version: v.Resp.Version, AuditError: v.Resp.AuditError, When: v.When(), Made: v.Now.UTC().Format(time.RFC3339),
		Controls: v.Resp.Controls, Details: details, Nodes: v.Nodes(),
	}
	if err := auditHTML.Execute(w, data); err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	return nil
}

// visibleResponse is a copy of r whose strings show their control
// characters as escapes (\x1b) instead of holding them: html/template
// escapes markup, not a terminal escape or a NUL, which have no place in
// a report either.
func visibleResponse(r *herdv1.AuditResponse) *herdv1.AuditResponse {
	r = proto.Clone(r).(*herdv1.AuditResponse)
	r.Version, r.AuditError = visible(r.Version), visible(r.AuditError)
	for _, c := range r.Controls {
		for _, s := range []*string{&c.Id, &c.Title, &c.Severity, &c.Reference, &c.Remediation, &c.Description, &c.Location} {
			*s = visible(*s)
		}
	}
	for _, res := range r.Results {
		for _, s := range []*string{&res.Node, &res.Control, &res.State, &res.Error, &res.Version} {
			*s = visible(*s)
		}
		for _, e := range res.Evidence {
			e.Message, e.Resource = visible(e.Message), visible(e.Resource)
		}
	}
	return r
}

// visible shows s's control characters (but newline) and invalid
// bytes as Go escapes.
func visible(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\n' || unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
		}
	}
	return b.String()
}

// shortVersion is a site version cut for a reader, as herd prints them:
// a content digest to its first 12 hex digits.
func shortVersion(v string) string {
	if strings.HasPrefix(v, "sha256:") && len(v) > 19 {
		return v[:19]
	}
	return v
}
