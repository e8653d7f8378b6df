package policies

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// The input is built as OPA values directly, without a JSON encoding and
// decoding in between: converting each node's catalog is most of a gate's
// cost. Its shape is the canonical JSON of each part (catalogs.Catalog's
// encoding, catalogs.Change's and Fleet's JSON), except that input.change
// always has its three lists and input.fleet its two maps, empty or not,
// so that count(input.change.added) is 0 rather than undefined.

var keyNode = ast.InternedTerm("node")

// inputValue converts in. Facts are converted lazily (ast.LazyObject):
// most gates read a fact or two of a large tree. A top-level key that no
// policy reads is left null rather than converted: most gates never look
// at input.previous, a whole second catalog.
func (g *Gate) inputValue(in Input) (ast.Value, error) {
	use := func(k string) bool { return g.uses.reads(k, "") }
	// The input object itself is lazy: an OPA object hashes its values
	// when built, which would convert the whole facts tree. Each part
	// below is an ast.Value (kept as is when read) but facts, a Go map
	// converted a key at a time as rules read it.
	top := map[string]any{"node": ast.String(in.Node)}
	if use("facts") {
		top["facts"] = factsValue(in.Facts)
	}
	if use("catalog") {
		v, err := catalogValue(in.Catalog, g.cache)
		if err != nil {
			return nil, fmt.Errorf("input.catalog: %w", err)
		}
		top["catalog"] = v
	}
	if use("previous") {
		v, err := catalogValue(in.Previous, g.cache)
		if err != nil {
			return nil, fmt.Errorf("input.previous: %w", err)
		}
		top["previous"] = v
	}
	if use("change") {
		v, err := changeValue(in.Change, g.uses)
		if err != nil {
			return nil, fmt.Errorf("input.change: %w", err)
		}
		top["change"] = v
	}
	if use("fleet") {
		top["fleet"] = g.fleet.value(in.Fleet)
	}
	if use("judge") {
		v, err := resourcesValue(toJudge(in), g.cache)
		if err != nil {
			return nil, fmt.Errorf("input.judge: %w", err)
		}
		top["judge"] = v
	}
	return lazyInput(top, "facts", "catalog", "previous", "change", "fleet", "judge"), nil
}

// factsValue is f as input.facts: a Go map that the lazy input object
// converts a key at a time as rules read it; an empty object for none.
func factsValue(f facts.Facts) any {
	if f == nil {
		return ast.NewObject()
	}
	return map[string]any(f)
}

// lazyInput is top as the input object, each of parts that top lacks (no
// rule reads it) set to null, which keeps the input's shape.
func lazyInput(top map[string]any, parts ...string) ast.Value {
	for _, k := range parts {
		if _, ok := top[k]; !ok {
			top[k] = ast.NullValue
		}
	}
	return ast.LazyObject(top)
}

var (
	keyEnvironment = ast.InternedTerm("environment")
	keyFiles       = ast.InternedTerm("files")
	keyResources   = ast.InternedTerm("resources")
	keyVersion     = ast.InternedTerm("version")
	keyDigest      = ast.InternedTerm("digest")
	keyPath        = ast.InternedTerm("path")
	keySize        = ast.InternedTerm("size")
	keyAttrs       = ast.InternedTerm("attrs")
	keySensitive   = ast.InternedTerm("sensitive")
	keyID          = ast.InternedTerm("id")
	keyName        = ast.InternedTerm("name")
	keyNotify      = ast.InternedTerm("notify")
	keyRequire     = ast.InternedTerm("require")
	keySource      = ast.InternedTerm("source")
	keyType        = ast.InternedTerm("type")
	keyAdded       = ast.InternedTerm("added")
	keyRemoved     = ast.InternedTerm("removed")
	keyChanged     = ast.InternedTerm("changed")
	keyFrom        = ast.InternedTerm("from")
	keyTo          = ast.InternedTerm("to")
	keyDiff        = ast.InternedTerm("diff")
)

// converter builds OPA values with few allocations: terms come from
// slabs, and the strings that repeat across a catalog (attribute names,
// types) are one term each. Converting catalogs is most of a gate's cost.
type converter struct {
	names map[string]*ast.Term
	slab  []ast.Term
	kvs   [][2]*ast.Term // scratch: NewObject copies what it keeps
}

func newConverter() *converter { return &converter{names: map[string]*ast.Term{}} }

func (cv *converter) term(v ast.Value) *ast.Term {
	if len(cv.slab) == 0 {
		cv.slab = make([]ast.Term, 64)
	}
	t := &cv.slab[0]
	cv.slab = cv.slab[1:]
	t.Value = v
	return t
}

