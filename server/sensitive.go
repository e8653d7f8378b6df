package server

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/server/dashboard"
)

// clearSensitive clears the values of a report's sensitive changes at the
// server's door. The agent's engine never fills them; this holds for an
// agent that would, so that the store, the CLI, the dashboard and the API
// never hold one.
func clearSensitive(cs []*herdv1.Change) {
	for _, c := range cs {
		if c.GetSensitive() {
			c.From, c.To, c.Diff = "", "", ""
		}
	}
}

// viewAttrs returns r's attributes as views show them: a sealed value, or
// one sensitive by nature, as catalogs.SensitiveView. It returns r.Attrs
// itself when nothing in it is sensitive.
func viewAttrs(r *catalogs.Resource) map[string]any {
	var out map[string]any
	for k, v := range r.Attrs {
		if !catalogs.IsSensitive(v) && !catalogs.SensitiveAttr(r.Type, k) {
			continue
		}
		if out == nil {
			out = make(map[string]any, len(r.Attrs))
			for k2, v2 := range r.Attrs {
				out[k2] = v2
			}
		}
		out[k] = catalogs.SensitiveView(v)
	}
	if out == nil {
		return r.Attrs
	}
	return out
}

// catalogView is a catalog's JSON as the HTTP API shows it: its canonical
// shape with every sensitive value as catalogs.SensitiveView, so that a
// reader sees which values are set and whether they changed (the digest),
// and never a value or the box sealed to the node.
func catalogView(b []byte) (json.RawMessage, error) {
	c, err := catalogs.Decode(b)
	if err != nil {
		return nil, err
	}
	for i := range c.Resources {
		c.Resources[i].Attrs = viewAttrs(&c.Resources[i])
	}
	out, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding the catalog: %w", err)
	}
	return out, nil
}

// resourceAttrs lists r's attributes for the dashboard, a sensitive one
// as "(sensitive)" with its digest (when sealed).
func resourceAttrs(r *catalogs.Resource) []dashboard.Fact {
	plain := make(map[string]any, len(r.Attrs))
	var hidden []dashboard.Fact
	for k, v := range r.Attrs {
		if catalogs.IsSensitive(v) || catalogs.SensitiveAttr(r.Type, k) {
			val := catalogs.SensitiveText
			if d, _ := catalogs.IsSensitiveView(catalogs.SensitiveView(v)); d != "" {
				val += " " + d
			}
			hidden = append(hidden, dashboard.Fact{Path: k, Value: val})
			continue
		}
		plain[k] = v
	}
	out := flattenFacts(plain)
	if len(hidden) == 0 {
		return out
	}
	out = append(out, hidden...)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
