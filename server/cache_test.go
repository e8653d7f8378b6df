package server

import "testing"

func TestByteCache(t *testing.T) {
	t.Parallel()
	c := newByteCache(10)
	c.put("a", []byte("aaaa"))
	c.put("b", []byte("bbbb"))
	if _, ok := c.get("a"); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	c.put("c", []byte("cccc")) // over budget: b, the least recent, goes
	if _, ok := c.get("b"); ok {
		t.Error("b should have been evicted")
	}
	for _, k := range []string{"a", "c"} {
		if _, ok := c.get(k); !ok {
			t.Errorf("%s evicted", k)
		}
	}
	c.put("huge", make([]byte, 11))
	if _, ok := c.get("huge"); ok || c.size > 10 {
		t.Errorf("an entry over the whole budget was kept (size %d)", c.size)
	}
}
