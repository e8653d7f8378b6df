package catalogs

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
)

// The budget of templates. text/template cannot be interrupted, so a
// render is bounded by construction instead: every loop iteration and
// template call pays a step per node it may evaluate, every function call
// a step and bulk work one step per 64 bytes, the output fails past its cap, and every function refuses
// arguments that would make a result over the cap before building it.
// Steps, not time, so that compile stays a pure function: the same site,
// node and facts pass or fail the same way on any machine.
const (
	// MaxRenderBytes caps what one render (a templated attribute, or a
	// file under templates/) produces.
	MaxRenderBytes = 1 << 20
	// MaxRenderSteps caps the work of one render.
	MaxRenderSteps = 250_000
	// MaxCompileSteps caps the work of every render of one compile, so
	// that many renders just under their cap cannot add up to a hang.
	MaxCompileSteps = 2_500_000
	// maxIndent caps indent's count of spaces.
	maxIndent = 1000
	// callSteps is what entering a template costs: a template calling
	// itself stops after MaxRenderSteps/callSteps calls, long before
	// text/template's own depth limit (100,000) has grown the stack by
	// tens of megabytes.
	callSteps = 25
	// bytesPerStep is how many bytes of copying, escaping or comparing
	// cost one step.
	bytesPerStep = 64
)

// errBudget marks an error of a render that ran over its budget.
var errBudget = errors.New("over budget")

// budget is what one compile's renders may still spend. It is used by
// one goroutine at a time: the compile's.
type budget struct {
	render, compile int64   // steps left
	out             int     // bytes written by this render
	last            int     // the step taken last, an index of renderers.steps
	costs           []int64 // renderers.costs
	err             error   // sticky once over budget
	// secret opens secrets/NAME.age for the template function secret;
	// set by the compile that holds the renderer.
	secret func(name string) (string, error)
}

// charge spends n steps.
func (b *budget) charge(n int64) error {
	if b.err != nil {
		return b.err
	}
	b.render -= n
	b.compile -= n
	switch {
	case b.render < 0:
		b.err = fmt.Errorf("%w: rendering takes more than %d steps (a loop too long or nested too deep, or too much text processed)", errBudget, MaxRenderSteps)
	case b.compile < 0:
		b.err = fmt.Errorf("%w: the templates of this node take more than %d steps together", errBudget, MaxCompileSteps)
	}
	return b.err
}

// fits charges for producing a result of size bytes and refuses one over
// the output cap, before it is built.
func (b *budget) fits(size int) error {
	if err := b.charge(1 + int64(size)/bytesPerStep); err != nil {
		return err
	}
	if size > MaxRenderBytes {
		return fmt.Errorf("the result would be %d bytes, more than the %s a render may produce", size, byteSize(MaxRenderBytes))
	}
	return nil
}

// renderWriter is the output of one render: it fails past MaxRenderBytes,
// which stops text/template at once.
type renderWriter struct {
	buf *strings.Builder
	b   *budget
}

func (w *renderWriter) Write(p []byte) (int, error) {
	if err := w.b.charge(1 + int64(len(p))/bytesPerStep); err != nil {
		return 0, err
	}
	if w.b.out+len(p) > MaxRenderBytes {
		w.b.err = fmt.Errorf("%w: the output is more than %s", errBudget, byteSize(MaxRenderBytes))
		return 0, w.b.err
	}
	w.b.out += len(p)
	return w.buf.Write(p)
}

// renderers holds a site's parsed templates: those of templates/ and those
// of attribute values, in two sets so that neither can redefine the
// other's. Every template's body and every loop's body starts with a step
// (see instrument); steps records where each is. A compile
// takes a clone of both sets whose functions charge its own budget.
type renderers struct {
	files, inline *template.Template // parsed and instrumented; never executed
	// fileWeights and inlineWeights are what starting each template of
	// files and inline costs.
	fileWeights, inlineWeights map[string]int64
	steps                      []Pos   // where each step is, by id
	costs                      []int64 // what each step charges, by id
	// fileRefs and inlineRefs are what each template reads, by name, for
	// secret tracking (taint.go).
	fileRefs, inlineRefs map[string]tmplRefs
	// free holds the renderers of finished compiles. Unlike a sync.Pool it
	// is not emptied by the garbage collector, which runs often while a
	// fleet compiles: a clone is made only when more compiles run at once
	// than ever before, so there are never more than that.
	mu   sync.Mutex
	free []*renderer
}

