package agent

import (
	"context"
	"log/slog"
	"sync"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
)

// driftWatch watches the resources of the cached catalog that ask for it
// (drift = "watch") through their type's Watcher, and calls changed when
// one drifts. changed only schedules a run: the run checks everything.
//
// One goroutine per watched resource, all ended together by set (for a new
// catalog) or stop; each returns when its context ends.
type driftWatch struct {
	root    string
	log     *slog.Logger
	changed func()

	mu     sync.Mutex
	etag   string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// set watches cat's drift = "watch" resources, replacing the watches of an
// earlier catalog; the same etag again changes nothing.
func (w *driftWatch) set(ctx context.Context, etag string, cat *catalogs.Catalog) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if etag == w.etag && w.cancel != nil {
		return
	}
	w.stopLocked()
	w.etag = etag
	if cat == nil {
		return
	}
	ctx, w.cancel = context.WithCancel(ctx)
	// Types are fresh for the watches: a type keeps per-run caches, and
	// the watches outlive runs.
	types := resources.Types()
	h := &resources.Host{Root: w.root, Log: w.log, Catalog: cat}
	n := 0
	for i := range cat.Resources {
		r := &cat.Resources[i]
		if r.String("drift") != "watch" {
			continue
		}
		wt, ok := types[r.Type].(resources.Watcher)
		if !ok {
			w.log.Warn("drift = watch on a type that cannot watch; drift is found at the next run", "resource", r.ID)
			continue
		}
		n++
		w.wg.Go(func() {
			if err := wt.Watch(ctx, h, r, w.changed); err != nil && ctx.Err() == nil {
				w.log.Error("watching for drift stopped; drift is found at the next run", "resource", r.ID, "err", err)
			}
		})
	}
	if n > 0 {
		w.log.Debug("watching for drift", "resources", n, "etag", etag)
	}
}

// stop ends every watch and waits for them.
func (w *driftWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopLocked()
	w.etag = ""
}

func (w *driftWatch) stopLocked() {
	if w.cancel != nil {
		w.cancel()
		w.cancel = nil
	}
	w.wg.Wait()
}
