package catalogs

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// templateFuncs are the functions templates may call beyond text/template's
// builtins, bound to the budget b of one compile. Each is pure: a
// template's output depends only on its context. Each charges b for its
// work and refuses a result over MaxRenderBytes before building it; the
// builtins that can build large results (print, printf, println, html, js,
// urlquery) and the comparisons are replaced by charged equivalents.
func templateFuncs(b *budget) template.FuncMap {
	str := func(f func(string) string, grow int) func(string) (string, error) {
		return func(s string) (string, error) {
			if err := b.fits(len(s) * grow); err != nil {
				return "", err
			}
			return f(s), nil
		}
	}
	m := template.FuncMap{
		// secret "NAME" is the value of secrets/NAME.age: whatever
		// renders from it is sealed to the node (secrets.go).
		"secret": func(name string) (string, error) {
			if b.secret == nil {
				return "", fmt.Errorf("secret %q: secrets are not available here", name)
			}
			return b.secret(name)
		},
		"herdStep": func(id int) (string, error) {
			b.last = id
			return "", b.charge(b.costs[id])
		},
		"join": func(sep string, v any) (string, error) { return joinAny(b, sep, v) },
		// A rune's upper or lower case takes at most 3 bytes more.
		"upper": str(strings.ToUpper, 4),
		"lower": str(strings.ToLower, 4),
		"trim":  str(strings.TrimSpace, 1),
		"replace": func(old, new, s string) (string, error) {
			n := strings.Count(s, old)
			if err := b.fits(len(s) + n*(len(new)-len(old))); err != nil {
				return "", err
			}
			return strings.ReplaceAll(s, old, new), nil
		},
		"split": func(sep, s string) ([]string, error) {
			// A piece costs a string header beside its bytes.
			if err := b.fits(len(s) + 16*strings.Count(s, sep)); err != nil {
				return nil, err
			}
			return strings.Split(s, sep), nil
		},
		"contains": func(sub, s string) (bool, error) {
			return strings.Contains(s, sub), b.charge(1 + int64(len(s)+len(sub))/bytesPerStep)
		},
		"hasPrefix": func(p, s string) (bool, error) {
			return strings.HasPrefix(s, p), b.charge(1 + int64(len(p))/bytesPerStep)
		},
		"hasSuffix": func(p, s string) (bool, error) {
			return strings.HasSuffix(s, p), b.charge(1 + int64(len(p))/bytesPerStep)
		},
		// A byte quotes to at most \x00, 4 bytes; a rune to \U0010ffff, 10
		// bytes for 4.
		"quote": str(strconv.Quote, 4),
		"indent": func(n int, s string) (string, error) {
			if n < 0 || n > maxIndent {
				return "", fmt.Errorf("indent %d: want 0 to %d spaces", n, maxIndent)
			}
			if err := b.fits(len(s) + n*(strings.Count(s, "\n")+1)); err != nil {
				return "", err
			}
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad), nil
		},
		"toJSON": func(v any) (string, error) {
			// JSON escapes a byte to at most \u00XX, 6 bytes.
			if err := b.fits(6 * printSize(v)); err != nil {
				return "", err
			}
			out, err := json.Marshal(v)
			return string(out), err
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
		"print": func(args ...any) (string, error) {
			if err := b.fits(printArgsSize(args) + len(args)); err != nil {
				return "", err
			}
			return fmt.Sprint(args...), nil
		},
		"println": func(args ...any) (string, error) {
			if err := b.fits(printArgsSize(args) + len(args) + 1); err != nil {
				return "", err
			}
			return fmt.Sprintln(args...), nil
		},
		"printf": func(format string, args ...any) (string, error) {
			if err := b.fits(printfSize(format, args)); err != nil {
				return "", err
			}
			return fmt.Sprintf(format, args...), nil
		},
		// The escapers grow a byte to at most 6 (html's &#34;, js's
		// \u003C, urlquery's %XX).
		"html": func(args ...any) (string, error) {
			if err := b.fits(6 * (printArgsSize(args) + len(args))); err != nil {
				return "", err
			}
			return template.HTMLEscaper(args...), nil
		},
		"js": func(args ...any) (string, error) {
			if err := b.fits(6 * (printArgsSize(args) + len(args))); err != nil {
				return "", err
			}
			return template.JSEscaper(args...), nil
		},
		"urlquery": func(args ...any) (string, error) {
			if err := b.fits(6 * (printArgsSize(args) + len(args))); err != nil {
				return "", err
			}
			return template.URLQueryEscaper(args...), nil
		},
	}
	for k, f := range b.comparisons() {
		m[k] = f
	}
	return m
}

