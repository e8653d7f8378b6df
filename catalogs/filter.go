package catalogs

import (
	"errors"
	"fmt"
	"slices"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Filter is a compiled fleet query: a boolean expression in the language
// of `when` conditions (expr-lang), evaluated over a map the caller builds
// per item, such as a node's facts and status on the server. One Filter
// is compiled once and run over many items.
type Filter struct {
	src   string
	prog  *vm.Program
	names map[string]bool // the identifiers the expression reads
}

// FilterError is an expression that does not compile: Column (1-based,
// 0 when unknown) is where in the expression the error is.
type FilterError struct {
	Column int
	Msg    string
}

// Error says where the expression went wrong: "column 12: unexpected
// token EOF".
func (e *FilterError) Error() string {
	if e.Column > 0 {
		return fmt.Sprintf("column %d: %s", e.Column, e.Msg)
	}
	return e.Msg
}

// CompileFilter compiles src, which must yield a boolean. The names in
// env are declared with the types of their values, so that a comparison
// of a declared string with a number is an error now, not a silent false
// per item; any other name is allowed and is read from the map each run
// (nil when the map lacks it), since facts differ from node to node.
// Unlike a site's conditions, which stay a pure function of site and
// facts, a filter may read the clock (now()).
func CompileFilter(src string, env map[string]any) (*Filter, error) {
	prog, err := expr.Compile(src,
		expr.Env(env),
		expr.AllowUndefinedVariables(),
		expr.AsBool(),
		expr.MaxNodes(2000),
	)
	if err != nil {
		fe := &FilterError{Msg: err.Error()}
		var pe *file.Error
		if errors.As(err, &pe) {
			fe.Msg = pe.Message
			if pe.Column >= 0 && pe.Line > 0 {
				fe.Column = pe.Column + 1
			}
		}
		return nil, fe
	}
	f := &Filter{src: src, prog: prog, names: map[string]bool{}}
	ast.Find(prog.Node(), func(n ast.Node) bool {
		if id, ok := n.(*ast.IdentifierNode); ok {
			f.names[id.Value] = true
		}
		return false
	})
	return f, nil
}

// Names lists the top-level names the expression reads, so that a caller
// may build each item's env with only those; nil when it reads $env,
// which reaches any name by a string.
func (f *Filter) Names() []string {
	if f.names["$env"] {
		return nil
	}
	out := make([]string, 0, len(f.names))
	for n := range f.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Uses says whether the expression reads the top-level name, so that a
// caller computes a costly value only for the filters that ask for it.
// $env reaches every name by a string, so a filter that reads it uses
// them all.
func (f *Filter) Uses(name string) bool { return f.names[name] || f.names["$env"] }

// String is the expression's source.
func (f *Filter) String() string { return f.src }

// Matcher returns a function that runs f over one item's env. It reuses
// one virtual machine between calls, so it is for one goroutine at a
// time; each caller takes its own. An expression that fails on an item
// (a path through a missing fact, a fact of another type) is an error
// for that item, which callers usually count as no match.
func (f *Filter) Matcher() func(env map[string]any) (bool, error) {
	var m vm.VM
	return func(env map[string]any) (bool, error) {
		out, err := m.Run(f.prog, env)
		if err != nil {
			return false, errors.New(exprMessage(err))
		}
		b, ok := out.(bool)
		if !ok {
			return false, fmt.Errorf("gave %T, want true or false", out)
		}
		return b, nil
	}
}
