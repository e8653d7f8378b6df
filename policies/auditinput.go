package policies

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/facts"
)

// AuditInput is what the controls read of one node: input.node,
// input.facts, input.catalog, input.report and input.drift. Its parts are
// the server's own records: the node's latest facts, the catalog it was
// last given, its last real (not noop) run, and what its noop checks
// found differing since. Nothing is null, so that a control needs no
// guard: a nil Catalog is a catalog without resources, a nil Report a
// run with an empty run_id, no events and a zero summary (the server
// usually calls such a node "no data" without evaluating it), a nil
// Drift an empty list.
type AuditInput struct {
	Node    string
	Facts   facts.Facts
	Catalog *catalogs.Catalog
	// CatalogJSON, when not nil, is the catalog's canonical encoding
	// (catalogs.Encode), read instead of Catalog: the server holds the
	// approved catalogs as bytes, and converting those straight to the
	// controls' input costs a fraction of decoding them first. Bytes
	// that do not decode are Evaluate's error.
	CatalogJSON []byte
	Report      *RunReport
	Drift       []Drift
}

// RunReport is a node's last real run as controls read it
// (input.report), drawn from the agent's report (herdv1.Report).
type RunReport struct {
	RunID         string `json:"run_id"`
	Version       string `json:"version"`
	CatalogDigest string `json:"catalog_digest"`
	// StartedUnixMS is when the run started, in Unix milliseconds.
	StartedUnixMS int64      `json:"started_unix_ms"`
	Summary       RunSummary `json:"summary"`
	// Events are the run's events, any or all of them: controls see
	// those whose status is not in-sync (input.report.events), since a
	// resource in sync says nothing the catalog does not, and the
	// summary counts them. A run's events are mostly in sync; leaving
	// them out keeps every control that looks for a failure from
	// scanning the whole catalog again.
	Events []RunEvent `json:"events"`
}

