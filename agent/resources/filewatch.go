package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"

	"github.com/herdcm/herd/catalogs"
)

// WatchTarget says what to watch for a resource's drift: the host path
// (under the host root) whose change is drift, and for a purged directory
// its entries too.
type WatchTarget struct {
	// Path is the absolute path on this machine (host root joined).
	Path string
	// Entries: an entry coming or going in the directory Path is drift
	// too (a purged directory).
	Entries bool
}

// WatchTarget watches the resource's path. A purged directory also
// watches its entries.
func (f *File) WatchTarget(h *Host, r *catalogs.Resource) (WatchTarget, error) {
	p := r.String("path")
	if p == "" {
		p = r.Name
	}
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return WatchTarget{}, fmt.Errorf("watching %s: want an absolute, clean path below /", p)
	}
	return WatchTarget{
		Path:    filepath.Join(filepath.Clean(h.Root), filepath.FromSlash(p)),
		Entries: r.Bool("purge") && r.String("ensure") == "directory",
	}, nil
}

// DriftWatcher watches the targets of any number of resources with one
// fsnotify watcher (one inotify instance), so that a daemon watching
// thousands of files stays far below the default max_user_instances (128)
// and max_user_watches.
//
// It watches directories, not files: the directory of each target (one
// inotify watch for all the targets in it), because editors and Apply
// itself replace a file by renaming over it, which would end a watch on the
// file. While a target's directory is missing, the nearest existing one
// above it stands in; a purged directory is watched itself too. Set
// changes the watched resources by difference: a resource whose target did
// not change keeps its watch, and a directory is added to or removed from
// the kernel's set only when the first target arrives in it or the last
// one leaves.
//
// Events are not debounced: the daemon coalesces the runs they trigger.
type DriftWatcher struct {
	root string
	w    *fsnotify.Watcher

	mu      sync.Mutex
	targets map[string]*watched // by resource id
	// dirs maps every directory in the kernel's watch set to the targets
	// whose armed directories include it.
	dirs  map[string]map[*watched]struct{}
	stats WatchStats
}

// watched is one resource's target and the directories armed for it.
type watched struct {
	id    string
	t     WatchTarget
	armed []string
}

// WatchStats counts what a DriftWatcher watches and has done, for logs
// and for tests that hold it to its promise of keeping watches.
type WatchStats struct {
	Targets int // resources watched
	Dirs    int // directories in the kernel's watch set
	Adds    int // directories added to the kernel's set, ever
	Removes int // directories removed from it, ever
}

// NewDriftWatcher opens the one inotify instance. root is the host root:
// no directory above it is ever watched. Close it when done.
func NewDriftWatcher(root string) (*DriftWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching for drift: %w", err)
	}
	return &DriftWatcher{
		root:    filepath.Clean(root),
		w:       w,
		targets: map[string]*watched{},
		dirs:    map[string]map[*watched]struct{}{},
	}, nil
}

// Close releases the inotify instance; Run returns.
func (d *DriftWatcher) Close() error { return d.w.Close() }

// Stats returns what is watched now and the counts so far.
func (d *DriftWatcher) Stats() WatchStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Targets, s.Dirs = len(d.targets), len(d.dirs)
	return s
}

