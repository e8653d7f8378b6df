package agent

import (
	"context"
	"log/slog"
	"sync"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
)

// driftWatch watches the resources of the cached catalog that ask for it
// (drift = "watch") and calls changed when one drifts. changed only
// schedules a run: the run checks everything.
//
// One resources.DriftWatcher (one inotify instance) serves the daemon's
// whole life, made at the first catalog that watches anything; a new
// catalog changes its watched set by difference, so that the watches of
// unchanged resources are kept. Its goroutine ends with stop.
type driftWatch struct {
	root    string
	log     *slog.Logger
	changed func()

	mu     sync.Mutex
	etag   string
	dw     *resources.DriftWatcher
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// set watches cat's drift = "watch" resources instead of an earlier
// catalog's; the same etag again changes nothing. ctx bounds the watcher's
// goroutine when set starts it.
func (w *driftWatch) set(ctx context.Context, etag string, cat *catalogs.Catalog) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if etag == w.etag && (w.dw != nil || cat == nil) {
		return
	}
	w.etag = etag
	targets := map[string]resources.WatchTarget{}
	if cat != nil {
		types := resources.Types()
		h := &resources.Host{Root: w.root, Log: w.log, Catalog: cat}
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
			t, err := wt.WatchTarget(h, r)
			if err != nil {
				w.log.Error("cannot watch for drift; drift is found at the next run", "resource", r.ID, "err", err)
				continue
			}
			targets[r.ID] = t
		}
	}
	if w.dw == nil {
		if len(targets) == 0 {
			return
		}
		dw, err := resources.NewDriftWatcher(w.root)
		if err != nil {
			w.log.Error("cannot watch for drift; drift is found at the next run", "err", err)
			return
		}
		w.dw = dw
		ctx, w.cancel = context.WithCancel(ctx)
		w.wg.Go(func() {
			_ = dw.Run(ctx, func(string) { w.changed() }, func(err error) {
				w.log.Warn("watching for drift: events were lost; checking everything", "err", err)
			})
		})
	}
	if err := w.dw.Set(targets); err != nil {
		w.log.Error("watching for drift; drift of these is found at the next run", "err", err)
	}
	st := w.dw.Stats()
	w.log.Debug("watching for drift", "resources", st.Targets, "directories", st.Dirs, "etag", etag)
}

// stats returns what the watcher watches; zero before the first watch.
func (w *driftWatch) stats() resources.WatchStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dw == nil {
		return resources.WatchStats{}
	}
	return w.dw.Stats()
}

// stop ends the watcher and waits for its goroutine.
func (w *driftWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		w.cancel()
		w.cancel = nil
	}
	if w.dw != nil {
		w.dw.Close()
		w.dw = nil
	}
	w.wg.Wait()
	w.etag = ""
}