// renderer is one compile's clone of the templates, bound to its budget.
type renderer struct {
	files, inline *template.Template
	b             *budget
	w             *renderWriter // reused, so that a render allocates no writer
}

func newRenderers() *renderers {
	rs := &renderers{fileWeights: map[string]int64{}, inlineWeights: map[string]int64{}}
	rs.files = template.New("").Funcs(templateFuncs(&budget{})).Option("missingkey=error")
	rs.inline = template.New("").Funcs(templateFuncs(&budget{})).Option("missingkey=error")
	return rs
}

// instrument makes every execution of a list of t's templates paid for
// before it runs: a step at the start of every range loop's body charges
// one iteration, a step before every {{template}} call charges the call,
// and execute charges the template it starts with. Each charges the nodes
// that one execution may evaluate, the branches of its ifs and withs
// included (each runs at most once per execution); loops and calls nested
// in it charge for themselves, functions for their work and the writer for
// its bytes. posOf says where a node was written. weights records the
// cost of starting each template.
func (rs *renderers) instrument(t *template.Template, weights map[string]int64, posOf func(tr *parse.Tree, n parse.Node) Pos) {
	tmpls := t.Templates()
	for _, tm := range tmpls {
		if tm.Tree != nil && tm.Tree.Root != nil {
			weights[tm.Name()] = callSteps + weight(tm.Tree.Root)
		}
	}
	for _, tm := range tmpls {
		tr := tm.Tree
		if tr == nil || tr.Root == nil {
			continue
		}
		step := func(at parse.Node, cost int64) parse.Node {
			id := len(rs.steps)
			rs.steps = append(rs.steps, posOf(tr, at))
			rs.costs = append(rs.costs, cost)
			return stepNode(tr, at.Position(), id)
		}
		var list func(l *parse.ListNode)
		node := func(n parse.Node) {
			switch n := n.(type) {
			case *parse.IfNode:
				list(n.List)
				list(n.ElseList)
			case *parse.WithNode:
				list(n.List)
				list(n.ElseList)
			case *parse.RangeNode:
				list(n.List)
				list(n.ElseList)
				if n.List != nil {
					n.List.Nodes = append([]parse.Node{step(n.List, 1+weight(n.List))}, n.List.Nodes...)
				}
			}
		}
		list = func(l *parse.ListNode) {
			if l == nil {
				return
			}
			out := make([]parse.Node, 0, len(l.Nodes))
			for _, c := range l.Nodes {
				node(c)
				if call, ok := c.(*parse.TemplateNode); ok {
					// A template not defined costs nothing: the
					// call fails.
					out = append(out, step(call, callSteps+weights[call.Name]))
				}
				out = append(out, c)
			}
			l.Nodes = out
		}
		list(tr.Root)
	}
}

// weight counts the nodes one execution of n may evaluate, leaving out
// the bodies of range loops (charged per iteration) and of called
// templates (charged on entry).
func weight(n parse.Node) int64 {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return 0
		}
		var w int64
		for _, c := range n.Nodes {
			w += weight(c)
		}
		return w
	case *parse.ActionNode:
		return 1 + weight(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return 0
		}
		w := int64(1)
		for _, c := range n.Cmds {
			w++
			for _, a := range c.Args {
				w += weight(a)
			}
		}
		return w
	case *parse.IfNode:
		return 1 + weight(n.Pipe) + weight(n.List) + weight(n.ElseList)
	case *parse.WithNode:
		return 1 + weight(n.Pipe) + weight(n.List) + weight(n.ElseList)
	case *parse.RangeNode:
		return 1 + weight(n.Pipe) + weight(n.ElseList)
	case *parse.TemplateNode:
		return 1 + weight(n.Pipe)
	}
	return 1
}

// stepNode is the action {{herdStep ID}}, which prints nothing.
func stepNode(tr *parse.Tree, pos parse.Pos, id int) parse.Node {
	num := &parse.NumberNode{NodeType: parse.NodeNumber, Pos: pos, IsInt: true, Int64: int64(id), Text: strconv.Itoa(id)}
	ident := parse.NewIdentifier("herdStep").SetTree(tr).SetPos(pos)
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: []parse.Node{ident, num}}
	return &parse.ActionNode{NodeType: parse.NodeAction, Pos: pos,
		Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos, Cmds: []*parse.CommandNode{cmd}}}
}