// RunSummary counts a run's events by status (herdv1.Summary).
type RunSummary struct {
	Resources int `json:"resources"`
	InSync    int `json:"in_sync"`
	Changed   int `json:"changed"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Unknown   int `json:"unknown"`
	Refreshed int `json:"refreshed"`
}

// RunEvent is one resource's outcome in a run (herdv1.Event): its id
// ("file:/etc/motd"), type, status (in-sync, changed, failed, skipped,
// unknown), the error of a failed one and the cause of a skipped one.
// The changes are left out: the catalog says what the resource should
// be, and Drift what differs.
type RunEvent struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
	Error  string `json:"error"`
	Cause  string `json:"cause"`
}

// Drift is one resource that the agent's noop checks found differing
// from the catalog (input.drift[_]), with the attributes that differ.
type Drift struct {
	ID    string      `json:"id"`
	Attrs []DriftAttr `json:"attrs"`
}

// DriftAttr is one differing attribute: From is what the host has, To
// what the catalog says, as the agent's plan gives them (a sensitive
// value is already "(sensitive)").
type DriftAttr struct {
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
}

// inSync is the status of a resource a run found as its catalog says.
const inSync = "in-sync"

var (
	keyRunID         = ast.InternedTerm("run_id")
	keyCatalogDigest = ast.InternedTerm("catalog_digest")
	keyStarted       = ast.InternedTerm("started_unix_ms")
	keySummary       = ast.InternedTerm("summary")
	keyEvents        = ast.InternedTerm("events")
	keyInSync        = ast.InternedTerm("in_sync")
	keyFailed        = ast.InternedTerm("failed")
	keySkipped       = ast.InternedTerm("skipped")
	keyUnknown       = ast.InternedTerm("unknown")
	keyRefreshed     = ast.InternedTerm("refreshed")
	keyStatus        = ast.InternedTerm("status")
	keyError         = ast.InternedTerm("error")
	keyCause         = ast.InternedTerm("cause")
)

// inputValue converts in as the gate's inputValue does: facts lazily, a
// part no control reads left null.
func (a *Audit) inputValue(in AuditInput) (ast.Value, error) {
	use := func(k string) bool { return a.uses.reads(k, "") }
	top := map[string]any{"node": ast.String(in.Node)}
	if use("facts") {
		top["facts"] = factsValue(in.Facts)
	}
	if use("catalog") || use("resources") || use("by_type") {
		var (
			v   ast.Value
			err error
		)
		if in.CatalogJSON != nil {
			v, err = catalogBytesValue(in.CatalogJSON, a.spans, a.cache)
		} else {
			c := in.Catalog
			if c == nil {
				c = &catalogs.Catalog{Files: []catalogs.FileRef{}, Resources: []catalogs.Resource{}}
			}
			v, err = catalogValue(c, a.cache)
		}
		if err != nil {
			return nil, fmt.Errorf("input.catalog: %w", err)
		}
		if use("catalog") {
			top["catalog"] = v
		}
		if use("resources") || use("by_type") {
			top["resources"], top["by_type"] = indexResources(v)
		}
	}
	if use("report") {
		top["report"] = reportValue(in.Report, a.uses.reads("report", "events"))
	}
	if use("drift") {
		top["drift"] = driftValue(in.Drift)
	}
	return lazyInput(top, "facts", "catalog", "resources", "by_type", "report", "drift"), nil
}

// reportValue is r as an OPA value, an empty run for nil; its events
// only when some control reads them.
func reportValue(r *RunReport, events bool) ast.Value {
	if r == nil {
		r = &RunReport{}
	}
	s := r.Summary
	summary := ast.ObjectTerm(
		[2]*ast.Term{ast.InternedTerm("resources"), ast.InternedTerm(s.Resources)},
		[2]*ast.Term{keyInSync, ast.InternedTerm(s.InSync)},
		[2]*ast.Term{keyChanged, ast.InternedTerm(s.Changed)},
		[2]*ast.Term{keyFailed, ast.InternedTerm(s.Failed)},
		[2]*ast.Term{keySkipped, ast.InternedTerm(s.Skipped)},
		[2]*ast.Term{keyUnknown, ast.InternedTerm(s.Unknown)},
		[2]*ast.Term{keyRefreshed, ast.InternedTerm(s.Refreshed)},
	)
	var evs []*ast.Term
	if events {
		cv := newConverter()
		for _, e := range r.Events {
			if e.Status == inSync {
				continue
			}
			evs = append(evs, cv.term(ast.NewObject(
				[2]*ast.Term{keyID, cv.str(e.ID)},
				[2]*ast.Term{keyType, cv.name(e.Type)},
				[2]*ast.Term{keyStatus, cv.name(e.Status)},
				[2]*ast.Term{keyError, cv.str(e.Error)},
				[2]*ast.Term{keyCause, cv.str(e.Cause)},
			)))
		}
	}
	return ast.NewObject(
		[2]*ast.Term{keyRunID, ast.StringTerm(r.RunID)},
		[2]*ast.Term{keyVersion, ast.StringTerm(r.Version)},
		[2]*ast.Term{keyCatalogDigest, ast.StringTerm(r.CatalogDigest)},
		[2]*ast.Term{keyStarted, ast.InternedTerm(r.StartedUnixMS)},
		[2]*ast.Term{keySummary, summary},
		[2]*ast.Term{keyEvents, ast.ArrayTerm(evs...)},
	)
}

// driftValue is ds as an OPA array.
func driftValue(ds []Drift) ast.Value {
	cv := newConverter()
	terms := make([]*ast.Term, len(ds))
	for i, d := range ds {
		attrs := make([]*ast.Term, len(d.Attrs))
		for j, at := range d.Attrs {
			attrs[j] = cv.term(ast.NewObject(
				[2]*ast.Term{keyName, cv.name(at.Name)},
				[2]*ast.Term{keyFrom, cv.str(at.From)},
				[2]*ast.Term{keyTo, cv.str(at.To)},
			))
		}
		terms[i] = cv.term(ast.NewObject(
			[2]*ast.Term{keyID, cv.str(d.ID)},
			[2]*ast.Term{keyAttrs, cv.term(ast.NewArray(attrs...))},
		))
	}
	return ast.NewArray(terms...)
}

// indexResources makes input.resources (the catalog's resources by id)
// and input.by_type (its resources by type, in catalog order) of the
// converted catalog, sharing its terms. A control that looks for one
// resource then reads it by id instead of scanning the catalog: with
// 50 controls over 200 resources, the scans were most of a node's
// audit.
func indexResources(catalog ast.Value) (byID, byType ast.Value) {
	obj, _ := catalog.(ast.Object)
	var rs *ast.Array
	if obj != nil {
		if t := obj.Get(keyResources); t != nil {
			rs, _ = t.Value.(*ast.Array)
		}
	}
	if rs == nil {
		return ast.NewObject(), ast.NewObject()
	}
	ids := make([][2]*ast.Term, 0, rs.Len())
	types := map[string][]*ast.Term{}
	var order []string
	rs.Foreach(func(r *ast.Term) {
		ro, ok := r.Value.(ast.Object)
		if !ok {
			return
		}
		if id := ro.Get(keyID); id != nil {
			ids = append(ids, [2]*ast.Term{id, r})
		}
		if t := ro.Get(keyType); t != nil {
			if s, ok := t.Value.(ast.String); ok {
				if _, seen := types[string(s)]; !seen {
					order = append(order, string(s))
				}
				types[string(s)] = append(types[string(s)], r)
			}
		}
	})
	kvs := make([][2]*ast.Term, 0, len(order))
	for _, typ := range order {
		kvs = append(kvs, [2]*ast.Term{ast.StringTerm(typ), ast.ArrayTerm(types[typ]...)})
	}
	return ast.NewObject(ids...), ast.NewObject(kvs...)
}
