package policies

import (
	"bytes"
	"encoding/json"
	"hash/maphash"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/herdcm/herd/catalogs"
)

// A fleet's re-audit reads every node's approved catalog, which the
// server holds as its canonical bytes. Decoding them into a
// catalogs.Catalog (encoding/json, reflection, a map per resource) and
// then converting that to OPA values was two thirds of a node's audit, so
// catalogBytesValue converts the bytes straight to the OPA value
// catalogValue gives of the decoded catalog, and shares the value of
// each resource whose bytes it has seen on other nodes (a role's nodes
// share most of theirs, byte for byte).
//
// The fast path reads only the canonical encoding (catalogs.Encode: no
// space, keys in order, the shapes compile produces); anything else, valid
// or not, takes the old path (catalogs.Decode, then catalogValue), so the
// value and the errors are the same either way. TestCatalogBytesValue and
// FuzzCatalogBytesValue hold the two to each other.

// catalogBytesValue is the OPA value of the canonical catalog b, equal to
// catalogValue of catalogs.Decode(b).
func catalogBytesValue(b []byte, spans *spanCache, rc *resourceCache) (ast.Value, error) {
	if v, ok := fastCatalogValue(b, spans); ok {
		return v, nil
	}
	c, err := catalogs.Decode(b)
	if err != nil {
		return nil, err
	}
	return catalogValue(c, rc)
}

// fastCatalogValue converts the canonical encoding b; ok is false for
// anything it does not read, which the caller decodes instead.
func fastCatalogValue(b []byte, spans *spanCache) (v ast.Value, ok bool) {
	p := &jsonReader{b: b, cv: newConverter()}
	if !p.lit(`{"environment":`) {
		return nil, false
	}
	env, ok := p.str()
	if !ok || !p.lit(`,"files":`) {
		return nil, false
	}
	var files ast.Value = ast.NullValue
	if !p.lit("null") {
		if files, ok = p.files(); !ok {
			return nil, false
		}
	}
	if !p.lit(`,"node":`) {
		return nil, false
	}
	nodeStart := p.i
	node, ok := p.str()
	if !ok || !p.lit(`,"resources":`) {
		return nil, false
	}
	var resources ast.Value = ast.NullValue
	if !p.lit("null") {
		var tag uint64
		if spans != nil {
			tag = spans.nodeTag(p.b[nodeStart : p.i-len(`,"resources":`)])
		}
		if resources, ok = p.resources(spans, tag); !ok {
			return nil, false
		}
	}
	if !p.lit(`,"version":`) {
		return nil, false
	}
	version, ok := p.str()
	if !ok || !p.lit("}") || p.i != len(p.b) {
		return nil, false
	}
	cv := p.cv
	return ast.NewObject(
		[2]*ast.Term{keyEnvironment, env},
		[2]*ast.Term{keyFiles, cv.term(files)},
		[2]*ast.Term{keyNode, node},
		[2]*ast.Term{keyResources, cv.term(resources)},
		[2]*ast.Term{keyVersion, version},
	), true
}

// jsonReader reads canonical JSON from b at i, converting as it goes.
type jsonReader struct {
	b  []byte
	i  int
	cv *converter
	// src, when not empty, is b as a string: strings without escapes
	// are taken from it rather than copied one by one, one allocation
	// a resource instead of one a string.
	src string
}

// lit consumes s if b continues with it.
func (p *jsonReader) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

func (p *jsonReader) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// files reads the files array.
func (p *jsonReader) files() (ast.Value, bool) {
	if !p.lit("[") {
		return nil, false
	}
	var terms []*ast.Term
	for first := true; !p.lit("]"); first = false {
		if !first && !p.lit(",") {
			return nil, false
		}
		if !p.lit(`{"digest":`) {
			return nil, false
		}
		digest, ok := p.str()
		if !ok || !p.lit(`,"path":`) {
			return nil, false
		}
		path, ok := p.str()
		if !ok || !p.lit(`,"size":`) {
			return nil, false
		}
		size, ok := p.int()
		if !ok || !p.lit("}") {
			return nil, false
		}
		terms = append(terms, p.cv.term(ast.NewObject(
			[2]*ast.Term{keyDigest, digest},
			[2]*ast.Term{keyPath, path},
			[2]*ast.Term{keySize, size},
		)))
	}
	return ast.NewArray(terms...), true
}

