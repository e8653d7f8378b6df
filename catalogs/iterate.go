package catalogs

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// iteration is a declaration's for_each: an expression over the compile
// context (node, environment, facts, params) that yields a list or a map,
// or a TOML array or table written in place. The declaration is made once
// per element, with each.key (a list's index, a map's key) and each.value.
type iteration struct {
	src     string // the expression; "" for a literal
	pos     Pos
	prog    *vm.Program
	literal any // []any or map[string]any written in the site
}

// element is one value of a for_each, in the order it is declared.
type element struct {
	key   any // int for a list, string for a map
	value any
}

// label names an element in a diagnostic: `for_each element 2` or
// `for_each key "alice"`.
func (e element) label() string {
	if k, ok := e.key.(string); ok {
		return "for_each key " + strconv.Quote(k)
	}
	return fmt.Sprintf("for_each element %v", e.key)
}

// conditionEnvEach is conditionEnv with each, for the conditions and
// iterations of a declaration that carries for_each.
var conditionEnvEach = func() map[string]any {
	m := maps.Clone(conditionEnv)
	m["each"] = map[string]any{}
	return m
}()

// loadIteration checks the for_each value v written at kp.
func (l *loader) loadIteration(doc *tomlDoc, kp string, v any) *iteration {
	pos := doc.posOf(kp)
	switch x := v.(type) {
	case []any:
		// An "age:" value written in place is a secret, opened per node.
		for i, e := range x {
			ep := fmt.Sprintf("%s[%d]", kp, i)
			if r, ok := l.secretIn(doc, ep, fmt.Sprintf("for_each[%d]", i), e); ok {
				if r != nil {
					x[i] = r
				}
			} else if em, isMap := e.(map[string]any); isMap {
				l.findSecrets(doc, ep, fmt.Sprintf("for_each[%d]", i), em)
			}
		}
		return &iteration{pos: pos, literal: x}
	case map[string]any:
		l.findSecrets(doc, kp, "for_each", x)
		return &iteration{pos: pos, literal: x}
	case string:
		it, err := compileIteration(x, pos)
		if err != nil {
			l.diags = append(l.diags, err.(Diagnostic))
			return nil
		}
		return it
	}
	l.diags.add(pos, "for_each: want an expression such as \"params.admins\", a list or a table, got %s", typeName(v))
	return nil
}

// compileIteration compiles a for_each expression. Like conditions it
// may not read the clock: compile stays pure.
func compileIteration(src string, pos Pos) (*iteration, error) {
	prog, err := expr.Compile(src,
		expr.Env(conditionEnv),
		expr.DisableBuiltin("now"),
		expr.MaxNodes(2000),
	)
	if err != nil {
		return nil, Diagnostic{Pos: pos, Msg: "for_each " + quoteShort(src) + ": " + exprMessage(err)}
	}
	return &iteration{src: src, pos: pos, prog: prog}, nil
}

// elements evaluates the iteration over env: a list's elements in order,
// a map's in the order of their keys, so that the catalog is the same
// on every compile.
func (it *iteration) elements(env map[string]any) ([]element, error) {
	v := it.literal
	if it.prog != nil {
		out, err := expr.Run(it.prog, env)
		if err != nil {
			return nil, Diagnostic{Pos: it.pos, Msg: "for_each " + quoteShort(it.src) + ": " + exprMessage(err)}
		}
		v = out
	}
	return iterElements(v, it.pos, it.src)
}

// iterElements turns a for_each value into its elements.
func iterElements(v any, pos Pos, src string) ([]element, error) {
	switch x := v.(type) {
	case []any:
		out := make([]element, len(x))
		for i, e := range x {
			out[i] = element{key: i, value: e}
		}
		return out, nil
	case []string:
		out := make([]element, len(x))
		for i, e := range x {
			out[i] = element{key: i, value: e}
		}
		return out, nil
	case map[string]any:
		keys := slices.Collect(maps.Keys(x))
		slices.SortFunc(keys, cmp.Compare)
		out := make([]element, len(keys))
		for i, k := range keys {
			out[i] = element{key: k, value: x[k]}
		}
		return out, nil
	case map[string]string:
		keys := slices.Collect(maps.Keys(x))
		slices.Sort(keys)
		out := make([]element, len(keys))
		for i, k := range keys {
			out[i] = element{key: k, value: x[k]}
		}
		return out, nil
	}
	what := "for_each"
	if src != "" {
		what += " " + quoteShort(src)
	}
	if v == nil {
		return nil, Diagnostic{Pos: pos, Msg: what + ": gave nothing (a missing param or fact?), want a list or a map; write [] for none"}
	}
	return nil, Diagnostic{Pos: pos, Msg: fmt.Sprintf("%s: gave %s, want a list or a map", what, typeName(v))}
}
