package resources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/herdcm/herd/catalogs"
)

// Watch calls changed whenever something happens to the resource's path:
// it is written, replaced, chmodded, chowned or removed, or a directory on
// the way to it comes or goes; for a purged directory, also when an entry
// in it does. It blocks until ctx ends, then returns nil.
//
// It watches the path's directory rather than the path, because editors
// and Apply itself replace a file by renaming over it, which would end a
// watch on the file. While that directory is missing, the nearest existing
// one above it stands in. Events are not debounced: the engine coalesces
// the checks they trigger.
func (f *File) Watch(ctx context.Context, h *Host, r *catalogs.Resource, changed func()) error {
	p := r.String("path")
	if p == "" {
		p = r.Name
	}
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("watching %s: want an absolute, clean path below /", p)
	}
	root := filepath.Clean(h.Root)
	target := filepath.Join(root, filepath.FromSlash(p))
	purge := r.Bool("purge") && r.String("ensure") == "directory"

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", p, err)
	}
	defer w.Close()

	watched := map[string]bool{}
	arm := func() error {
		want := map[string]bool{}
		dir := filepath.Dir(target)
		for dir != root && !isDir(dir) {
			dir = filepath.Dir(dir)
		}
		want[dir] = true
		if purge && isDir(target) {
			want[target] = true
		}
		for d := range watched {
			if !want[d] {
				// The directory may be gone, taking its watch with it.
				_ = w.Remove(d)
				delete(watched, d)
			}
		}
		for d := range want {
			if watched[d] {
				continue
			}
			if err := w.Add(d); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // removed meanwhile: the next event re-arms
				}
				return fmt.Errorf("watching %s: %w", p, err)
			}
			watched[d] = true
		}
		return nil
	}
	if err := arm(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !relevant(ev.Name, target, purge) {
				continue
			}
			changed()
			if err := arm(); err != nil {
				return err
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// Lost events (a queue overflow) may have hidden a change:
			// let a full check decide.
			if h.Log != nil {
				h.Log.Warn("watching a file", "path", p, "err", err)
			}
			changed()
			if err := arm(); err != nil {
				return err
			}
		}
	}
}

// relevant says whether an event on name can change what a check of
// target finds: target itself, a directory on the way to it, or (purge)
// an entry of it other than Apply's own temporary files.
func relevant(name, target string, purge bool) bool {
	if name == target || strings.HasPrefix(target, name+string(filepath.Separator)) {
		return true
	}
	return purge && filepath.Dir(name) == target && !strings.HasPrefix(filepath.Base(name), ".herd-")
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
