package resources

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/herdcm/herd/catalogs"
)

// INI keeps one setting of one section of an INI-style file (the `ini`
// resource type), leaving every other byte of the file, comments and
// blank lines included, as it was.
//
// The file is read as lines: "[name]" starts a section (the lines before
// the first one are the top of the file, section ""), a line whose first
// non-blank character is ; or # is a comment, and "key = value" (spaces
// around = optional) is a setting. A setting found with another value has
// only its value replaced (the key and its spacing stay as written); every
// occurrence of it in sections of that name is set, since readers differ
// on which one wins. A missing setting is added after the last setting of
// its section (or its header); a missing section is appended to the file. With
// ensure = absent every occurrence is removed; the section stays.
//
// A missing file is created (mode 0644) when the setting is wanted; an
// existing one keeps its owner and mode. A symbolic link at the path is
// refused, not followed. Several ini and line resources may edit one file:
// each Apply re-reads the file under a lock and edits what is there then.
//
// The zero INI is ready to use.
type INI struct{}

var _ Type = (*INI)(nil)

// iniSpec is an ini resource, checked.
type iniSpec struct {
	path, section, setting, value string
	absent                        bool
}

// parseINISpec checks an ini resource as the agent receives it.
func parseINISpec(r *catalogs.Resource) (iniSpec, error) {
	s := iniSpec{path: r.String("path"), section: r.String("section"), setting: r.String("setting"), value: r.String("value")}
	if err := cleanAbs("path", s.path); err != nil {
		return s, err
	}
	switch e := r.String("ensure"); e {
	case "", "present":
		if !r.Has("value") {
			return s, fmt.Errorf("value: required with ensure = present")
		}
	case "absent":
		s.absent = true
	default:
		return s, fmt.Errorf("ensure %q: want present or absent", e)
	}
	switch {
	case strings.TrimSpace(s.setting) == "" || strings.ContainsAny(s.setting, "=[\n\r") || strings.ContainsAny(strings.TrimSpace(s.setting)[:1], "#;"):
		return s, fmt.Errorf("setting %q: want a name without =, [ or a newline, not starting with # or ;", s.setting)
	case strings.ContainsAny(s.section, "]\n\r"):
		return s, fmt.Errorf("section %q: want a name without ] or a newline", s.section)
	case strings.ContainsAny(s.value, "\n\r"):
		return s, fmt.Errorf("value %q: must be one line (no newline)", s.value)
	}
	s.setting, s.section = strings.TrimSpace(s.setting), strings.TrimSpace(s.section)
	return s, nil
}

// iniKind is what a line of an INI file is.
type iniKind uint8

const (
	iniOther iniKind = iota // blank, comment, or anything else kept as it is
	iniSection
	iniSetting
)

// iniLine is one parsed line of an INI file.
type iniLine struct {
	kind    iniKind
	blank   bool // nothing but white space
	comment bool
	name    string // the section's name, or the setting's key
	section string // the section the line is in ("" at the top)
	// valueAt is where a setting's value starts in the line's text: after
	// the =, past the blanks that follow it.
	valueAt int
}

// parseINI classifies the lines of an INI file. It never fails: a line it
// cannot read is kept as it is.
func parseINI(ls []lineSpan) []iniLine {
	out := make([]iniLine, len(ls))
	section := ""
	for i, l := range ls {
		t := bytes.TrimSpace(l.text)
		il := iniLine{section: section, blank: len(t) == 0}
		switch {
		case len(t) == 0:
		case t[0] == ';' || t[0] == '#':
			il.comment = true
		case t[0] == '[':
			if end := bytes.IndexByte(t, ']'); end > 0 {
				section = string(bytes.TrimSpace(t[1:end]))
				il.kind, il.name, il.section = iniSection, section, section
			}
		default:
			if eq := bytes.IndexByte(l.text, '='); eq > 0 {
				if key := bytes.TrimSpace(l.text[:eq]); len(key) > 0 {
					at := eq + 1
					for at < len(l.text) && (l.text[at] == ' ' || l.text[at] == '\t') {
						at++
					}
					il.kind, il.name, il.valueAt = iniSetting, string(key), at
				}
			}
		}
		out[i] = il
	}
	return out
}

