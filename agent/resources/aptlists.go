package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// aptListsMaxAge is how old apt's package lists may be before an install
// by name refreshes them first: a day, as Chef's apt_update does by
// default. Older lists name versions the mirrors no longer carry.
const aptListsMaxAge = 24 * time.Hour

// aptStampRel is apt's own "the last update succeeded" stamp, which
// apt.systemd.daily touches and update-notifier reads. Herd touches it
// after its own apt-get update, and reads it to know how old the lists
// are: the lists' own times are the mirrors' Last-Modified, not when apt
// fetched them.
const aptStampRel = "var/lib/apt/periodic/update-success-stamp"

// aptSourcesRels are the files and directories whose change means apt's
// lists no longer match its sources.
var aptSourcesRels = []string{"etc/apt/sources.list", "etc/apt/sources.list.d"}

// aptListsStale says why the root's apt lists must be refreshed before an
// install by name, or "" when they are fresh: none has a Packages index
// (a fresh host or sandbox), the last successful update is older than
// aptListsMaxAge, or a source changed after it (an apt_repository wrote
// one, in this run or an earlier one). It reads the root in process and
// starts nothing.
func aptListsStale(root string, now time.Time) (string, error) {
	names, err := readDirInRoot(root, "var/lib/apt/lists")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading var/lib/apt/lists: %w", err)
	}
	var newestList time.Time
	hasIndex := false
	for _, n := range names {
		if !strings.Contains(n, "_Packages") {
			continue
		}
		hasIndex = true
		if st, err := statInRoot(root, "var/lib/apt/lists/"+n); err == nil {
			newestList = later(newestList, mtime(st))
		}
	}
	if !hasIndex {
		return "apt has no package lists", nil
	}
	updated := newestList
	if st, err := statInRoot(root, aptStampRel); err == nil {
		updated = mtime(st)
	}
	if now.Sub(updated) > aptListsMaxAge {
		return fmt.Sprintf("apt's lists were last updated %s ago", now.Sub(updated).Round(time.Minute)), nil
	}
	var newestSource time.Time
	for _, rel := range aptSourcesRels {
		st, err := statInRoot(root, rel)
		if err != nil {
			continue
		}
		newestSource = later(newestSource, mtime(st))
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		entries, _ := readDirInRoot(root, rel)
		for _, n := range entries {
			if fst, err := statInRoot(root, rel+"/"+n); err == nil {
				newestSource = later(newestSource, mtime(fst))
			}
		}
	}
	if newestSource.After(updated) {
		return "an apt source changed after apt's lists were updated", nil
	}
	return "", nil
}

func mtime(st unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// refreshLists runs apt-get update for the root when its lists are stale,
// at most once per run (per Package: a run takes one), before the first
// install by name. On success it touches apt's update stamp.
func (t *Package) refreshLists(ctx context.Context, h *Host, p *Plan) error {
	t.listsMu.Lock()
	defer t.listsMu.Unlock()
	if t.listsFresh {
		return nil
	}
	root := pkgRoot(h)
	why, err := aptListsStale(root, time.Now())
	if err != nil {
		return err
	}
	if why == "" {
		t.listsFresh = true
		return nil
	}
	if h.Log != nil {
		h.Log.Info("refreshing apt's package lists", "why", why)
	}
	argv := append([]string{"apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=120"}, aptRootOptions(root)...)
	if err := pkgRun(ctx, h, p, "refreshing apt's lists ("+why+") with apt-get update", argv); err != nil {
		return err
	}
	if err := touchInRoot(root, aptStampRel); err != nil {
		return fmt.Errorf("marking apt's lists fresh: %w", err)
	}
	t.listsFresh = true
	return nil
}

// touchInRoot creates rel (and its directories) under root or sets its
// time to now, through the one resolution policy.
func touchInRoot(root, rel string) error {
	rfd, err := openDirInRoot(root, ".", false)
	if err != nil {
		return err
	}
	r, err := rootAt(rfd)
	unix.Close(rfd)
	if err != nil {
		return err
	}
	defer r.Close()
	dir, _ := splitRel(rel)
	if err := r.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := r.OpenFile(rel, os.O_WRONLY|os.O_CREATE|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	now := time.Now()
	return r.Chtimes(rel, now, now)
}
