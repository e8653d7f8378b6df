package resources

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/herdcm/herd/catalogs"
)

// Line keeps one line present in, or absent from, a text file (the `line`
// resource type, like Puppet's file_line), leaving every other byte of the
// file as it was.
//
// With ensure = present the resource is in sync when the line is in the
// file. Otherwise the first line match finds (every one with replace_all)
// is replaced by it, or, when nothing matches, it is appended. With
// replace_all the resource is in sync only when no matching line differs
// from it. With ensure = absent every line equal to it (every line match
// finds, when match is given) is removed.
//
// A missing file is created (mode 0644) when the line is wanted; an
// existing one keeps its owner and mode. A symbolic link at the path is
// refused, not followed. Several line and ini resources may edit one file:
// each Apply re-reads the file under a lock and edits what is there then.
//
// The zero Line is ready to use.
type Line struct{}

var _ Type = (*Line)(nil)

// lineSpec is a line resource, checked.
type lineSpec struct {
	path   string
	line   string
	absent bool
	match  *regexp.Regexp
	all    bool
}

// lineState is what Check learned and Apply needs.
type lineState struct {
	spec lineSpec
}

// parseLine checks a line resource as the agent receives it: a catalog is
// input like any other, so the compiler's checks are made again.
func parseLine(r *catalogs.Resource) (lineSpec, error) {
	s := lineSpec{path: r.String("path"), line: r.String("line"), all: r.Bool("replace_all")}
	if err := cleanAbs("path", s.path); err != nil {
		return s, err
	}
	switch e := r.String("ensure"); e {
	case "", "present":
	case "absent":
		s.absent = true
	default:
		return s, fmt.Errorf("ensure %q: want present or absent", e)
	}
	if strings.ContainsAny(s.line, "\n\r") {
		return s, fmt.Errorf("line %q: must be one line (no newline)", s.line)
	}
	if m := r.String("match"); m != "" {
		re, err := regexp.Compile(m)
		if err != nil {
			return s, fmt.Errorf("match %q: %w", m, err)
		}
		s.match = re
	}
	if !r.Has("line") && (!s.absent || s.match == nil) {
		return s, fmt.Errorf("line: required (only ensure = absent with match can do without)")
	}
	if s.all && s.match == nil {
		return s, fmt.Errorf("replace_all: needs match")
	}
	return s, nil
}

// edit returns the file's content after the edit, and the change that
// describes it (nil when the content is already right).
func (s *lineSpec) edit(old []byte) ([]byte, *Change) {
	ls := splitText(old)
	want := []byte(s.line)
	var touched []string
	if s.absent {
		kept := ls[:0:0]
		for _, l := range ls {
			if s.match != nil && s.match.Match(l.text) || s.match == nil && bytes.Equal(l.text, want) {
				touched = append(touched, string(l.text))
				continue
			}
			kept = append(kept, l)
		}
		if len(touched) == 0 {
			return old, nil
		}
		return joinText(kept), &Change{Attr: "line", Action: Delete, From: strings.Join(touched, "\n")}
	}
	present := false
	var matched []int
	for i, l := range ls {
		if bytes.Equal(l.text, want) {
			present = true
		}
		if s.match != nil && s.match.Match(l.text) {
			matched = append(matched, i)
		}
	}
	if !s.all && present {
		return old, nil
	}
	if !s.all && len(matched) > 1 {
		matched = matched[:1]
	}
	for _, i := range matched {
		if !bytes.Equal(ls[i].text, want) {
			touched = append(touched, string(ls[i].text))
			// A line Herd writes ends with a newline, even in place of
			// an unterminated last line (which, were it made empty,
			// would otherwise vanish).
			ls[i].text, ls[i].nl = want, true
		}
	}
	switch {
	case len(touched) > 0:
		return joinText(ls), &Change{Attr: "line", Action: Update, From: strings.Join(touched, "\n"), To: s.line}
	case present:
		return old, nil
	}
	return joinText(appendLine(ls, s.line)), &Change{Attr: "line", Action: Create, To: s.line}
}

// Check reads the file and plans the edit.
func (l *Line) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	s, err := parseLine(want)
	if err != nil {
		return nil, err
	}
	tf, err := readText(h.Root, s.path)
	if err != nil {
		return nil, err
	}
	if err := tf.refuseLink("line"); err != nil {
		return nil, err
	}
	p := &Plan{Resource: want, State: &lineState{spec: s}}
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

// Apply edits the file as it is now (another resource may have edited it
// since Check), under the file's edit lock.
func (l *Line) Apply(ctx context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*lineState)
	if !ok {
		return fmt.Errorf("applying line: plan has no line state (%T)", p.State)
	}
	return editText(ctx, h, st.spec.path, "line", func(old []byte) ([]byte, bool) {
		next, c := st.spec.edit(old)
		return next, c != nil
	}, !st.spec.absent)
}

// editText re-reads the file at p under its edit lock, applies edit and
// writes the result when it changed. create says a missing file is to be
// made (from empty content); otherwise a missing file is left missing.
func editText(ctx context.Context, h *Host, p, typ string, edit func(old []byte) ([]byte, bool), create bool) error {
	unlock := lockFile(h.Root, p)
	defer unlock()
	tf, err := readText(h.Root, p)
	if err != nil {
		return err
	}
	if err := tf.refuseLink(typ); err != nil {
		return err
	}
	if !tf.exists && !create {
		return nil
	}
	next, changed := edit(tf.content)
	if !changed {
		return nil
	}
	return writeText(ctx, h, tf, next, textWrite{mode: fileDefaultMode, uid: -1, gid: -1})
}