func joinAny(b *budget, sep string, v any) (string, error) {
	var parts []string
	switch l := v.(type) {
	case []string:
		parts = l
	case []any:
		if err := b.fits(printSize(l)); err != nil {
			return "", err
		}
		parts = make([]string, len(l))
		for i, e := range l {
			parts[i] = fmt.Sprint(e)
		}
	default:
		return "", fmt.Errorf("join: want a list, got %T", v)
	}
	size := 0
	for _, p := range parts {
		size += len(p) + len(sep)
	}
	if err := b.fits(size); err != nil {
		return "", err
	}
	return strings.Join(parts, sep), nil
}

// printSize bounds how many bytes fmt prints for v with %v. Values in a
// template are what TOML, JSON facts and the functions above give.
func printSize(v any) int {
	const most = 1 << 40 // past any cap; keeps sums from overflowing
	switch x := v.(type) {
	case nil, bool:
		return 5
	case string:
		return len(x)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, uintptr:
		return 20
	case float32, float64:
		return 24
	case []string:
		n := 2
		for _, e := range x {
			n += len(e) + 1
		}
		return min(n, most)
	case []any:
		n := 2
		for _, e := range x {
			n += printSize(e) + 1
		}
		return min(n, most)
	case map[string]any:
		n := 5
		for k, e := range x {
			n += len(k) + printSize(e) + 2
		}
		return min(n, most)
	case map[string]string:
		n := 5
		for k, e := range x {
			n += len(k) + len(e) + 2
		}
		return min(n, most)
	}
	return len(fmt.Sprint(v))
}

func printArgsSize(args []any) int {
	n := 0
	for _, a := range args {
		n += printSize(a)
	}
	return n
}

// printfSize bounds how many bytes fmt.Sprintf(format, args...) prints:
// the format's text, each verb's width or precision (fmt takes either up
// to about 1e7), a number's widest form (a float's %f is some 330 bytes) and the
// arguments, each as many times as a verb may name it, and eight times
// over when a verb or flag escapes or spells out values (%q, %x, %X, %#v,
// %+q).
func printfSize(format string, args []any) int {
	const maxWidth = 1 << 24
	starWidth := 0
	largest := 0
	for _, a := range args {
		largest = max(largest, printSize(a))
		if n, ok := a.(int); ok {
			starWidth = max(starWidth, min(max(n, -n), maxWidth))
		}
		if n, ok := a.(int64); ok {
			starWidth = max(starWidth, int(min(max(n, -n), maxWidth)))
		}
	}
	if starWidth < 0 { // the most negative int stays negative
		starWidth = maxWidth
	}
	verbs, widths, factor := 0, 0, 1
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		verbs++
		num, widest := 0, 0
	spec:
		for i++; i < len(format); i++ {
			switch c := format[i]; {
			case c >= '0' && c <= '9':
				num = min(num*10+int(c-'0'), maxWidth)
				widest = max(widest, num)
			case c == '*':
				widest = max(widest, starWidth)
			case c == '#' || c == '+':
				factor = 8
				num = 0
			case strings.IndexByte("- .[]", c) >= 0:
				num = 0
			default:
				if c == 'q' || c == 'x' || c == 'X' {
					factor = 8
				}
				break spec
			}
		}
		widths += widest
	}
	n := printArgsSize(args)
	if strings.Contains(format, "[") {
		// Explicit argument indexes may print one argument many times.
		n = max(n, verbs*largest)
	}
	// A verb formats each value inside a list or a table with its
	// width: the widths count once per value of the largest argument.
	leaves := 1
	for _, a := range args {
		leaves = max(leaves, leafCount(a))
	}
	return len(format) + (widths+verbs*330)*leaves + factor*n + 64*(len(args)+1)
}