// resources reads the resources array, taking each resource's value
// from spans when its bytes were converted before; node is the
// catalog's node (spanCache.nodeTag).
func (p *jsonReader) resources(spans *spanCache, node uint64) (ast.Value, bool) {
	if !p.lit("[") {
		return nil, false
	}
	var terms []*ast.Term
	for first := true; !p.lit("]"); first = false {
		if !first && !p.lit(",") {
			return nil, false
		}
		start := p.i
		var (
			h        uint64
			span     []byte
			hit      *ast.Term
			lookedUp bool
		)
		if spans != nil {
			if end, ok := resourceEnd(p.b, start); ok {
				span = p.b[start:end]
				h, hit = spans.get(span)
				lookedUp = true
				if hit != nil {
					terms = append(terms, hit)
					p.i = end
					continue
				}
			}
		}
		r := p
		if span != nil {
			r = &jsonReader{b: span, cv: p.cv, src: string(span)}
		}
		v, ok := r.resource()
		if !ok {
			return nil, false
		}
		if r != p {
			p.i = start + r.i
		}
		t := p.cv.term(v)
		terms = append(terms, t)
		if lookedUp && p.i == start+len(span) {
			spans.put(h, node, span, t)
		}
	}
	return ast.NewArray(terms...), true
}

// resourceEnd finds the end of the object that starts at b[i]: the
// position after its closing brace, by counting braces outside strings.
// It does not validate; the resource is read (and so checked) the first
// time its bytes are seen, and a later hit must equal those bytes.
func resourceEnd(b []byte, i int) (int, bool) {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// resource reads one resource object as catalogValue converts it.
func (p *jsonReader) resource() (ast.Value, bool) {
	cv := p.cv
	if !p.lit(`{"attrs":`) {
		return nil, false
	}
	// Decode makes a null attrs an empty object.
	attrs := cv.term(ast.NewObject())
	if !p.lit("null") {
		var ok bool
		if attrs, ok = p.attrs(); !ok {
			return nil, false
		}
	}
	if !p.lit(`,"id":`) {
		return nil, false
	}
	id, ok := p.str()
	if !ok || !p.lit(`,"name":`) {
		return nil, false
	}
	name, ok := p.str()
	if !ok {
		return nil, false
	}
	var buf [7][2]*ast.Term
	kvs := append(buf[:0], [2]*ast.Term{keyAttrs, attrs}, [2]*ast.Term{keyID, id}, [2]*ast.Term{keyName, name})
	var notify, require *ast.Term
	if p.lit(`,"notify":`) {
		// The canonical encoding leaves out an empty list.
		if notify, ok = p.strings(); !ok || notify.Value.(*ast.Array).Len() == 0 {
			return nil, false
		}
	}
	if p.lit(`,"require":`) {
		if require, ok = p.strings(); !ok || require.Value.(*ast.Array).Len() == 0 {
			return nil, false
		}
	}
	if !p.lit(`,"source":`) {
		return nil, false
	}
	source, ok := p.str()
	if !ok || !p.lit(`,"type":`) {
		return nil, false
	}
	typ, ok := p.name()
	if !ok || !p.lit("}") {
		return nil, false
	}
	kvs = append(kvs, [2]*ast.Term{keySource, source}, [2]*ast.Term{keyType, typ})
	if notify != nil {
		kvs = append(kvs, [2]*ast.Term{keyNotify, notify})
	}
	if require != nil {
		kvs = append(kvs, [2]*ast.Term{keyRequire, require})
	}
	return ast.NewObject(kvs...), true
}

// attrs reads a resource's attributes: keys in strictly increasing order
// (sorted, no duplicates), values of the shapes compile produces.
func (p *jsonReader) attrs() (*ast.Term, bool) {
	return p.object(p.name, p.value)
}

// object reads {"k":v,…}: each key by key and each value by val, the keys
// strictly increasing (the canonical encoding sorts them and has no
// duplicates; anything else is not canonical).
func (p *jsonReader) object(key, val func() (*ast.Term, bool)) (*ast.Term, bool) {
	if !p.lit("{") {
		return nil, false
	}
	var (
		buf  [16][2]*ast.Term
		kvs  = buf[:0]
		prev string
	)
	for first := true; !p.lit("}"); first = false {
		if !first && !p.lit(",") {
			return nil, false
		}
		k, ok := key()
		if !ok || !p.lit(":") {
			return nil, false
		}
		ks := string(k.Value.(ast.String))
		if !first && ks <= prev {
			return nil, false
		}
		prev = ks
		v, ok := val()
		if !ok {
			return nil, false
		}
		kvs = append(kvs, [2]*ast.Term{k, v})
	}
	return p.cv.term(ast.NewObject(kvs...)), true
}

// value reads an attribute's value: a string, an integer, a boolean,
// null, a list of strings or a table of strings.
func (p *jsonReader) value() (*ast.Term, bool) {
	switch c := p.peek(); {
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.int()
	case p.lit("true"):
		return ast.InternedTerm(true), true
	case p.lit("false"):
		return ast.InternedTerm(false), true
	case p.lit("null"):
		return ast.NullTerm(), true
	case c == '[':
		return p.strings()
	case c == '{':
		return p.object(p.str, p.str)
	}
	return nil, false
}

// strings reads a list of strings.
func (p *jsonReader) strings() (*ast.Term, bool) {
	if !p.lit("[") {
		return nil, false
	}
	var ts []*ast.Term
	for first := true; !p.lit("]"); first = false {
		if !first && !p.lit(",") {
			return nil, false
		}
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		ts = append(ts, s)
	}
	return p.cv.term(ast.NewArray(ts...)), true
}

// int reads an integer as strconv.AppendInt writes it: no leading zero,
// no "-0", within int64.
func (p *jsonReader) int() (*ast.Term, bool) {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	lit := p.b[start:p.i]
	switch {
	case p.i == digits, p.b[digits] == '0' && (p.i-digits > 1 || digits > start):
		return nil, false
	}
	if c := p.peek(); c == '.' || c == 'e' || c == 'E' {
		return nil, false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	if err != nil {
		return nil, false
	}
	return ast.InternedTerm(n), true
}

// name reads a string that repeats across the catalog (an attribute's
// name, a type) as one shared term, as the converter's name does.
func (p *jsonReader) name() (*ast.Term, bool) {
	start := p.i
	if p.peek() != '"' {
		return nil, false
	}
	end := bytes.IndexByte(p.b[start+1:], '"')
	if end < 0 {
		return nil, false
	}
	raw := p.b[start+1 : start+1+end]
	if t, ok := p.cv.names[string(raw)]; ok && plain(raw) {
		p.i = start + 1 + end + 1
		return t, true
	}
	s, ok := p.rawStr()
	if !ok {
		return nil, false
	}
	return p.cv.name(s), true
}

// str reads a string as a term.
func (p *jsonReader) str() (*ast.Term, bool) {
	s, ok := p.rawStr()
	if !ok {
		return nil, false
	}
	return p.cv.str(s), true
}

// plain reports whether raw, between a string's quotes, is its own value:
// printable ASCII without escapes.
func plain(raw []byte) bool {
	for _, c := range raw {
		if c < 0x20 || c >= utf8.RuneSelf || c == '\\' || c == '"' {
			return false
		}
	}
	return true
}

// rawStr reads a JSON string. The common escapes are undone here; a
// \u escape or bytes that are not UTF-8 go to encoding/json, whose
// replacement of bad sequences Decode would apply.
func (p *jsonReader) rawStr() (string, bool) {
	if p.peek() != '"' {
		return "", false
	}
	start := p.i
	i := start + 1
	var (
		buf     []byte
		from    = i
		nonASCI bool
	)
	for {
		if i >= len(p.b) {
			return "", false
		}
		c := p.b[i]
		switch {
		case c == '"':
			var s string
			switch {
			case buf == nil && len(p.src) == len(p.b):
				s = p.src[from:i]
			case buf == nil:
				s = string(p.b[from:i])
			default:
				s = string(append(buf, p.b[from:i]...))
			}
			if nonASCI && !utf8.ValidString(s) {
				return p.slowStr(start)
			}
			p.i = i + 1
			return s, true
		case c < 0x20:
			return "", false // not JSON: Decode says so
		case c >= utf8.RuneSelf:
			nonASCI = true
			i++
		case c == '\\':
			if i+1 >= len(p.b) {
				return "", false
			}
			var r byte
			switch p.b[i+1] {
			case '"', '\\', '/':
				r = p.b[i+1]
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case 'u':
				return p.slowStr(start)
			default:
				return "", false
			}
			buf = append(append(buf, p.b[from:i]...), r)
			i += 2
			from = i
		default:
			i++
		}
	}
}

// slowStr reads the string at start with encoding/json.
func (p *jsonReader) slowStr(start int) (string, bool) {
	i := start + 1
	for ; i < len(p.b) && p.b[i] != '"'; i++ {
		if p.b[i] == '\\' {
			i++
		}
	}
	if i >= len(p.b) {
		return "", false
	}
	var s string
	if err := json.Unmarshal(p.b[start:i+1], &s); err != nil {
		return "", false
	}
	p.i = i + 1
	return s, true
}

// spanCache keeps the converted value of resources by their canonical
// bytes across the nodes an audit evaluates, as resourceCache does by
// their decoded value: kept when seen on a second node, within
// maxCacheBytes, sharded by hash. An entry is used only for bytes equal
// to the copy it keeps.
//
// What was seen once, and on which node, is a table of one word a slot
// per shard, indexed by the span's hash, not a map: at 10,000 nodes most
// spans are a node's own (a file naming it), and looking each up in a
// map of a million hashes cost more than converting it. A span kept only
// when a second node has it keeps a node's own spans out even when the
// node is audited again, so the entries stay few and their lookups fast.
type spanCache struct {
	seed   maphash.Seed
	shards [cacheShards]spanShard
}

type spanShard struct {
	mu sync.RWMutex
	m  map[uint64]spanEntry
	// seen holds, per slot, the high bits of the hash of the last span
	// seen there and the low bits of its node's (spanNodeBits).
	seen  []uint64
	bytes int
}

// spanSeenSlots is the size of a shard's seen table: two shared spans
// that fall in one slot, with node-specific ones between them, may need
// a third sight to be kept.
const spanSeenSlots = 1 << 13

// spanNodeBits of a seen slot tell nodes apart; two nodes alike in them
// delay keeping a span that both have, no more.
const spanNodeBits = 16

type spanEntry struct {
	b []byte
	t *ast.Term
}

func newSpanCache() *spanCache {
	sc := &spanCache{seed: maphash.MakeSeed()}
	for i := range sc.shards {
		sc.shards[i].m = map[uint64]spanEntry{}
	}
	return sc
}

// nodeTag identifies a node in seen slots.
func (sc *spanCache) nodeTag(node []byte) uint64 {
	return maphash.Bytes(sc.seed, node) & (1<<spanNodeBits - 1)
}

// get returns b's hash and its value, nil when not kept.
func (sc *spanCache) get(b []byte) (uint64, *ast.Term) {
	h := maphash.Bytes(sc.seed, b)
	sh := &sc.shards[h%cacheShards]
	sh.mu.RLock()
	e, ok := sh.m[h]
	sh.mu.RUnlock()
	if ok && bytes.Equal(e.b, b) {
		return h, e.t
	}
	return h, nil
}

// put keeps t as the value of b, whose hash get gave, if a node other
// than node (its nodeTag) had b before and the shard has room.
func (sc *spanCache) put(h, node uint64, b []byte, t *ast.Term) {
	sh := &sc.shards[h%cacheShards]
	const maxShardBytes = maxCacheBytes / cacheShards
	// The value's terms weigh about as much again as the bytes.
	size := 2 * len(b)
	// The low bits chose the shard: the slot comes from the middle ones,
	// what the slot keeps of the hash from the high ones.
	slot := (h >> 8) % spanSeenSlots
	mark := h&^(1<<spanNodeBits-1) | node
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.seen == nil {
		// Made on first need: an audit whose input never comes as
		// bytes (herd check, tests) needs no table.
		sh.seen = make([]uint64, spanSeenSlots)
	}
	prev := sh.seen[slot]
	if prev&^(1<<spanNodeBits-1) != h&^(1<<spanNodeBits-1) || prev == mark {
		// Not seen, or seen on this node only.
		sh.seen[slot] = mark
		return
	}
	if _, exists := sh.m[h]; exists || sh.bytes+size > maxShardBytes {
		return
	}
	sh.bytes += size
	sh.m[h] = spanEntry{b: bytes.Clone(b), t: t}
}