func (cv *converter) str(s string) *ast.Term { return cv.term(ast.String(s)) }

// name is s as a term shared by every use in this conversion.
func (cv *converter) name(s string) *ast.Term {
	if t, ok := cv.names[s]; ok {
		return t
	}
	t := ast.StringTerm(s)
	cv.names[s] = t
	return t
}

// value converts an attribute value. The shapes compile produces
// (string, int64, bool, []string, map[string]string) are converted
// directly; anything else goes through ast.InterfaceToValue, which
// handles JSON's shapes and sends the rest through encoding/json, as the
// canonical encoding does.
func (cv *converter) value(v any) (*ast.Term, error) {
	switch v := v.(type) {
	case string:
		return cv.str(v), nil
	case int64:
		return ast.InternedTerm(v), nil
	case bool:
		return ast.InternedTerm(v), nil
	case []string:
		if v == nil {
			return ast.NullTerm(), nil
		}
		ts := make([]*ast.Term, len(v))
		for i, s := range v {
			ts[i] = cv.str(s)
		}
		return cv.term(ast.NewArray(ts...)), nil
	case map[string]string:
		if v == nil {
			return ast.NullTerm(), nil
		}
		kvs := make([][2]*ast.Term, 0, len(v))
		for k, s := range v {
			kvs = append(kvs, [2]*ast.Term{cv.str(k), cv.str(s)})
		}
		return cv.term(ast.NewObject(kvs...)), nil
	case catalogs.Sealed:
		return sensitiveTerm(v), nil
	}
	av, err := ast.InterfaceToValue(v)
	if err != nil {
		return nil, err
	}
	return cv.term(av), nil
}

// sensitiveTerm is a sensitive value as policies see it (a
// catalogs.SensitiveView): {"sensitive": true, "digest": "hmac-sha256:…"}
// for a sealed one, so that a gate or an audit can ask whether it is set
// and whether it changed, and never the value or its box.
func sensitiveTerm(v any) *ast.Term {
	kvs := [][2]*ast.Term{{keySensitive, ast.InternedTerm(true)}}
	if s, ok := v.(catalogs.Sealed); ok {
		kvs = append(kvs, [2]*ast.Term{keyDigest, ast.StringTerm(s.Digest)})
	}
	return ast.ObjectTerm(kvs...)
}

// catalogValue is c's canonical JSON shape as an OPA value; nil is null.
// Resources found in cache (which may be nil) are not converted again.
func catalogValue(c *catalogs.Catalog, cache *resourceCache) (ast.Value, error) {
	if c == nil {
		return ast.NullValue, nil
	}
	cv := newConverter()
	var files ast.Value = ast.NullValue
	if c.Files != nil {
		terms := make([]*ast.Term, len(c.Files))
		for i, f := range c.Files {
			terms[i] = cv.term(ast.NewObject(
				[2]*ast.Term{keyDigest, cv.str(f.Digest)},
				[2]*ast.Term{keyPath, cv.str(f.Path)},
				[2]*ast.Term{keySize, ast.InternedTerm(f.Size)},
			))
		}
		files = ast.NewArray(terms...)
	}
	var resources ast.Value = ast.NullValue
	if c.Resources != nil {
		rs := make([]*catalogs.Resource, len(c.Resources))
		for i := range c.Resources {
			rs[i] = &c.Resources[i]
		}
		var err error
		if resources, err = cv.resources(rs, cache); err != nil {
			return nil, err
		}
	}
	return ast.NewObject(
		[2]*ast.Term{keyEnvironment, cv.str(c.Environment)},
		[2]*ast.Term{keyFiles, cv.term(files)},
		[2]*ast.Term{keyNode, cv.str(c.Node)},
		[2]*ast.Term{keyResources, cv.term(resources)},
		[2]*ast.Term{keyVersion, cv.str(c.Version)},
	), nil
}

// resourcesValue is rs as an OPA array.
func resourcesValue(rs []*catalogs.Resource, cache *resourceCache) (ast.Value, error) {
	return newConverter().resources(rs, cache)
}