// leafCount counts the values a verb formats one by one inside v.
func leafCount(v any) int {
	switch x := v.(type) {
	case []any:
		n := 1
		for _, e := range x {
			n += leafCount(e)
		}
		return n
	case map[string]any:
		n := 1
		for _, e := range x {
			n += 1 + leafCount(e)
		}
		return n
	case []string:
		return 1 + len(x)
	case map[string]string:
		return 1 + 2*len(x)
	}
	return 1
}

// tstring is a string attribute value that may be a template. name is ""
// for a literal, which then costs nothing per node; otherwise it names
// the value's template in the site's inline set.
type tstring struct {
	s    string
	name string
	// secret is set for an "age:" value, which compile opens per node.
	secret *secretRef
}

// dynamic reports whether ts must be rendered per node.
func (ts tstring) dynamic() bool { return ts.name != "" || ts.secret != nil }

// newTString parses s as a template when it contains "{{".
func (l *loader) newTString(s string, pos Pos) (tstring, error) {
	if !strings.Contains(s, "{{") {
		return tstring{s: s}, nil
	}
	// The position names the template, so that text/template's errors
	// carry it; a suffix keeps two values at one position apart.
	name := pos.String()
	for i := 2; l.site.render.inline.Lookup(name) != nil; i++ {
		name = fmt.Sprintf("%s#%d", pos, i)
	}
	if _, err := l.site.render.inline.New(name).Parse(s); err != nil {
		return tstring{}, Diagnostic{Pos: pos, Msg: "template: " + templateMessage(err)}
	}
	l.inlinePos[name] = pos
	return tstring{s: s, name: name}, nil
}

// renderString renders ts for the compile's node.
func (c *compiler) renderString(ts tstring, pos Pos) (string, error) {
	if ts.secret != nil {
		return c.openSecret(ts.secret)
	}
	if ts.name == "" {
		return ts.s, nil
	}
	r, err := c.renderer()
	if err != nil {
		return "", Diagnostic{Pos: pos, Msg: "template: " + err.Error()}
	}
	at, err := c.site.render.execute(r, r.inline, c.site.render.inlineWeights[ts.name], ts.name, c.ctx, &c.buf)
	if err != nil {
		if at.File == "" {
			at = pos
		}
		if errors.Is(err, errBudget) {
			return "", Diagnostic{Pos: at, Msg: "template: " + err.Error()}
		}
		return "", Diagnostic{Pos: pos, Msg: "template: " + templateMessage(err)}
	}
	return c.buf.String(), nil
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
			// text/template counts columns from 0; a diagnostic from 1.
			pos.Col, _ = strconv.Atoi(m[3])
			pos.Col++
		}
	}
	return Diagnostic{Pos: pos, Msg: "template: " + templateMessage(err)}
}

func (l *loader) loadTemplates() {
	root := l.site.render.files
	for _, rel := range l.filesUnder("templates", "") {
		name := strings.TrimPrefix(rel, "templates/")
		if _, err := root.New(name).Parse(string(l.contents[rel])); err != nil {
			l.diags = append(l.diags, templateFilePos(rel, err))
		}
	}
	l.site.render.instrument(root, l.site.render.fileWeights, func(tr *parse.Tree, n parse.Node) Pos {
		loc, _ := tr.ErrorContext(n)
		return templateFilePos("templates/"+tr.ParseName, errors.New("template: "+loc+": ")).Pos
	})
	l.site.render.instrument(l.site.render.inline, l.site.render.inlineWeights, func(tr *parse.Tree, _ parse.Node) Pos {
		return l.inlinePos[tr.ParseName]
	})
	l.site.render.fileRefs, l.site.render.inlineRefs = map[string]tmplRefs{}, map[string]tmplRefs{}
	refsOf(root, l.site.render.fileRefs)
	refsOf(l.site.render.inline, l.site.render.inlineRefs)
	// Templates named by file resources must exist; checked here once
	// rather than per node.
	for _, ro := range l.site.roles {
		for _, d := range ro.decls {
			for _, a := range d.attrs {
				if a.name != "template" || a.value.name != "" {
					continue
				}
				if root.Lookup(a.value.s) == nil || a.value.s == "" {
					l.diags.add(a.pos, "template %q: no such file under templates/", a.value.s)
				}
			}
		}
	}
}
