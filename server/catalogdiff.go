package server

import (
	"bytes"

	"github.com/herdcm/herd/catalogs"
)

// diffEncoded is catalogs.DiffBrief(Decode(prev), next) that decodes only the
// resources of prev whose bytes differ from next's: a new version usually
// changes a few resources of each node, and decoding a whole 200-resource
// catalog costs more than compiling it. prev is a canonical encoding (the
// store's bytes), nextEnc next's, each with its catalogs.Index when known
// (a catalog read from the store has none): when both indexes hold the
// same ids, the resources are compared in place, and otherwise found by
// scanning both encodings. ok is false when prev is not shaped as
// catalogs.Encode writes it; the caller then decodes it whole.
func diffEncoded(prev []byte, prevIdx *catalogs.Index, nextEnc []byte, nextIdx *catalogs.Index, next *catalogs.Catalog) (catalogs.Change, bool) {
	if len(prevIdx.Spans) > 0 && prevIdx.IDs == nextIdx.IDs && len(prevIdx.Spans) == len(nextIdx.Spans) &&
		len(nextIdx.Spans) == 2*len(next.Resources) && int(prevIdx.Spans[len(prevIdx.Spans)-1]) <= len(prev) {
		// The same resources in the same order, where both indexes say:
		// compare them in place, without scanning either encoding.
		var oldRaw [][]byte
		sub := &catalogs.Catalog{}
		for k := 0; k < len(next.Resources); k++ {
			p := prev[prevIdx.Spans[2*k]:prevIdx.Spans[2*k+1]]
			if !bytes.Equal(p, nextEnc[nextIdx.Spans[2*k]:nextIdx.Spans[2*k+1]]) {
				oldRaw = append(oldRaw, p)
				sub.Resources = append(sub.Resources, next.Resources[k])
			}
		}
		return diffRaw(oldRaw, sub)
	}
	pIDs, pRaw, ok := rawResources(prev)
	if !ok {
		return catalogs.Change{}, false
	}
	nIDs, nRaw, ok := rawResources(nextEnc)
	if !ok || len(nIDs) != len(next.Resources) {
		return catalogs.Change{}, false
	}
	// Both lists are sorted by id: walk them together, keeping what
	// differs.
	var oldRaw [][]byte
	sub := &catalogs.Catalog{}
	i, j := 0, 0
	for i < len(pIDs) || j < len(nIDs) {
		switch {
		case j == len(nIDs) || i < len(pIDs) && pIDs[i] < nIDs[j]:
			oldRaw = append(oldRaw, pRaw[i])
			i++
		case i == len(pIDs) || nIDs[j] < pIDs[i]:
			sub.Resources = append(sub.Resources, next.Resources[j])
			j++
		default:
			if next.Resources[j].ID != nIDs[j] {
				return catalogs.Change{}, false
			}
			if !bytes.Equal(pRaw[i], nRaw[j]) {
				oldRaw = append(oldRaw, pRaw[i])
				sub.Resources = append(sub.Resources, next.Resources[j])
			}
			i++
			j++
		}
	}
	return diffRaw(oldRaw, sub)
}

// diffRaw is the brief change from the resources oldRaw (their canonical
// bytes, removed or changed) to sub (those added or changed).
func diffRaw(oldRaw [][]byte, sub *catalogs.Catalog) (catalogs.Change, bool) {
	old := &catalogs.Catalog{}
	if len(oldRaw) > 0 {
		var b bytes.Buffer
		b.WriteString(`{"environment":"","files":[],"node":"","resources":[`)
		b.Write(bytes.Join(oldRaw, []byte(",")))
		b.WriteString(`],"version":""}`)
		var err error
		if old, err = catalogs.Decode(b.Bytes()); err != nil {
			return catalogs.Change{}, false
		}
	}
	return catalogs.DiffBrief(old, sub), true
}

// rawResources splits a canonical catalog's resources into their ids and
// bytes, in order, without decoding them. ok is false for anything not
// shaped as catalogs.Encode writes it, or an id with an escape in it.
func rawResources(b []byte) (ids []string, raws [][]byte, ok bool) {
	// The top-level keys before "resources" are environment, files (a
	// list of objects with digest, path and size) and node: the first
	// unescaped `,"resources":[` is the top-level one.
	k := bytes.Index(b, []byte(`,"resources":[`))
	if k < 0 {
		return nil, nil, false
	}
	p := k + len(`,"resources":[`)
	for p < len(b) && b[p] != ']' {
		if b[p] == ',' && len(raws) > 0 {
			p++
		}
		if p >= len(b) || b[p] != '{' {
			return nil, nil, false
		}
		end, id, ok := scanResource(b, p)
		if !ok {
			return nil, nil, false
		}
		ids, raws = append(ids, id), append(raws, b[p:end])
		p = end
	}
	if p >= len(b) {
		return nil, nil, false
	}
	return ids, raws, true
}

// scanResource scans the object starting at b[start] ('{') to its end and
// returns the index after it and the value of its top-level "id" key.
func scanResource(b []byte, start int) (end int, id string, ok bool) {
	depth, inString, escaped := 0, false, false
	keyStart := -1  // where a top-level key's string starts
	last := byte(0) // the last structural byte at depth 1
	for i := start; i < len(b); i++ {
		c := b[i]
		switch {
		case escaped:
			escaped = false
		case inString:
			if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
				if keyStart >= 0 && string(b[keyStart+1:i]) == "id" && i+2 < len(b) && b[i+1] == ':' && b[i+2] == '"' {
					v := i + 3
					e := bytes.IndexByte(b[v:], '"')
					if e < 0 || bytes.IndexByte(b[v:v+e], '\\') >= 0 {
						return 0, "", false
					}
					id = string(b[v : v+e])
				}
				keyStart = -1
			}
		case c == '"':
			inString = true
			if depth == 1 && (last == '{' || last == ',') {
				keyStart = i
			}
			last = 0
		case c == '{' || c == '[':
			depth++
			if depth == 1 {
				last = c
			}
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1, id, id != ""
			}
		case depth == 1 && (c == ',' || c == ':'):
			last = c
		}
	}
	return 0, "", false
}
