package catalogs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Catalog is the compiled desired state of one node at one site version.
// It is the one representation that crosses every door: policies read it,
// the store keeps it, the server signs its canonical bytes, the agent
// applies it and diffs compare two of them.
//
// Field order is alphabetical so that the canonical encoding has sorted keys
// throughout (encoding/json already sorts map keys). A catalog carries no
// compile time: compile is pure, and the same inputs give the same bytes.
type Catalog struct {
	Environment string     `json:"environment"`
	Files       []FileRef  `json:"files"`     // sorted by Digest
	Node        string     `json:"node"`      // the node's certificate name
	Resources   []Resource `json:"resources"` // sorted by ID
	Version     string     `json:"version"`   // the site version it was compiled from
}

// FileRef is a static file the catalog ships. Agents fetch contents by
// digest; Path is where the file lives in the site, for masterless apply.
type FileRef struct {
	Digest string `json:"digest"` // "sha256:<hex>"
	Path   string `json:"path"`   // relative to the site root, e.g. "files/motd"
	Size   int64  `json:"size"`
}

// Resource is one managed thing, referred to as "type:name".
//
// Require lists every resource this one must wait for, whatever produced the
// edge (require, subscribe, the other side's before or notify, or an
// implicit edge such as a file's parent directory). Notify lists the
// resources to refresh when this one changes (notify, or the other side's
// subscribe). Both are sorted and free of duplicates.
type Resource struct {
	Attrs   map[string]any `json:"attrs"`
	ID      string         `json:"id"`
	Name    string         `json:"name"`
	Notify  []string       `json:"notify,omitempty"`
	Require []string       `json:"require,omitempty"`
	Source  string         `json:"source"` // where it was declared: "roles/web.toml:12"
	Type    string         `json:"type"`
}

// Digest returns "sha256:<hex>" of data, the form used for catalog etags and
// file contents alike.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Decode parses a canonical catalog. Numbers come back as int64 (never
// float64) so that decoding and encoding again yields the same bytes.
func Decode(data []byte) (*Catalog, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decoding catalog: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decoding catalog: trailing data after the catalog")
	}
	for i := range c.Resources {
		r := &c.Resources[i]
		for k, v := range r.Attrs {
			nv, err := normalizeJSON(v)
			if err != nil {
				return nil, fmt.Errorf("decoding catalog: resource %s: attribute %s: %w", r.ID, k, err)
			}
			r.Attrs[k] = nv
		}
		if r.Attrs == nil {
			r.Attrs = map[string]any{}
		}
	}
	return &c, nil
}

// normalizeJSON turns decoded JSON into the value shapes compile produces:
// json.Number → int64, []any of strings → []string, objects of strings →
// map[string]string, and {"sealed":{…}} → Sealed.
func normalizeJSON(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return nil, fmt.Errorf("number %s is not an integer", v)
		}
		return n, nil
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("list element %d is %T, want string", i, e)
			}
			out[i] = s
		}
		return out, nil
	case map[string]any:
		if s, ok, err := sealedFromJSON(v); ok || err != nil {
			return s, err
		}
		out := make(map[string]string, len(v))
		for k, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("table value %q is %T, want string", k, e)
			}
			out[k] = s
		}
		return out, nil
	}
	return v, nil
}

// Resource returns the resource with the given id.
func (c *Catalog) Resource(id string) (*Resource, bool) {
	lo, hi := 0, len(c.Resources)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c.Resources[m].ID < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(c.Resources) && c.Resources[lo].ID == id {
		return &c.Resources[lo], true
	}
	return nil, false
}

// String returns the string attribute k, or "" when it is unset.
func (r *Resource) String(k string) string {
	s, _ := r.Attrs[k].(string)
	return s
}

// Int returns the integer attribute k and whether it is set.
func (r *Resource) Int(k string) (int64, bool) {
	switch v := r.Attrs[k].(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case float64:
		if v == math.Trunc(v) {
			return int64(v), true
		}
	}
	return 0, false
}

// Bool returns the boolean attribute k, or false when it is unset.
func (r *Resource) Bool(k string) bool {
	b, _ := r.Attrs[k].(bool)
	return b
}

// Strings returns the list attribute k, or nil when it is unset.
func (r *Resource) Strings(k string) []string {
	s, _ := r.Attrs[k].([]string)
	return s
}

// StringMap returns the table attribute k, or nil when it is unset.
func (r *Resource) StringMap(k string) map[string]string {
	m, _ := r.Attrs[k].(map[string]string)
	return m
}

// Has reports whether attribute k is set.
func (r *Resource) Has(k string) bool {
	_, ok := r.Attrs[k]
	return ok
}

// SplitID splits "type:name" into its parts.
func SplitID(id string) (typ, name string, ok bool) {
	return strings.Cut(id, ":")
}
