package server

import (
	"container/list"
	"sync"
)

// byteCache keeps recently used catalog bytes, by etag, within a byte
// budget: the nodes fetching now (right after a release, or a benchmark's
// few hundred) are served from memory, while a fleet's worth of catalogs
// stays in the store.
type byteCache struct {
	mu     sync.Mutex
	budget int
	size   int
	ll     *list.List // front: most recently used
	m      map[string]*list.Element
}

type cacheEntry struct {
	key string
	val []byte
}

func newByteCache(budget int) *byteCache {
	return &byteCache{budget: budget, ll: list.New(), m: map[string]*list.Element{}}
}

func (c *byteCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheEntry).val, true
}

func (c *byteCache) put(key string, val []byte) {
	if len(val) > c.budget {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[key]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.m[key] = c.ll.PushFront(&cacheEntry{key, val})
	c.size += len(val)
	for c.size > c.budget {
		old := c.ll.Back()
		ent := old.Value.(*cacheEntry)
		c.ll.Remove(old)
		delete(c.m, ent.key)
		c.size -= len(ent.val)
	}
}
