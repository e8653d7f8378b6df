package store

import (
	"bytes"
	"testing"
	"time"
)

func TestNodeKeys(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		st, err := Open(testLoc(t), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		ctx := t.Context()
		a1, a2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		for i, step := range []struct {
			key     []byte
			changed bool
		}{{a1, true}, {a1, false}, {a2, true}} {
			changed, err := st.PutNodeKey(ctx, "a", step.key, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if changed != step.changed {
				t.Errorf("step %d: PutNodeKey changed = %v, want %v", i, changed, step.changed)
			}
		}
		if _, err := st.PutNodeKey(ctx, "b", a1, time.Now()); err != nil {
			t.Fatal(err)
		}
		keys, err := st.NodeKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 || !bytes.Equal(keys["a"], a2) || !bytes.Equal(keys["b"], a1) {
			t.Errorf("NodeKeys = %x, want a: %x, b: %x", keys, a2, a1)
		}
	})
}
