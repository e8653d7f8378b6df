package policies

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/herdcm/herd/catalogs"
)

// The input is built as OPA values directly, without a JSON encoding and
// decoding in between: converting each node's catalog is most of a gate's
// cost. Its shape is the canonical JSON of each part (catalogs.Catalog's
// encoding, catalogs.Change's and Fleet's JSON), except that input.change
// always has its three lists and input.fleet its two maps, empty or not,
// so that count(input.change.added) is 0 rather than undefined.

var (
	keyNode     = ast.InternedTerm("node")
	keyFacts    = ast.InternedTerm("facts")
	keyCatalog  = ast.InternedTerm("catalog")
	keyPrevious = ast.InternedTerm("previous")
	keyChange   = ast.InternedTerm("change")
	keyFleet    = ast.InternedTerm("fleet")
)

// inputValue converts in. Facts are converted lazily (ast.LazyObject):
// most gates read a fact or two of a large tree.
func (g *Gate) inputValue(in Input) (ast.Value, error) {
	var facts ast.Value = ast.NewObject()
	if in.Facts != nil {
		facts = ast.LazyObject(in.Facts)
	}
	cat, err := catalogValue(in.Catalog)
	if err != nil {
		return nil, fmt.Errorf("input.catalog: %w", err)
	}
	prev, err := catalogValue(in.Previous)
	if err != nil {
		return nil, fmt.Errorf("input.previous: %w", err)
	}
	change, err := changeValue(in.Change)
	if err != nil {
		return nil, fmt.Errorf("input.change: %w", err)
	}
	return ast.NewObject(
		[2]*ast.Term{keyNode, ast.StringTerm(in.Node)},
		[2]*ast.Term{keyFacts, ast.NewTerm(facts)},
		[2]*ast.Term{keyCatalog, ast.NewTerm(cat)},
		[2]*ast.Term{keyPrevious, ast.NewTerm(prev)},
		[2]*ast.Term{keyChange, ast.NewTerm(change)},
		[2]*ast.Term{keyFleet, ast.NewTerm(g.fleet.value(in.Fleet))},
	), nil
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

// catalogValue is c's canonical JSON shape as an OPA value; nil is null.
func catalogValue(c *catalogs.Catalog) (ast.Value, error) {
	if c == nil {
		return ast.NullValue, nil
	}
	var files ast.Value = ast.NullValue
	if c.Files != nil {
		terms := make([]*ast.Term, len(c.Files))
		for i, f := range c.Files {
			terms[i] = ast.ObjectTerm(
				[2]*ast.Term{keyDigest, ast.StringTerm(f.Digest)},
				[2]*ast.Term{keyPath, ast.StringTerm(f.Path)},
				[2]*ast.Term{keySize, ast.InternedTerm(f.Size)},
			)
		}
		files = ast.NewArray(terms...)
	}
	var resources ast.Value = ast.NullValue
	if c.Resources != nil {
		terms := make([]*ast.Term, len(c.Resources))
		for i := range c.Resources {
			v, err := resourceValue(&c.Resources[i])
			if err != nil {
				return nil, err
			}
			terms[i] = ast.NewTerm(v)
		}
		resources = ast.NewArray(terms...)
	}
	return ast.NewObject(
		[2]*ast.Term{keyEnvironment, ast.StringTerm(c.Environment)},
		[2]*ast.Term{keyFiles, ast.NewTerm(files)},
		[2]*ast.Term{keyNode, ast.StringTerm(c.Node)},
		[2]*ast.Term{keyResources, ast.NewTerm(resources)},
		[2]*ast.Term{keyVersion, ast.StringTerm(c.Version)},
	), nil
}

func resourceValue(r *catalogs.Resource) (ast.Value, error) {
	var attrs ast.Value = ast.NullValue
	if r.Attrs != nil {
		kvs := make([][2]*ast.Term, 0, len(r.Attrs))
		for k, v := range r.Attrs {
			av, err := anyValue(v)
			if err != nil {
				return nil, fmt.Errorf("resource %s: attribute %s: %w", r.ID, k, err)
			}
			kvs = append(kvs, [2]*ast.Term{ast.StringTerm(k), ast.NewTerm(av)})
		}
		attrs = ast.NewObject(kvs...)
	}
	kvs := make([][2]*ast.Term, 0, 7)
	kvs = append(kvs,
		[2]*ast.Term{keyAttrs, ast.NewTerm(attrs)},
		[2]*ast.Term{keyID, ast.StringTerm(r.ID)},
		[2]*ast.Term{keyName, ast.StringTerm(r.Name)},
		[2]*ast.Term{keySource, ast.StringTerm(r.Source)},
		[2]*ast.Term{keyType, ast.StringTerm(r.Type)},
	)
	// As in the canonical encoding, empty edge lists are left out.
	if len(r.Notify) > 0 {
		kvs = append(kvs, [2]*ast.Term{keyNotify, stringsTerm(r.Notify)})
	}
	if len(r.Require) > 0 {
		kvs = append(kvs, [2]*ast.Term{keyRequire, stringsTerm(r.Require)})
	}
	return ast.NewObject(kvs...), nil
}

func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

// anyValue converts an attribute or fact value. The shapes compile
// produces (string, int64, bool, []string, map[string]string) and those
// JSON decoding produces are converted directly; anything else goes
// through encoding/json, as in the canonical encoding.
func anyValue(v any) (ast.Value, error) {
	return ast.InterfaceToValue(v)
}

func changeValue(c catalogs.Change) (ast.Value, error) {
	lists := [3]*ast.Term{}
	for i, rcs := range [3][]catalogs.ResourceChange{c.Added, c.Removed, c.Changed} {
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
						v, err := anyValue(a.From)
						if err != nil {
							return nil, fmt.Errorf("%s: attribute %s: %w", rc.ID, a.Name, err)
						}
						akvs = append(akvs, [2]*ast.Term{keyFrom, ast.NewTerm(v)})
					}
					if a.To != nil {
						v, err := anyValue(a.To)
						if err != nil {
							return nil, fmt.Errorf("%s: attribute %s: %w", rc.ID, a.Name, err)
						}
						akvs = append(akvs, [2]*ast.Term{keyTo, ast.NewTerm(v)})
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