// resources converts rs to an array. Resources found in cache (which may
// be nil) are not converted again.
func (cv *converter) resources(rs []*catalogs.Resource, cache *resourceCache) (ast.Value, error) {
	terms := make([]*ast.Term, len(rs))
	for i, r := range rs {
		var (
			h         uint64
			size      int
			cacheable bool
		)
		if cache != nil {
			var t *ast.Term
			if t, h, size, cacheable = cache.get(r); t != nil {
				terms[i] = t
				continue
			}
		}
		v, err := cv.resource(r)
		if err != nil {
			return nil, err
		}
		terms[i] = cv.term(v)
		if cacheable {
			cache.put(h, size, r, terms[i])
		}
	}
	return ast.NewArray(terms...), nil
}

// toJudge lists the resources of in's catalog that input.judge holds:
// all of them, or when in.Judged only those in.Change adds or changes.
func toJudge(in Input) []*catalogs.Resource {
	if in.Catalog == nil {
		return nil
	}
	rs := make([]*catalogs.Resource, 0, len(in.Catalog.Resources))
	if !in.Judged {
		for i := range in.Catalog.Resources {
			rs = append(rs, &in.Catalog.Resources[i])
		}
		return rs
	}
	fresh := freshIDs(in.Change)
	for i := range in.Catalog.Resources {
		if r := &in.Catalog.Resources[i]; fresh[r.ID] {
			rs = append(rs, r)
		}
	}
	return rs
}

// JudgeOnly returns cat with only the resources ch adds or changes, and
// no files: all a gate that reads input.judge, and not input.catalog,
// needs of a node whose catalog was judged before (Input.Judged). A
// caller holding many nodes' catalogs for the gate keeps this instead.
func JudgeOnly(cat *catalogs.Catalog, ch catalogs.Change) *catalogs.Catalog {
	fresh := freshIDs(ch)
	out := *cat
	out.Files = nil
	out.Resources = make([]catalogs.Resource, 0, len(fresh))
	for _, r := range cat.Resources {
		if fresh[r.ID] {
			out.Resources = append(out.Resources, r)
		}
	}
	return &out
}

// freshIDs is the set of resource ids ch adds or changes.
func freshIDs(ch catalogs.Change) map[string]bool {
	fresh := make(map[string]bool, len(ch.Added)+len(ch.Changed))
	for _, rc := range ch.Added {
		fresh[rc.ID] = true
	}
	for _, rc := range ch.Changed {
		fresh[rc.ID] = true
	}
	return fresh
}

func (cv *converter) resource(r *catalogs.Resource) (ast.Value, error) {
	attrs := ast.NullTerm()
	if r.Attrs != nil {
		cv.kvs = cv.kvs[:0]
		for k, v := range r.Attrs {
			var t *ast.Term
			var err error
			if catalogs.SensitiveAttr(r.Type, k) {
				t = sensitiveTerm(v)
			} else {
				t, err = cv.value(v)
			}
			if err != nil {
				return nil, fmt.Errorf("resource %s: attribute %s: %w", r.ID, k, err)
			}
			cv.kvs = append(cv.kvs, [2]*ast.Term{cv.name(k), t})
		}
		attrs = cv.term(ast.NewObject(cv.kvs...))
	}
	cv.kvs = append(cv.kvs[:0],
		[2]*ast.Term{keyAttrs, attrs},
		[2]*ast.Term{keyID, cv.str(r.ID)},
		[2]*ast.Term{keyName, cv.str(r.Name)},
		[2]*ast.Term{keySource, cv.str(r.Source)},
		[2]*ast.Term{keyType, cv.name(r.Type)},
	)
	// As in the canonical encoding, empty edge lists are left out.
	if len(r.Notify) > 0 {
		t, _ := cv.value(r.Notify)
		cv.kvs = append(cv.kvs, [2]*ast.Term{keyNotify, t})
	}
	if len(r.Require) > 0 {
		t, _ := cv.value(r.Require)
		cv.kvs = append(cv.kvs, [2]*ast.Term{keyRequire, t})
	}
	return ast.NewObject(cv.kvs...), nil
}

