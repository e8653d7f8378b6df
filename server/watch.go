package server

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchers holds the open Watch streams by node. Each stream has a
// one-slot mailbox: a new catalog replaces an unread one, so a consumer
// that stops reading never blocks the server and gets only the latest
// version when it resumes.
type watchers struct {
	mu sync.Mutex
	m  map[string]map[*watcher]struct{}
}

type watcher struct {
	serial string
	box    chan watchMsg
	cancel context.CancelFunc
}

type watchMsg struct{ etag, version string }

func (w *watchers) init() { w.m = map[string]map[*watcher]struct{}{} }

func (w *watchers) add(node string, x *watcher) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m[node] == nil {
		w.m[node] = map[*watcher]struct{}{}
	}
	w.m[node][x] = struct{}{}
}

func (w *watchers) remove(node string, x *watcher) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m[node], x)
	if len(w.m[node]) == 0 {
		delete(w.m, node)
	}
}

// has reports whether node holds a Watch stream.
func (w *watchers) has(node string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m[node]) > 0
}

// notify tells node's streams about a new catalog, never blocking.
func (w *watchers) notify(node, etag, version string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for x := range w.m[node] {
		msg := watchMsg{etag, version}
		select {
		case x.box <- msg:
		default:
			// Drop the unread older message and put the newest.
			select {
			case <-x.box:
			default:
			}
			select {
			case x.box <- msg:
			default:
			}
		}
	}
}

// revoke ends the streams opened with a revoked certificate.
func (w *watchers) revoke(node, serial string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for x := range w.m[node] {
		if serial == "" || x.serial == serial {
			x.cancel()
		}
	}
}

func (w *watchers) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.m {
		for x := range set {
			x.cancel()
		}
	}
}

// watchSite starts watching the site, before it returns, so that no edit
// made after Start is missed: fsnotify on every directory of the site
// (and the git refs, so that a commit is seen). Changes are debounced, so
// that an editor's burst of writes or a checkout is one reload. run
// handles the events until ctx ends.
func (s *Server) watchSite() (run func(ctx context.Context) error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Error("watching the site: changes need a restart", "err", err)
		return func(ctx context.Context) error { <-ctx.Done(); return nil }
	}
	addTree := func(root string) {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if d.Name() == ".git" {
				for _, sub := range []string{p, filepath.Join(p, "refs"), filepath.Join(p, "refs", "heads")} {
					fw.Add(sub)
				}
				return filepath.SkipDir
			}
			if strings.HasPrefix(d.Name(), ".") && p != root {
				return filepath.SkipDir
			}
			fw.Add(p)
			return nil
		})
	}
	addTree(s.opts.Site)
	return func(ctx context.Context) error {
		defer fw.Close()
		var timer *time.Timer
		fire := make(chan struct{}, 1)
		for {
			select {
			case <-ctx.Done():
				if timer != nil {
					timer.Stop()
				}
				return nil
			case ev, ok := <-fw.Events:
				if !ok {
					return nil
				}
				if ev.Op&fsnotify.Create != 0 {
					if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
						addTree(ev.Name)
					}
				}
				if timer == nil {
					timer = time.AfterFunc(s.opts.Debounce, func() {
						select {
						case fire <- struct{}{}:
						default:
						}
					})
				} else {
					timer.Reset(s.opts.Debounce)
				}
			case err, ok := <-fw.Errors:
				if !ok {
					return nil
				}
				s.log.Warn("watching the site", "err", err)
			case <-fire:
				if err := s.reload(ctx); err != nil {
					s.log.Error("reloading the site", "err", err)
				}
			}
		}
	}
}