// get returns a renderer for one compile, with a fresh compile budget.
func (rs *renderers) get() (*renderer, error) {
	var r *renderer
	rs.mu.Lock()
	if n := len(rs.free); n > 0 {
		r, rs.free = rs.free[n-1], rs.free[:n-1]
	}
	rs.mu.Unlock()
	if r == nil {
		b := &budget{costs: rs.costs}
		files, err := rs.files.Clone()
		if err != nil {
			return nil, err
		}
		inline, err := rs.inline.Clone()
		if err != nil {
			return nil, err
		}
		funcs := templateFuncs(b)
		r = &renderer{files: files.Funcs(funcs), inline: inline.Funcs(funcs), b: b, w: &renderWriter{b: b}}
	}
	r.b.compile = MaxCompileSteps
	return r, nil
}

func (rs *renderers) put(r *renderer) {
	rs.mu.Lock()
	rs.free = append(rs.free, r)
	rs.mu.Unlock()
}

// execute renders template name of t, which costs weight to start, into
// buf with a fresh render budget.
// A render over budget returns the budget error and where the last step
// was taken; any other error is text/template's.
func (rs *renderers) execute(r *renderer, t *template.Template, weight int64, name string, ctx map[string]any, buf *strings.Builder) (budgetAt Pos, err error) {
	b := r.b
	b.render, b.out, b.last, b.err = MaxRenderSteps, 0, -1, nil
	// Starting the template pays for it; a compile over its budget stays
	// over it, with its own message.
	buf.Reset()
	if err := b.charge(weight); err != nil {
		return Pos{}, err
	}
	r.w.buf = buf
	err = t.ExecuteTemplate(r.w, name, ctx)
	r.w.buf = nil // the renderer is reused; the buffer stays with its compile
	if err != nil && b.err != nil && errors.Is(err, errBudget) {
		if b.last >= 0 {
			budgetAt = rs.steps[b.last]
		}
		return budgetAt, b.err
	}
	return Pos{}, err
}

// The comparison functions below are text/template's eq, ne, lt, le, gt
// and ge (Go's BSD-licensed text/template/funcs.go), charging for the
// strings they compare: comparing two large strings in a loop must spend
// the budget like any other work.

type cmpKind int

const (
	invalidCmp cmpKind = iota
	boolCmp
	complexCmp
	intCmp
	floatCmp
	stringCmp
	uintCmp
)

var errBadComparisonType = errors.New("invalid type for comparison")

func basicKind(v reflect.Value) (cmpKind, error) {
	switch v.Kind() {
	case reflect.Bool:
		return boolCmp, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intCmp, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return uintCmp, nil
	case reflect.Float32, reflect.Float64:
		return floatCmp, nil
	case reflect.Complex64, reflect.Complex128:
		return complexCmp, nil
	case reflect.String:
		return stringCmp, nil
	}
	return invalidCmp, errBadComparisonType
}

func indirectInterface(v reflect.Value) reflect.Value {
	if v.Kind() != reflect.Interface {
		return v
	}
	if v.IsNil() {
		return reflect.Value{}
	}
	return v.Elem()
}

func isNilValue(v reflect.Value) bool {
	if !v.IsValid() {
		return true
	}
	switch v.Kind() {
	case reflect.Chan, reflect.Func, reflect.Interface, reflect.Map, reflect.Pointer, reflect.Slice:
		return v.IsNil()
	}
	return false
}

// chargeCompare charges for comparing strings of the given values.
func (b *budget) chargeCompare(vs ...reflect.Value) error {
	n := int64(1)
	for _, v := range vs {
		if v = indirectInterface(v); v.Kind() == reflect.String {
			n += int64(v.Len()) / bytesPerStep
		}
	}
	return b.charge(n)
}

func (b *budget) eq(arg1 reflect.Value, arg2 ...reflect.Value) (bool, error) {
	if err := b.chargeCompare(append([]reflect.Value{arg1}, arg2...)...); err != nil {
		return false, err
	}
	return eqValues(arg1, arg2...)
}

