package server

import (
	"slices"
	"sync"
	"testing"
)

// TestRecompileProgress: a fleet recompile tells Options.Progress how
// many nodes of the fleet are compiled, one call per node, up to all.
func TestRecompileProgress(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		calls [][2]int
	)
	h := newHarnessWith(t, func(o *Options) {
		o.Progress = func(done, total int) {
			mu.Lock()
			calls = append(calls, [2]int{done, total})
			mu.Unlock()
		}
	}, rolloutSite("", "hello"), "n-0", "n-1", "n-2")
	mu.Lock()
	calls = nil
	mu.Unlock()
	h.commit(map[string]string{"data/common.toml": "greeting = \"hi\"\n"})
	mu.Lock()
	defer mu.Unlock()
	var done []int
	for _, c := range calls {
		if c[1] != 3 {
			t.Errorf("Progress(%d, %d): want a total of the fleet's 3 nodes", c[0], c[1])
		}
		done = append(done, c[0])
	}
	slices.Sort(done)
	if !slices.Equal(done, []int{1, 2, 3}) {
		t.Errorf("Progress was told done = %v, want 1, 2 and 3", done)
	}
}
