package main

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
	"github.com/herdcm/herd/cmd/nodecmd"
)

// auditHTML is the audit report an auditor keeps: one file, its CSS
// inline, no script and nothing fetched, so that it opens offline and
// the same years later. html/template escapes everything a node or the
// site wrote; a Content-Security-Policy forbids scripts and loads too,
// in case some escaping were ever missed.
var auditHTML = template.Must(template.New("audit").Funcs(template.FuncMap{
	"percent":  percent,
	"evidence": evidenceLine,
	"stamp":    func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) },
	"short":    nodecmd.ShortVersion,
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

// printAuditHTML writes v as one self-contained HTML file.
func printAuditHTML(w io.Writer, v auditView) error {
	v.resp = visibleResponse(v.resp)
	var details []auditDetail
	for _, c := range v.resp.Controls {
		details = append(details, auditDetail{Control: c, Failing: v.failing(c.Id)})
	}
	data := struct {
		Version, AuditError, When, Made string
		Controls                        []*herdv1.AuditControl
		Details                         []auditDetail
		Nodes                           []nodeTally
	}{
		Version: v.resp.Version, AuditError: v.resp.AuditError, When: v.when(), Made: v.now.UTC().Format(time.RFC3339),
		Controls: v.resp.Controls, Details: details, Nodes: v.nodes(),
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
