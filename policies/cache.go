package policies

import (
	"hash/maphash"
	"maps"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/herdcm/herd/catalogs"
)

// resourceCache keeps the converted value of resources across the nodes a
// gate evaluates. The nodes of a role share most of their resources,
// equal attribute for attribute, and converting them is most of a gate's
// cost. An entry is used only for a resource equal to the copy it keeps,
// compared in full; the hash only finds the candidate. Resources holding
// values of other shapes than compile's are never cached.
//
// A resource is kept only the second time it is seen: a node's own
// resources (a file naming the node) are never seen again, and keeping
// them would fill the cache with copies no other node uses before the
// shared ones of later nodes get in.
//
// The cache is sharded by hash: a gate runs on every core at once, and
// most resources of a rollout's change are new (a template rendered per
// node), so each is a write; one lock made the gate's workers wait on
// each other more than they ran.
type resourceCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

// cacheShards is how many locks the cache has: far more than cores.
const cacheShards = 64

type cacheShard struct {
	mu    sync.RWMutex
	m     map[uint64]*cachedResource
	seen  map[uint64]struct{} // hashes seen once, not kept yet
	bytes int                 // roughly, what the entries hold
}

type cachedResource struct {
	r catalogs.Resource // a deep copy: the caller's may change later
	t *ast.Term
}

// maxCacheBytes bounds a gate's cache: past it, resources are converted
// and not kept.
const maxCacheBytes = 64 << 20

// maxSeen bounds the hashes remembered as seen once (8 bytes each, and
// the map's own); past it they are forgotten and remembered afresh.
const maxSeen = 1 << 20

func newResourceCache() *resourceCache {
	rc := &resourceCache{seed: maphash.MakeSeed()}
	for i := range rc.shards {
		rc.shards[i].m = map[uint64]*cachedResource{}
		rc.shards[i].seen = map[uint64]struct{}{}
	}
	return rc
}

func (rc *resourceCache) shard(h uint64) *cacheShard { return &rc.shards[h%cacheShards] }

// get returns r's cached value, or nil, with r's hash and size for put
// (ok false: r holds a value of a shape the cache does not handle).
func (rc *resourceCache) get(r *catalogs.Resource) (t *ast.Term, h uint64, size int, ok bool) {
	h, size, ok = rc.hash(r)
	if !ok {
		return nil, 0, 0, false
	}
	sh := rc.shard(h)
	sh.mu.RLock()
	e := sh.m[h]
	sh.mu.RUnlock()
	if e != nil && resourceEqual(&e.r, r) {
		return e.t, h, size, true
	}
	return nil, h, size, true
}

// put keeps t as the value of r, whose hash and size get gave.
func (rc *resourceCache) put(h uint64, size int, r *catalogs.Resource, t *ast.Term) {
	sh := rc.shard(h)
	const maxShardBytes, maxShardSeen = maxCacheBytes / cacheShards, maxSeen / cacheShards
	sh.mu.Lock()
	_, exists := sh.m[h]
	if !exists {
		if _, twice := sh.seen[h]; !twice {
			if len(sh.seen) >= maxShardSeen {
				clear(sh.seen)
			}
			sh.seen[h] = struct{}{}
			sh.mu.Unlock()
			return
		}
		if sh.bytes+size > maxShardBytes {
			sh.mu.Unlock()
			return
		}
	}
	sh.mu.Unlock()
	c := copyResource(r)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, exists := sh.m[h]; !exists {
		if sh.bytes+size > maxShardBytes {
			return
		}
		sh.bytes += size
		delete(sh.seen, h)
	}
	sh.m[h] = &cachedResource{r: c, t: t}
}

// hash digests every field of r but Source, which the value holds too and
// so is compared, not hashed; attributes are combined order-free. It also
// returns roughly r's size in bytes.
func (rc *resourceCache) hash(r *catalogs.Resource) (h uint64, size int, ok bool) {
	var mh maphash.Hash
	mh.SetSeed(rc.seed)
	for _, s := range []string{r.ID, r.Type, r.Name, r.Source} {
		mh.WriteString(s)
		mh.WriteByte(0)
		size += len(s)
	}
	for _, ss := range [][]string{r.Notify, r.Require} {
		for _, s := range ss {
			mh.WriteString(s)
			mh.WriteByte(0)
			size += len(s)
		}
		mh.WriteByte(1)
	}
	h = mh.Sum64()
	if r.Attrs == nil {
		return h ^ 1, size, true
	}
	for k, v := range r.Attrs {
		mh.Reset()
		mh.WriteString(k)
		mh.WriteByte(0)
		n, ok := hashValue(&mh, v)
		if !ok {
			return 0, 0, false
		}
		size += len(k) + n
		// Addition is order-free, as map iteration is.
		h += mh.Sum64()
	}
	return h, size, true
}

func hashValue(mh *maphash.Hash, v any) (int, bool) {
	switch v := v.(type) {
	case string:
		mh.WriteByte('s')
		mh.WriteString(v)
		return len(v), true
	case int64:
		mh.WriteByte('i')
		var b [8]byte
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		mh.Write(b[:])
		return 8, true
	case bool:
		if v {
			mh.WriteByte('T')
		} else {
			mh.WriteByte('F')
		}
		return 1, true
	case []string:
		if v == nil {
			mh.WriteByte('n')
			return 0, true
		}
		mh.WriteByte('l')
		n := 0
		for _, s := range v {
			mh.WriteString(s)
			mh.WriteByte(0)
			n += len(s)
		}
		return n, true
	case catalogs.Sealed:
		mh.WriteByte('S')
		mh.WriteString(v.Box)
		mh.WriteByte(0)
		mh.WriteString(v.Digest)
		return len(v.Box) + len(v.Digest), true
	case map[string]string:
		if v == nil {
			mh.WriteByte('n')
			return 0, true
		}
		mh.WriteByte('m')
		n := 0
		for _, k := range slices.Sorted(maps.Keys(v)) {
			mh.WriteString(k)
			mh.WriteByte(0)
			mh.WriteString(v[k])
			mh.WriteByte(0)
			n += len(k) + len(v[k])
		}
		return n, true
	}
	return 0, false
}

// resourceEqual compares two resources field by field; attribute values
// of the shapes hashValue handles only.
func resourceEqual(a, b *catalogs.Resource) bool {
	if a.ID != b.ID || a.Type != b.Type || a.Name != b.Name || a.Source != b.Source ||
		!slices.Equal(a.Notify, b.Notify) || !slices.Equal(a.Require, b.Require) ||
		(a.Attrs == nil) != (b.Attrs == nil) || len(a.Attrs) != len(b.Attrs) {
		return false
	}
	for k, av := range a.Attrs {
		bv, ok := b.Attrs[k]
		if !ok || !catalogs.ValueEqual(av, bv) {
			return false
		}
	}
	return true
}

func copyResource(r *catalogs.Resource) catalogs.Resource {
	c := *r
	c.Notify = slices.Clone(r.Notify)
	c.Require = slices.Clone(r.Require)
	if r.Attrs != nil {
		c.Attrs = make(map[string]any, len(r.Attrs))
		for k, v := range r.Attrs {
			switch v := v.(type) {
			case []string:
				c.Attrs[k] = slices.Clone(v)
			case map[string]string:
				c.Attrs[k] = maps.Clone(v)
			default:
				c.Attrs[k] = v // strings, numbers, booleans: values
			}
		}
	}
	return c
}
