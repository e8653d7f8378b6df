package catalogs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// condition is a compiled `when` expression. Conditions are written in
// expr-lang (https://expr-lang.org): facts.os.family == 'debian',
// node startsWith 'web-', params.workers > 2 && 'ssd' in facts.disks.
type condition struct {
	src  string
	pos  Pos
	prog *vm.Program
}

// conditionEnv declares the names a condition may use, so that a typo such
// as fact.os is an error when the site loads, not a silent false per node.
var conditionEnv = map[string]any{
	"node":        "",
	"environment": "",
	"facts":       map[string]any{},
	"params":      map[string]any{},
}

// compileCondition compiles src. The expression must yield a boolean.
// Builtins that read the clock are disabled: compile stays a pure function
// of site, node and facts.
func compileCondition(src string, pos Pos) (*condition, error) {
	return compileConditionIn(src, pos, false)
}

// compileConditionIn compiles src; withEach lets it read each, the
// element of its declaration's for_each.
func compileConditionIn(src string, pos Pos, withEach bool) (*condition, error) {
	env := conditionEnv
	if withEach {
		env = conditionEnvEach
	}
	prog, err := expr.Compile(src,
		expr.Env(env),
		expr.AsBool(),
		expr.DisableBuiltin("now"),
		expr.MaxNodes(2000),
	)
	if err != nil {
		return nil, Diagnostic{Pos: pos, Msg: "condition " + quoteShort(src) + ": " + exprMessage(err)}
	}
	return &condition{src: src, pos: pos, prog: prog}, nil
}

// eval runs the condition over env (the compile context).
func (c *condition) eval(env map[string]any) (bool, error) {
	out, err := expr.Run(c.prog, env)
	if err != nil {
		return false, Diagnostic{Pos: c.pos, Msg: "condition " + quoteShort(c.src) + ": " + exprMessage(err)}
	}
	b, ok := out.(bool)
	if !ok {
		return false, Diagnostic{Pos: c.pos, Msg: fmt.Sprintf("condition %s: gave %T, want true or false", quoteShort(c.src), out)}
	}
	return b, nil
}

// exprMessage keeps expr's message and column but drops its multi-line
// snippet, which does not fit a one-line diagnostic.
func exprMessage(err error) string {
	msg := err.Error()
	var fe *file.Error
	if errors.As(err, &fe) {
		msg = fe.Message
		if fe.Column > 0 {
			msg = fmt.Sprintf("%s (at column %d of the condition)", fe.Message, fe.Column+1)
		}
	}
	if strings.Contains(msg, "from <nil>") {
		msg += "; a fact or param on that path is missing for this node (write a?.b to read a missing value as nil)"
	}
	return msg
}

func quoteShort(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}
