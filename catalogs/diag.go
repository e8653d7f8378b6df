package catalogs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a place in a site file. Line and Col start at 1; zero means unknown.
type Pos struct {
	File string // relative to the site root, slash-separated
	Line int
	Col  int
}

func (p Pos) String() string {
	switch {
	case p.File == "":
		return ""
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Diagnostic is one mistake in a site, with the place it was made.
type Diagnostic struct {
	Pos
	Msg string
}

func (d Diagnostic) Error() string {
	if s := d.Pos.String(); s != "" {
		return s + ": " + d.Msg
	}
	return d.Msg
}

// MaxDiagnostics caps how many diagnostics an error message lists; the rest
// are summarised as "and N more" so that one systematic mistake does not bury
// the others.
const MaxDiagnostics = 25

// Diagnostics is every mistake found in a site, reported at once. It is the
// error type returned by Load and Compile; use errors.As to reach the list.
type Diagnostics []Diagnostic

func (ds Diagnostics) Error() string {
	sorted := ds.Sorted()
	var b strings.Builder
	for i, d := range sorted {
		if i == MaxDiagnostics {
			fmt.Fprintf(&b, "and %d more", len(sorted)-i)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.Error())
		if i == MaxDiagnostics-1 && len(sorted) > MaxDiagnostics {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Sorted returns the diagnostics ordered by file, line, column and message,
// without duplicates.
func (ds Diagnostics) Sorted() Diagnostics {
	out := slices.Clone(ds)
	slices.SortFunc(out, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
			cmp.Compare(a.Msg, b.Msg),
		)
	})
	return slices.Compact(out)
}

// err returns ds as an error, or nil when it is empty.
func (ds Diagnostics) err() error {
	if len(ds) == 0 {
		return nil
	}
	return ds.Sorted()
}

// add appends a diagnostic at pos.
func (ds *Diagnostics) add(pos Pos, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}
