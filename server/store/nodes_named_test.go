package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestNodesNamed: the named nodes the store knows, sorted, each as Node
// reads it, across more names than one query binds; unknown names are
// left out, and a check-in not yet written is seen.
func TestNodesNamed(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		s := openTest(t)
		ctx := context.Background()
		at := time.Now().Truncate(time.Millisecond)
		for i := range namedChunk + 300 {
			if err := s.Checkin(ctx, fmt.Sprintf("n-%04d", i), at, "v1", at.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		// One more, left unwritten in memory.
		if err := s.Checkin(ctx, "n-9999", at, "v2", at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		var names []string
		for i := namedChunk + 299; i >= 0; i -= 3 {
			names = append(names, fmt.Sprintf("n-%04d", i))
		}
		names = append(names, "unknown", "n-9999")
		got, err := s.NodesNamed(ctx, names)
		if err != nil {
			t.Fatal(err)
		}
		var want []Node
		for i := 0; i < namedChunk+300; i++ {
			if (namedChunk+299-i)%3 == 0 {
				n, ok, err := s.Node(ctx, fmt.Sprintf("n-%04d", i))
				if err != nil || !ok {
					t.Fatalf("Node(n-%04d) = %v, %v", i, ok, err)
				}
				want = append(want, n)
			}
		}
		n, _, err := s.Node(ctx, "n-9999")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, n)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("NodesNamed (-want +got):\n%s", diff)
		}
	})
}
