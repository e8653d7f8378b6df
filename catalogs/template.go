package catalogs

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// templateFuncs are the functions templates may call beyond text/template's
// builtins. Each is pure: a template's output depends only on its context.
var templateFuncs = template.FuncMap{
	"join":      func(sep string, v any) (string, error) { return joinAny(sep, v) },
	"upper":     strings.ToUpper,
	"lower":     strings.ToLower,
	"trim":      strings.TrimSpace,
	"replace":   func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
	"split":     func(sep, s string) []string { return strings.Split(s, sep) },
	"contains":  func(sub, s string) bool { return strings.Contains(s, sub) },
	"hasPrefix": func(p, s string) bool { return strings.HasPrefix(s, p) },
	"hasSuffix": func(p, s string) bool { return strings.HasSuffix(s, p) },
	"quote":     strconv.Quote,
	"indent": func(n int, s string) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
	},
	"toJSON": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	// default returns def when v is missing or empty: {{ default 80 .params.port }}
	// needs .params.port to exist; use {{ default 80 (index .params "port") }}
	// for an optional key.
	"default": func(def, v any) any {
		switch x := v.(type) {
		case nil:
			return def
		case string:
			if x == "" {
				return def
			}
		}
		return v
	},
}

func joinAny(sep string, v any) (string, error) {
	switch l := v.(type) {
	case []string:
		return strings.Join(l, sep), nil
	case []any:
		parts := make([]string, len(l))
		for i, e := range l {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, sep), nil
	}
	return "", fmt.Errorf("join: want a list, got %T", v)
}

// tstring is a string attribute value that may be a template. t is nil for
// a literal, which then costs nothing per node.
type tstring struct {
	s string
	t *template.Template
}

// newTString parses s as a template when it contains "{{".
func newTString(s string, pos Pos) (tstring, error) {
	if !strings.Contains(s, "{{") {
		return tstring{s: s}, nil
	}
	t, err := template.New(pos.String()).Funcs(templateFuncs).Option("missingkey=error").Parse(s)
	if err != nil {
		return tstring{}, Diagnostic{Pos: pos, Msg: "template: " + templateMessage(err)}
	}
	return tstring{s: s, t: t}, nil
}

func (ts tstring) render(ctx map[string]any, pos Pos, buf *strings.Builder) (string, error) {
	if ts.t == nil {
		return ts.s, nil
	}
	buf.Reset()
	if err := ts.t.Execute(buf, ctx); err != nil {
		return "", Diagnostic{Pos: pos, Msg: "template: " + templateMessage(err)}
	}
	return buf.String(), nil
}

// templateErrRE matches text/template's "template: NAME:LINE:COL: " prefix
// (or "template: NAME:LINE: ") so that the diagnostic can carry its own
// position instead.
var templateErrRE = regexp.MustCompile(`^template: (.*?):(\d+)(?::(\d+))?: `)

// templateMessage strips text/template's name prefix, which repeats the
// position the diagnostic already gives.
func templateMessage(err error) string {
	msg := err.Error()
	if m := templateErrRE.FindStringSubmatchIndex(msg); m != nil {
		msg = msg[m[1]:]
	}
	if rest, ok := strings.CutPrefix(msg, "executing \""); ok {
		// executing "NAME" at <.x>: … — the name is the position again.
		if i := strings.Index(rest, "\" "); i >= 0 {
			msg = rest[i+2:]
		}
	}
	return msg
}

// templateFilePos turns a text/template error from a template file into a
// Diagnostic at the line (and column) it names inside that file.
func templateFilePos(file string, err error) Diagnostic {
	msg := err.Error()
	pos := Pos{File: file}
	if m := templateErrRE.FindStringSubmatch(msg); m != nil {
		pos.Line, _ = strconv.Atoi(m[2])
		if m[3] != "" {
			pos.Col, _ = strconv.Atoi(m[3])
		}
	}
	return Diagnostic{Pos: pos, Msg: "template: " + templateMessage(err)}
}

func (l *loader) loadTemplates() {
	root := template.New("").Funcs(templateFuncs).Option("missingkey=error")
	for _, rel := range l.filesUnder("templates", "") {
		name := strings.TrimPrefix(rel, "templates/")
		if _, err := root.New(name).Parse(string(l.contents[rel])); err != nil {
			l.diags = append(l.diags, templateFilePos(rel, err))
		}
	}
	l.site.templates = root
	// Templates named by file resources must exist; checked here once
	// rather than per node.
	for _, ro := range l.site.roles {
		for _, d := range ro.decls {
			for _, a := range d.attrs {
				if a.name != "template" || a.value.t != nil {
					continue
				}
				if root.Lookup(a.value.s) == nil {
					l.diags.add(a.pos, "template %q: no such file under templates/", a.value.s)
				}
			}
		}
	}
}
