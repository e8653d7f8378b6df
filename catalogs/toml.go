package catalogs

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// tomlDoc is one parsed site file: its values, and where each key was
// written so that every later diagnostic can name file:line:col.
type tomlDoc struct {
	file  string
	data  map[string]any
	pos   map[string]Pos // key path ("file[2].mode") → position of the key
	lines []int          // byte offset of each line start, for offset → line:col
}

// parseTOML decodes b and indexes the position of every key. A syntax or
// semantic error (duplicate key, bad value) is returned as a Diagnostic.
func parseTOML(file string, b []byte) (*tomlDoc, error) {
	d := &tomlDoc{file: file, pos: map[string]Pos{}}
	d.lines = append(d.lines, 0)
	for i, c := range b {
		if c == '\n' {
			d.lines = append(d.lines, i+1)
		}
	}
	if err := toml.Unmarshal(b, &d.data); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			msg := "invalid TOML: " + de.Error()
			if hint := leadingZeroHint(b, d.lines, line, col); hint != "" && strings.Contains(msg, "leading zero") {
				msg += hint
			}
			return nil, Diagnostic{Pos: Pos{file, line, col}, Msg: msg}
		}
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return nil, Diagnostic{Pos: Pos{File: file}, Msg: "invalid TOML: " + sm.Error()}
		}
		return nil, Diagnostic{Pos: Pos{File: file}, Msg: "invalid TOML: " + err.Error()}
	}
	if d.data == nil {
		d.data = map[string]any{}
	}
	d.index(b)
	return d, nil
}

// leadingZeroHint explains go-toml's "integers cannot have leading
// zeroes" for the likeliest cause, a file mode written as a number
// (mode = 0600): it says to write it as a string, key and all. line and
// col (1-based) are where the number starts; lines is the offset of each
// line. An error it cannot read that way gets no hint.
func leadingZeroHint(b []byte, lines []int, line, col int) string {
	if line < 1 || line > len(lines) {
		return ""
	}
	text := string(b[lines[line-1]:])
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	if col < 1 || col > len(text) {
		return ""
	}
	before, rest := text[:col-1], text[col-1:]
	end := 0
	for end < len(rest) && (rest[end] >= '0' && rest[end] <= '9' || rest[end] == '_') {
		end++
	}
	num := rest[:end]
	m := leadingZeroKey.FindStringSubmatch(before)
	if m == nil || len(num) < 2 || num[0] != '0' {
		return ""
	}
	return fmt.Sprintf(" (write the mode as a string: %s = %q)", m[1], num)
}

// leadingZeroKey is the key before a value: `mode = ` at the end of the
// text in front of the number.
var leadingZeroKey = regexp.MustCompile(`([A-Za-z0-9_-]+)\s*=\s*$`)

func (d *tomlDoc) at(offset uint32) Pos {
	i := sort.Search(len(d.lines), func(i int) bool { return d.lines[i] > int(offset) }) - 1
	if i < 0 {
		i = 0
	}
	return Pos{File: d.file, Line: i + 1, Col: int(offset) - d.lines[i] + 1}
}

// index walks the syntax tree recording the position of every key. Array
// tables are numbered the way the decoder numbers them, so "file[2]" here is
// data["file"].([]any)[2] there.
func (d *tomlDoc) index(b []byte) {
	var p unstable.Parser
	p.Reset(b)
	last := map[string]int{} // array-table path → index of its last element
	prefix := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			path, pos := d.headerPath(e, last)
			if e.Kind == unstable.ArrayTable {
				n, ok := last[path]
				if ok {
					n++
				}
				last[path] = n
				d.pos[path] = pos
				path = path + "[" + strconv.Itoa(n) + "]"
			}
			prefix = path
			d.pos[path] = pos
		case unstable.KeyValue:
			d.keyValue(prefix, e)
		}
	}
}

// headerPath resolves a [a.b] or [[a.b]] header against the array tables
// seen so far: a segment naming an array table means its last element.
func (d *tomlDoc) headerPath(e *unstable.Node, last map[string]int) (string, Pos) {
	var path string
	var pos Pos
	it := e.Key()
	first := true
	for it.Next() {
		k := it.Node()
		if first {
			pos = d.at(k.Raw.Offset)
			first = false
		}
		path = joinKey(path, string(k.Data))
		if n, ok := last[path]; ok && !it.IsLast() {
			path += "[" + strconv.Itoa(n) + "]"
		}
	}
	return path, pos
}

func (d *tomlDoc) keyValue(prefix string, e *unstable.Node) {
	path := prefix
	it := e.Key()
	var pos Pos
	for it.Next() {
		k := it.Node()
		path = joinKey(path, string(k.Data))
		pos = d.at(k.Raw.Offset)
		if _, seen := d.pos[path]; !seen {
			d.pos[path] = pos
		}
	}
	d.pos[path] = pos
	d.value(path, e.Value(), pos)
}

func (d *tomlDoc) value(path string, v *unstable.Node, pos Pos) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			d.keyValue(path, it.Node())
		}
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); i++ {
			el := it.Node()
			p := pos
			if el.Raw.Length > 0 {
				p = d.at(el.Raw.Offset)
			}
			ep := path + "[" + strconv.Itoa(i) + "]"
			d.pos[ep] = p
			d.value(ep, el, p)
		}
	}
}

func joinKey(prefix, k string) string {
	if needsQuote(k) {
		k = strconv.Quote(k)
	}
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func needsQuote(k string) bool {
	if k == "" {
		return true
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return true
		}
	}
	return false
}

// only returns a doc that keeps just the positions of the keys at or under
// prefix, for a caller that needs nothing else of the file once it is
// loaded.
func (d *tomlDoc) only(prefix string) *tomlDoc {
	kept := &tomlDoc{file: d.file, pos: map[string]Pos{}}
	for k, p := range d.pos {
		if k == prefix || strings.HasPrefix(k, prefix+".") || strings.HasPrefix(k, prefix+"[") {
			kept.pos[k] = p
		}
	}
	return kept
}

// posOf returns where path was written, falling back to the nearest
// enclosing key that has a position, then to the file itself.
func (d *tomlDoc) posOf(path string) Pos {
	for path != "" {
		if p, ok := d.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return Pos{File: d.file}
}

// typeName names a decoded TOML value's type for diagnostics.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%T", v)
}
