package server

import (
	"context"
	"errors"
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
	mu  sync.Mutex
	m   map[string]map[*watcher]struct{}
	seq uint64
}

type watcher struct {
	serial string
	box    chan watchMsg
	cancel context.CancelCauseFunc
	seq    uint64 // order of arrival: the oldest goes first
}

// watchMsg is a new catalog for the node (etag, version), or, with run
// and no etag, a request to run now on the catalog it holds (a rollout
// wants a fresh report, or has a rehearsal waiting).
type watchMsg struct {
	etag, version string
	run           bool
}

// Why a Watch stream was ended by the server.
var (
	errWatchRevoked  = errors.New("the stream's certificate was revoked")
	errWatchReplaced = errors.New("the node opened newer Watch streams than this server keeps")
	errWatchStopping = errors.New("the server is stopping")
)

func (w *watchers) init() { w.m = map[string]map[*watcher]struct{}{} }

// add registers x; when node already holds max streams, its oldest are
// ended, so that one node cannot hold the server's memory with streams
// while an agent that reconnects (its old stream half dead) still gets
// its new one.
func (w *watchers) add(node string, x *watcher, max int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	set := w.m[node]
	if set == nil {
		set = map[*watcher]struct{}{}
		w.m[node] = set
	}
	w.seq++
	x.seq = w.seq
	for len(set) >= max {
		var oldest *watcher
		for y := range set {
			if oldest == nil || y.seq < oldest.seq {
				oldest = y
			}
		}
		oldest.cancel(errWatchReplaced)
		delete(set, oldest)
	}
	set[x] = struct{}{}
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

// notify tells node's streams about a new catalog (or, with run, asks
// for a run), never blocking.
func (w *watchers) notify(node, etag, version string, run bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for x := range w.m[node] {
		msg := watchMsg{etag, version, run}
		select {
		case x.box <- msg:
		default:
			// Drop the unread older message and put the newest; a run
			// asked for is never lost to a newer catalog, which runs
			// anyway, nor a new catalog to a run request.
			select {
			case old := <-x.box:
				msg.run = msg.run || old.run
				if msg.etag == "" {
					msg.etag, msg.version = old.etag, old.version
				}
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
			x.cancel(errWatchRevoked)
		}
	}
}

func (w *watchers) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.m {
		for x := range set {
			x.cancel(errWatchStopping)
		}
	}
}

// watchSite starts watching the site, before it returns, so that no edit
// made after Start is missed: fsnotify on every directory of the work
// tree, and in .git only what moves the version (HEAD, packed-refs and the
// refs). Changes are debounced, so that an editor's burst of writes or a
// checkout is one reload. run handles the events until ctx ends.
//
// Only those paths count (versionChange): git's own bookkeeping in .git
// (index, index.lock, logs, objects) changes no version, and the server's
// own `git status` touching .git/index must not trigger the next reload.
func (s *Server) watchSite() (run func(ctx context.Context) error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Error("watching the site: changes need a restart", "err", err)
		return func(ctx context.Context) error { <-ctx.Done(); return nil }
	}
	root := s.opts.Site
	addTree := func(top string) {
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if p == filepath.Join(root, ".git") {
				fw.Add(p)
				filepath.WalkDir(filepath.Join(p, "refs"), func(rp string, rd fs.DirEntry, err error) error {
					if err == nil && rd.IsDir() {
						fw.Add(rp)
					}
					return nil
				})
				return filepath.SkipDir
			}
			if strings.HasPrefix(d.Name(), ".") && p != root && !insideRefs(root, p) {
				return filepath.SkipDir
			}
			fw.Add(p)
			return nil
		})
	}
	addTree(root)
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
				if !versionChange(root, ev.Name) {
					continue
				}
				if ev.Op&fsnotify.Create != 0 {
					if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
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
				if err := s.reloadSite(ctx); err != nil {
					s.log.Error("reloading the site", "err", err)
				}
			}
		}
	}
}

// insideRefs reports whether p is .git/refs or below it.
func insideRefs(root, p string) bool {
	rel, err := filepath.Rel(filepath.Join(root, ".git", "refs"), p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// versionChange reports whether a change at path can change the site's
// version: anything in the work tree outside dot-directories, and in .git
// only HEAD, packed-refs and refs (not their .lock files, which git
// writes and removes around every update).
func versionChange(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return false
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if parts[0] != ".git" {
		for _, p := range parts[:len(parts)-1] {
			if strings.HasPrefix(p, ".") && p != "." {
				return false
			}
		}
		return true
	}
	if strings.HasSuffix(path, ".lock") {
		return false
	}
	switch {
	case len(parts) == 2 && (parts[1] == "HEAD" || parts[1] == "packed-refs"):
		return true
	case len(parts) >= 2 && parts[1] == "refs":
		return true
	}
	return false
}