// Set makes targets (by resource id) the watched set. A resource whose
// target is unchanged keeps its watches; the others are armed or dropped.
// A target that cannot be armed is left out and named in the error; the
// others are watched all the same.
func (d *DriftWatcher) Set(targets map[string]WatchTarget) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, old := range d.targets {
		if t, ok := targets[id]; !ok || t != old.t {
			d.disarm(old)
			delete(d.targets, id)
		}
	}
	var errs []error
	for id, t := range targets {
		if _, ok := d.targets[id]; ok {
			continue
		}
		wt := &watched{id: id, t: t}
		d.targets[id] = wt
		if err := d.arm(wt); err != nil {
			d.disarm(wt)
			delete(d.targets, id)
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// want is the set of directories a target needs watched now.
func (d *DriftWatcher) want(t WatchTarget) []string {
	dir := filepath.Dir(t.Path)
	for len(dir) > len(d.root) && !isDir(dir) {
		dir = filepath.Dir(dir)
	}
	if t.Entries && isDir(t.Path) {
		return []string{dir, t.Path}
	}
	return []string{dir}
}

// arm brings wt's directories in line with what it needs now. A
// directory removed between looking and adding makes it look again.
func (d *DriftWatcher) arm(wt *watched) error {
	var err error
	for range 4 {
		var gone bool
		if gone, err = d.armOnce(wt); !gone {
			return err
		}
	}
	return err
}

func (d *DriftWatcher) armOnce(wt *watched) (gone bool, err error) {
	want := d.want(wt.t)
	var keep []string
	for _, dir := range wt.armed {
		if slices.Contains(want, dir) {
			keep = append(keep, dir)
		} else {
			d.release(wt, dir)
		}
	}
	wt.armed = keep
	for _, dir := range want {
		if slices.Contains(wt.armed, dir) {
			continue
		}
		users, ok := d.dirs[dir]
		if !ok {
			if err := d.w.Add(dir); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return true, fmt.Errorf("watching %s: %w", dir, err)
				}
				return false, fmt.Errorf("watching %s: %w", dir, err)
			}
			d.stats.Adds++
			users = map[*watched]struct{}{}
			d.dirs[dir] = users
		}
		users[wt] = struct{}{}
		wt.armed = append(wt.armed, dir)
	}
	return false, nil
}

// disarm drops all of wt's directories.
func (d *DriftWatcher) disarm(wt *watched) {
	for _, dir := range wt.armed {
		d.release(wt, dir)
	}
	wt.armed = nil
}

// release drops wt's use of dir, and dir's kernel watch with its last user.
func (d *DriftWatcher) release(wt *watched, dir string) {
	users := d.dirs[dir]
	delete(users, wt)
	if len(users) == 0 && users != nil {
		delete(d.dirs, dir)
		// The directory may be gone, taking its watch with it.
		_ = d.w.Remove(dir)
		d.stats.Removes++
	}
}

// Run calls changed with the resource id of every target an event may
// have changed, until ctx ends or the watcher is closed; then it returns
// nil. A lost event (a queue overflow) calls changed with "" : a full
// check must decide.
func (d *DriftWatcher) Run(ctx context.Context, changed func(id string), warn func(error)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-d.w.Events:
			if !ok {
				return nil
			}
			d.handle(ev, changed)
		case err, ok := <-d.w.Errors:
			if !ok {
				return nil
			}
			if warn != nil {
				warn(err)
			}
			changed("")
			d.rearmAll()
		}
	}
}

// handle finds the targets ev concerns, reports them and re-arms them: a
// directory on the way may have come or gone.
func (d *DriftWatcher) handle(ev fsnotify.Event, changed func(id string)) {
	d.mu.Lock()
	var hit []*watched
	// Only targets armed on the event's directory, or on the event's path
	// itself (a watched directory removed, or a purged one's own events),
	// can be concerned.
	for _, dir := range []string{filepath.Dir(ev.Name), ev.Name} {
		for wt := range d.dirs[dir] {
			if relevant(ev.Name, wt.t.Path, wt.t.Entries) && !slices.Contains(hit, wt) {
				hit = append(hit, wt)
			}
		}
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if users, ok := d.dirs[ev.Name]; ok {
			// A watched directory went away, and its watch with it (or
			// the watch follows it elsewhere): forget it, so that its
			// users arm again from what exists now.
			_ = d.w.Remove(ev.Name)
			delete(d.dirs, ev.Name)
			d.stats.Removes++
			for wt := range users {
				wt.armed = slices.DeleteFunc(wt.armed, func(s string) bool { return s == ev.Name })
				if !slices.Contains(hit, wt) {
					hit = append(hit, wt)
				}
			}
		}
	}
	ids := make([]string, 0, len(hit))
	for _, wt := range hit {
		// An error here is a directory that vanished again: its own
		// event arms once more.
		_ = d.arm(wt)
		ids = append(ids, wt.id)
	}
	d.mu.Unlock()
	for _, id := range ids {
		changed(id)
	}
}

// rearmAll re-arms every target, after events may have been lost.
func (d *DriftWatcher) rearmAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, wt := range d.targets {
		_ = d.arm(wt)
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

// isDir says whether p is a directory, not following a final link: a
// link to a directory elsewhere is not watched through.
func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}