// iniValue is a setting line's value, its trailing blanks (and a CR of a
// CRLF file) left out.
func iniValue(l lineSpan, il iniLine) string {
	return string(bytes.TrimRight(l.text[il.valueAt:], " \t\r"))
}

// edit returns the file's content after the edit and the change that
// describes it (nil when the content is already right).
func (s *iniSpec) edit(old []byte) ([]byte, *Change) {
	ls := splitText(old)
	parsed := parseINI(ls)
	want := strings.TrimSpace(s.value)
	attr := "setting"
	var from []string
	if s.absent {
		kept := ls[:0:0]
		for i, l := range ls {
			if il := parsed[i]; il.kind == iniSetting && il.section == s.section && il.name == s.setting {
				from = append(from, iniValue(l, il))
				continue
			}
			kept = append(kept, l)
		}
		if len(from) == 0 {
			return old, nil
		}
		return joinText(kept), &Change{Attr: attr, Action: Delete, From: s.describe(from)}
	}
	found, hasSection := false, s.section == ""
	// A new setting goes after the section's last setting (or its
	// header): comments after that often introduce the next section.
	insertAt := -1
	if s.section == "" {
		insertAt = 0
	}
	for i, l := range ls {
		il := parsed[i]
		if il.section != s.section {
			continue
		}
		if il.kind == iniSection {
			hasSection, insertAt = true, i+1
			continue
		}
		if !il.blank && !il.comment {
			insertAt = i + 1
		}
		if il.kind != iniSetting || il.name != s.setting {
			continue
		}
		found = true
		if have := iniValue(l, il); strings.TrimSpace(have) != want {
			from = append(from, have)
			text := make([]byte, 0, il.valueAt+len(s.value)+1)
			text = append(append(text, l.text[:il.valueAt]...), s.value...)
			if bytes.HasSuffix(l.text, []byte("\r")) {
				text = append(text, '\r')
			}
			ls[i].text = text
		}
	}
	newLine := s.setting + " = " + s.value
	switch {
	case len(from) > 0:
		return joinText(ls), &Change{Attr: attr, Action: Update, From: s.describe(from), To: s.describe([]string{s.value})}
	case found:
		return old, nil
	case hasSection:
		return joinText(insertLine(ls, insertAt, newLine)), &Change{Attr: attr, Action: Create, To: s.describe([]string{s.value})}
	}
	if len(ls) > 0 {
		ls = appendLine(ls, "")
	}
	ls = appendLine(ls, "["+s.section+"]")
	ls = appendLine(ls, newLine)
	return joinText(ls), &Change{Attr: attr, Action: Create, To: s.describe([]string{s.value})}
}

// describe names the setting with its values, for a change: "[main] port = 80".
func (s *iniSpec) describe(values []string) string {
	prefix := s.setting
	if s.section != "" {
		prefix = "[" + s.section + "] " + s.setting
	}
	for i, v := range values {
		values[i] = prefix + " = " + v
	}
	return strings.Join(values, "\n")
}

// Check reads the file and plans the edit.
func (n *INI) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	s, err := parseINISpec(want)
	if err != nil {
		return nil, err
	}
	tf, err := readText(h.Root, s.path)
	if err != nil {
		return nil, err
	}
	if err := tf.refuseLink("ini"); err != nil {
		return nil, err
	}
	p := &Plan{Resource: want, State: &s}
	if !tf.exists && s.absent {
		return p, nil
	}
	next, c := s.edit(tf.content)
	if c == nil {
		return p, nil
	}
	c.Diff = textDiff(s.path, tf.exists, tf.content, next)
	p.Changes = append(p.Changes, *c)
	return p, nil
}

// Apply edits the file as it is now, under the file's edit lock.
func (n *INI) Apply(ctx context.Context, h *Host, p *Plan) error {
	s, ok := p.State.(*iniSpec)
	if !ok {
		return fmt.Errorf("applying ini: plan has no ini state (%T)", p.State)
	}
	return editText(ctx, h, s.path, "ini", func(old []byte) ([]byte, bool) {
		next, c := s.edit(old)
		return next, c != nil
	}, !s.absent)
}