func eqValues(arg1 reflect.Value, arg2 ...reflect.Value) (bool, error) {
	arg1 = indirectInterface(arg1)
	if len(arg2) == 0 {
		return false, errors.New("missing argument for comparison")
	}
	k1, _ := basicKind(arg1)
	for _, arg := range arg2 {
		arg = indirectInterface(arg)
		k2, _ := basicKind(arg)
		truth := false
		if k1 != k2 {
			switch {
			case k1 == intCmp && k2 == uintCmp:
				truth = arg1.Int() >= 0 && uint64(arg1.Int()) == arg.Uint()
			case k1 == uintCmp && k2 == intCmp:
				truth = arg.Int() >= 0 && arg1.Uint() == uint64(arg.Int())
			default:
				if arg1.IsValid() && arg.IsValid() {
					return false, fmt.Errorf("incompatible types for comparison: %v and %v", arg1.Type(), arg.Type())
				}
			}
		} else {
			switch k1 {
			case boolCmp:
				truth = arg1.Bool() == arg.Bool()
			case complexCmp:
				truth = arg1.Complex() == arg.Complex()
			case floatCmp:
				truth = arg1.Float() == arg.Float()
			case intCmp:
				truth = arg1.Int() == arg.Int()
			case stringCmp:
				truth = arg1.String() == arg.String()
			case uintCmp:
				truth = arg1.Uint() == arg.Uint()
			default:
				if arg1.Kind() != arg.Kind() && arg1.IsValid() && arg.IsValid() {
					return false, fmt.Errorf("non-comparable types %s: %v, %s: %v", arg1, arg1.Type(), arg.Type(), arg)
				}
				if isNilValue(arg1) || isNilValue(arg) {
					truth = isNilValue(arg) == isNilValue(arg1)
				} else {
					if !arg.Type().Comparable() {
						return false, fmt.Errorf("non-comparable type %s: %v", arg, arg.Type())
					}
					truth = arg1.Interface() == arg.Interface()
				}
			}
		}
		if truth {
			return true, nil
		}
	}
	return false, nil
}

func ltValues(arg1, arg2 reflect.Value) (bool, error) {
	arg1 = indirectInterface(arg1)
	k1, err := basicKind(arg1)
	if err != nil {
		return false, err
	}
	arg2 = indirectInterface(arg2)
	k2, err := basicKind(arg2)
	if err != nil {
		return false, err
	}
	if k1 != k2 {
		switch {
		case k1 == intCmp && k2 == uintCmp:
			return arg1.Int() < 0 || uint64(arg1.Int()) < arg2.Uint(), nil
		case k1 == uintCmp && k2 == intCmp:
			return arg2.Int() >= 0 && arg1.Uint() < uint64(arg2.Int()), nil
		}
		return false, fmt.Errorf("incompatible types for comparison: %v and %v", arg1.Type(), arg2.Type())
	}
	switch k1 {
	case floatCmp:
		return arg1.Float() < arg2.Float(), nil
	case intCmp:
		return arg1.Int() < arg2.Int(), nil
	case stringCmp:
		return arg1.String() < arg2.String(), nil
	case uintCmp:
		return arg1.Uint() < arg2.Uint(), nil
	}
	return false, errBadComparisonType
}

func leValues(arg1, arg2 reflect.Value) (bool, error) {
	lessThan, err := ltValues(arg1, arg2)
	if lessThan || err != nil {
		return lessThan, err
	}
	return eqValues(arg1, arg2)
}

// comparisons returns eq, ne, lt, le, gt and ge charging b.
func (b *budget) comparisons() template.FuncMap {
	charged := func(f func(a, c reflect.Value) (bool, error)) func(a, c reflect.Value) (bool, error) {
		return func(a, c reflect.Value) (bool, error) {
			if err := b.chargeCompare(a, c); err != nil {
				return false, err
			}
			return f(a, c)
		}
	}
	return template.FuncMap{
		"eq": b.eq,
		"ne": charged(func(a, c reflect.Value) (bool, error) { e, err := eqValues(a, c); return !e, err }),
		"lt": charged(ltValues),
		"le": charged(leValues),
		"gt": charged(func(a, c reflect.Value) (bool, error) { le, err := leValues(a, c); return !le && err == nil, err }),
		"ge": charged(func(a, c reflect.Value) (bool, error) { lt, err := ltValues(a, c); return !lt && err == nil, err }),
	}
}
