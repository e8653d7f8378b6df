package catalogs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Encode returns the canonical encoding of c: compact JSON with sorted keys
// and no HTML escaping, byte for byte what encoding/json produces for the
// same value with SetEscapeHTML(false). The digest and the server's
// signature cover exactly these bytes.
//
// It is written by hand because the server encodes every node's catalog on
// every site change and reflection over map[string]any is most of that
// cost; TestEncodeMatchesJSON and FuzzEncode hold it to encoding/json.
func (c *Catalog) Encode() ([]byte, error) {
	b, _, err := c.encode(false)
	return b, err
}

// DecodeHead reads a catalog's environment and file list from its
// encoding. The canonical encoding puts both before the node and the
// resources, so only the first bytes are read: a server taking a release
// or warming its cache needs the file list of every node's catalog, and
// decoding whole catalogs for it was most of a follower server's CPU in a
// 10,000-node release. Any other order (a catalog encoded elsewhere) is
// decoded whole, so that the answer never depends on the order.
func DecodeHead(b []byte) (env string, files []FileRef, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return decodeHeadWhole(b)
	}
	var seenEnv, seenFiles bool
	for !seenEnv || !seenFiles {
		t, err := dec.Token()
		if err != nil {
			return decodeHeadWhole(b)
		}
		switch t {
		case "environment":
			if seenEnv || seenFiles || dec.Decode(&env) != nil {
				return decodeHeadWhole(b)
			}
			seenEnv = true
		case "files":
			if !seenEnv || seenFiles || dec.Decode(&files) != nil {
				return decodeHeadWhole(b)
			}
			seenFiles = true
		default:
			return decodeHeadWhole(b)
		}
	}
	return env, files, nil
}

// decodeHeadWhole is DecodeHead for any encoding: a full decode.
func decodeHeadWhole(b []byte) (string, []FileRef, error) {
	var head struct {
		Environment string    `json:"environment"`
		Files       []FileRef `json:"files"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return "", nil, fmt.Errorf("decoding a catalog's file list: %w", err)
	}
	return head.Environment, head.Files, nil
}

// Index locates each resource in a catalog's canonical encoding, so that
// two encodings can be compared resource by resource without parsing
// them: a new version changes a few resources of most nodes, and scanning
// both encodings of every node to find them cost a third of the diff.
type Index struct {
	// IDs digests the resource ids in order: two encodings of equal IDs
	// hold the same resources at the same positions (barring a 64-bit
	// collision).
	IDs uint64
	// Spans holds each resource's [start, end) offsets in the encoding,
	// two per resource.
	Spans []uint32
}

// EncodeIndexed is Encode, also returning where each resource is in the
// bytes.
func (c *Catalog) EncodeIndexed() ([]byte, Index, error) {
	return c.encode(true)
}

func (c *Catalog) encode(indexed bool) ([]byte, Index, error) {
	var idx Index
	b := make([]byte, 0, 256+len(c.Resources)*256)
	b = append(b, `{"environment":`...)
	b = appendJSONString(b, c.Environment)
	b = append(b, `,"files":`...)
	if c.Files == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, f := range c.Files {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"digest":`...)
			b = appendJSONString(b, f.Digest)
			b = append(b, `,"path":`...)
			b = appendJSONString(b, f.Path)
			b = append(b, `,"size":`...)
			b = strconv.AppendInt(b, f.Size, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"node":`...)
	b = appendJSONString(b, c.Node)
	b = append(b, `,"resources":`...)
	if c.Resources == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		var keys []string
		ids := uint64(fnvOffset)
		if indexed {
			idx.Spans = make([]uint32, 0, 2*len(c.Resources))
		}
		for i := range c.Resources {
			if i > 0 {
				b = append(b, ',')
			}
			start := len(b)
			var err error
			if b, keys, err = appendResource(b, &c.Resources[i], keys); err != nil {
				return nil, Index{}, fmt.Errorf("encoding catalog for %s: %w", c.Node, err)
			}
			if indexed {
				idx.Spans = append(idx.Spans, uint32(start), uint32(len(b)))
				ids = fnvAdd(ids, c.Resources[i].ID)
			}
		}
		b = append(b, ']')
		idx.IDs = ids
	}
	b = append(b, `,"version":`...)
	b = appendJSONString(b, c.Version)
	b = append(b, '}')
	return b, idx, nil
}

// FNV-1a, 64 bits, over a string and a 0 byte after it.
const fnvOffset, fnvPrime = 14695981039346656037, 1099511628211

func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h * fnvPrime // the 0 byte: h ^ 0 is h
}

func appendResource(b []byte, r *Resource, keys []string) ([]byte, []string, error) {
	b = append(b, `{"attrs":`...)
	if r.Attrs == nil {
		b = append(b, "null"...)
	} else {
		keys = keys[:0]
		for k := range r.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, r.Attrs[k]); err != nil {
				return nil, keys, fmt.Errorf("resource %s: attribute %s: %w", r.ID, k, err)
			}
		}
		b = append(b, '}')
	}
	b = append(b, `,"id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, r.Name)
	if len(r.Notify) > 0 {
		b = append(b, `,"notify":`...)
		b = appendStrings(b, r.Notify)
	}
	if len(r.Require) > 0 {
		b = append(b, `,"require":`...)
		b = appendStrings(b, r.Require)
	}
	b = append(b, `,"source":`...)
	b = appendJSONString(b, r.Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, r.Type)
	b = append(b, '}')
	return b, keys, nil
}

// appendValue encodes the value shapes compile produces directly and hands
// anything else to encoding/json.
func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendJSONString(b, v), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case []string:
		if v == nil {
			return append(b, "null"...), nil
		}
		return appendStrings(b, v), nil
	case map[string]string:
		if v == nil {
			return append(b, "null"...), nil
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, v[k])
		}
		return append(b, '}'), nil
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, enc...), nil
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping
// off: quotes, backslashes and control bytes escaped, invalid UTF-8 as
// \ufffd, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