// changeValue converts c, leaving empty the lists no rule reads: a new
// node's change has every resource of its catalog added.
func changeValue(c catalogs.Change, uses inputUse) (ast.Value, error) {
	cv := newConverter()
	lists := [3]*ast.Term{}
	for i, rcs := range [3][]catalogs.ResourceChange{c.Added, c.Removed, c.Changed} {
		if !uses.reads("change", [3]string{"added", "removed", "changed"}[i]) {
			rcs = nil
		}
		terms := make([]*ast.Term, len(rcs))
		for j, rc := range rcs {
			kvs := make([][2]*ast.Term, 0, 4)
			kvs = append(kvs,
				[2]*ast.Term{keyID, ast.StringTerm(rc.ID)},
				[2]*ast.Term{keyType, ast.StringTerm(rc.Type)},
				[2]*ast.Term{keyName, ast.StringTerm(rc.Name)},
			)
			if len(rc.Attrs) > 0 {
				attrs := make([]*ast.Term, len(rc.Attrs))
				for k, a := range rc.Attrs {
					akvs := make([][2]*ast.Term, 0, 4)
					akvs = append(akvs, [2]*ast.Term{keyName, ast.StringTerm(a.Name)})
					// omitempty, as catalogs.AttrChange's JSON.
					if a.From != nil {
						v, err := cv.value(a.From)
						if err != nil {
							return nil, fmt.Errorf("%s: attribute %s: %w", rc.ID, a.Name, err)
						}
						akvs = append(akvs, [2]*ast.Term{keyFrom, v})
					}
					if a.To != nil {
						v, err := cv.value(a.To)
						if err != nil {
							return nil, fmt.Errorf("%s: attribute %s: %w", rc.ID, a.Name, err)
						}
						akvs = append(akvs, [2]*ast.Term{keyTo, v})
					}
					if a.Diff != "" {
						akvs = append(akvs, [2]*ast.Term{keyDiff, ast.StringTerm(a.Diff)})
					}
					attrs[k] = ast.ObjectTerm(akvs...)
				}
				kvs = append(kvs, [2]*ast.Term{keyAttrs, ast.ArrayTerm(attrs...)})
			}
			terms[j] = ast.ObjectTerm(kvs...)
		}
		lists[i] = ast.ArrayTerm(terms...)
	}
	return ast.NewObject(
		[2]*ast.Term{keyAdded, lists[0]},
		[2]*ast.Term{keyRemoved, lists[1]},
		[2]*ast.Term{keyChanged, lists[2]},
	), nil
}

// fleetCache keeps the value of the last *Fleet converted: a rollout
// gates every node against the same summary.
type fleetCache struct {
	mu    sync.Mutex
	fleet *Fleet
	val   ast.Value
}

func (fc *fleetCache) value(f *Fleet) ast.Value {
	if f == nil {
		return ast.NullValue
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.fleet == f {
		return fc.val
	}
	fc.fleet, fc.val = f, fleetValue(f)
	return fc.val
}

var (
	keyPreviousVersion = ast.InternedTerm("previous_version")
	keyNodes           = ast.InternedTerm("nodes")
	keyChanging        = ast.InternedTerm("changing")
	keyPackages        = ast.InternedTerm("packages")
	keyVersions        = ast.InternedTerm("versions")
)

func fleetValue(f *Fleet) ast.Value {
	res := make([][2]*ast.Term, 0, len(f.Resources))
	for _, id := range slices.Sorted(maps.Keys(f.Resources)) {
		rc := f.Resources[id]
		res = append(res, [2]*ast.Term{ast.StringTerm(id), ast.ObjectTerm(
			[2]*ast.Term{keyAdded, ast.InternedTerm(rc.Added)},
			[2]*ast.Term{keyRemoved, ast.InternedTerm(rc.Removed)},
			[2]*ast.Term{keyChanged, ast.InternedTerm(rc.Changed)},
		)})
	}
	pkgs := make([][2]*ast.Term, 0, len(f.Packages))
	for _, name := range slices.Sorted(maps.Keys(f.Packages)) {
		pc := f.Packages[name]
		vs := make([][2]*ast.Term, 0, len(pc.Versions))
		for _, v := range slices.Sorted(maps.Keys(pc.Versions)) {
			vs = append(vs, [2]*ast.Term{ast.StringTerm(v), ast.InternedTerm(pc.Versions[v])})
		}
		pkgs = append(pkgs, [2]*ast.Term{ast.StringTerm(name), ast.ObjectTerm(
			[2]*ast.Term{keyNodes, ast.InternedTerm(pc.Nodes)},
			[2]*ast.Term{keyVersions, ast.ObjectTerm(vs...)},
		)})
	}
	return ast.NewObject(
		[2]*ast.Term{keyVersion, ast.StringTerm(f.Version)},
		[2]*ast.Term{keyPreviousVersion, ast.StringTerm(f.PreviousVersion)},
		[2]*ast.Term{keyNodes, ast.InternedTerm(f.Nodes)},
		[2]*ast.Term{keyChanging, ast.InternedTerm(f.Changing)},
		[2]*ast.Term{keyResources, ast.ObjectTerm(res...)},
		[2]*ast.Term{keyPackages, ast.ObjectTerm(pkgs...)},
	)
}
