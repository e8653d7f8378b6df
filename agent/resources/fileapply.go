package resources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"
)

// Apply makes the path match the plan.
func (f *File) Apply(ctx context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*fileState)
	if !ok {
		return fmt.Errorf("applying file: plan has no file state (%T)", p.State)
	}
	if err := f.apply(ctx, h, st); err != nil {
		return fmt.Errorf("writing %s: %w", st.spec.path, err)
	}
	return nil
}

func (f *File) apply(ctx context.Context, h *Host, st *fileState) error {
	dir, base, err := openParentRoot(h.Root, st.rel, f.portable)
	if errors.Is(err, fs.ErrNotExist) {
		return missingParent(h, path.Dir("/"+st.rel))
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	if len(st.sweep) > 0 {
		if err := sweepLeftovers(dir, st.sweep); err != nil {
			return err
		}
	}
	switch {
	case st.write:
		err = f.writeFile(ctx, h, dir, base, st)
	case st.mkdir:
		err = f.makeDir(dir, base, st)
	case st.relink:
		err = f.makeLink(ctx, h, dir, base, st)
	case st.remove:
		err = f.remove(ctx, h, dir, base, st)
	default:
		err = f.fixMeta(dir, base, st)
	}
	if err != nil {
		return err
	}
	if len(st.purge) > 0 {
		return f.purge(ctx, h, dir, base, st)
	}
	return nil
}

// missingParent explains why a path cannot be made: its directory p is
// missing, or a link on the way to it leads nowhere inside the host root.
// Creating it with guessed permissions would hide a mistake.
func missingParent(h *Host, p string) error {
	if link, target, ok := linkOnTheWay(h.Root, p[1:]); ok {
		return noParentError(fmt.Sprintf("parent directory %s does not exist (/%s is a link to %s, resolved inside the host root)", p, link, target))
	}
	if h.Catalog != nil {
		if _, ok := h.Catalog.Resource("file:" + p); ok {
			return noParentError(fmt.Sprintf("parent directory %s does not exist (file:%s has not created it)", p, p))
		}
	}
	return noParentError(fmt.Sprintf("parent directory %s does not exist and no resource manages it", p))
}

// linkOnTheWay finds the first symbolic link among the components of
// rel, for a message. It only reads.
func linkOnTheWay(root, rel string) (link, target string, ok bool) {
	for i := 0; i <= len(rel); i++ {
		if i < len(rel) && rel[i] != '/' {
			continue
		}
		v, err := openView(root, rel[:i], false)
		if err != nil {
			return "", "", false
		}
		_, base := splitRel(rel[:i])
		st, err := v.lstat(base)
		if err == nil && kindOf(st.Mode) == kindLink {
			target, err = v.readlink(base)
			v.close()
			return rel[:i], target, err == nil
		}
		v.close()
		if err != nil {
			return "", "", false
		}
	}
	return "", "", false
}

// noParentError is errNoParent with the whole explanation, so that the
// message does not say "does not exist" twice.
type noParentError string

func (e noParentError) Error() string        { return string(e) }
func (e noParentError) Is(target error) bool { return target == errNoParent }

// writeFile writes the file's content atomically: a temporary file beside
// it, synced, given its mode and owner, then renamed over the path and the
// directory synced. The old content is saved first.
func (f *File) writeFile(ctx context.Context, h *Host, dir *os.Root, base string, st *fileState) error {
	s := &st.spec
	// Keep what the resource does not manage as it was on the old file.
	w := fileWrite{uid: -1, gid: -1, mode: fileDefaultMode}
	if st.kind == kindFile {
		w.uid, w.gid, w.mode = int(st.stat.Uid), int(st.stat.Gid), st.stat.Mode&0o7777
	}
	if s.manages(manageOwner) {
		w.uid = s.uid
	}
	if s.manages(manageGroup) {
		w.gid = s.gid
	}
	if s.manages(manageMode) {
		w.mode = s.mode
	}
	w.fill = func(tmp io.Writer) error {
		switch {
		case !s.manages(manageContent):
			// Only a new or replaced file is written without managed
			// content: it starts empty.
		case s.hasContent:
			if _, err := io.WriteString(tmp, s.content); err != nil {
				return fmt.Errorf("writing a temporary file: %w", err)
			}
		case st.fetched != nil:
			if _, err := tmp.Write(st.fetched); err != nil {
				return fmt.Errorf("writing a temporary file: %w", err)
			}
		case s.digest != "":
			return copySource(ctx, h, s, tmp)
		}
		return nil
	}
	// Whatever regular file is there at the rename goes to the store,
	// even one that appeared after Check.
	w.saveOld = func(dir *os.Root, base string) error {
		return backupFile(ctx, h, dir, base, s.path, s.backup)
	}
	return w.into(dir, base)
}

// copySource streams a source's content from h.Files into w, checking its
// digest on the way.
func copySource(ctx context.Context, h *Host, s *fileSpec, w io.Writer) error {
	if h.Files == nil {
		return fmt.Errorf("fetching %s: the host serves no static files", s.source)
	}
	rc, err := h.Files(ctx, s.digest)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", s.source, err)
	}
	defer rc.Close()
	sum := sha256.New()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if _, err := io.CopyBuffer(io.MultiWriter(w, sum), rc, *bp); err != nil {
		return fmt.Errorf("fetching %s: %w", s.source, err)
	}
	if d := "sha256:" + hex.EncodeToString(sum.Sum(nil)); d != s.digest {
		return fmt.Errorf("fetching %s: got content %s, want %s", s.source, d, s.digest)
	}
	return nil
}

// setOwner chowns an open file when its owner or group differs (-1 keeps
// one as it is), so that an agent not running as root still works for
// files it owns.
func setOwner(fh *os.File, uid, gid int) error {
	fi, err := fh.Stat()
	if err != nil {
		return err
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid == int(sys.Uid) {
			uid = -1
		}
		if gid == int(sys.Gid) {
			gid = -1
		}
	}
	if uid == -1 && gid == -1 {
		return nil
	}
	if err := fh.Chown(uid, gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

// backupFile saves the content of the regular file at base, if that is
// what is there, to the content store before it is replaced or removed. A
// link is not followed: replacing it loses no content. A failure stops
// the change: nothing may be lost.
func backupFile(ctx context.Context, h *Host, dir *os.Root, base, display string, backup bool) error {
	if !backup || h.Content == nil {
		return nil
	}
	fi, err := dir.Lstat(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backing up: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("backing up: lstat %s: no unix stat", base)
	}
	old, err := openSame(dir, base, sys)
	if err != nil {
		return fmt.Errorf("backing up: %w", err)
	}
	defer old.Close()
	if _, err := h.Content.Save(ctx, display, old); err != nil {
		return fmt.Errorf("backing up: %w", err)
	}
	return nil
}

// fixMeta sets the mode, owner and group of what is at the path, through
// a descriptor checked to be the object Check saw.
func (f *File) fixMeta(dir *os.Root, base string, st *fileState) error {
	if !st.chmod && !st.chown {
		return nil
	}
	s := &st.spec
	if st.kind == kindLink {
		return lchown(dir, base, st)
	}
	fh, err := openSame(dir, base, &st.stat)
	if err != nil {
		return err
	}
	defer fh.Close()
	if st.chown {
		uid, gid := -1, -1
		if s.manages(manageOwner) {
			uid = s.uid
		}
		if s.manages(manageGroup) {
			gid = s.gid
		}
		if err := setOwner(fh, uid, gid); err != nil {
			return err
		}
	}
	// chown clears setuid and setgid: set the mode again even when only
	// the owner changed.
	mode := st.stat.Mode & 0o7777
	if s.manages(manageMode) {
		mode = s.mode
	}
	if st.chmod || st.chown {
		if err := fh.Chmod(unixMode(mode)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	return nil
}

// lchown sets a link's own owner and group.
func lchown(dir *os.Root, base string, st *fileState) error {
	s := &st.spec
	uid, gid := -1, -1
	if s.manages(manageOwner) {
		uid = s.uid
	}
	if s.manages(manageGroup) {
		gid = s.gid
	}
	if err := dir.Lchown(base, uid, gid); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	return nil
}

// makeDir creates the directory (replacing a link at its path), private
// until its owner and mode are set.
func (f *File) makeDir(dir *os.Root, base string, st *fileState) error {
	s := &st.spec
	if st.kind == kindLink {
		if err := dir.Remove(base); err != nil {
			return fmt.Errorf("removing the link: %w", err)
		}
	}
	if err := dir.Mkdir(base, 0o700); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	d, err := dir.Open(base)
	if err != nil {
		return err
	}
	defer d.Close()
	uid, gid, mode := -1, -1, uint32(dirDefaultMode)
	if s.manages(manageOwner) {
		uid = s.uid
	}
	if s.manages(manageGroup) {
		gid = s.gid
	}
	if s.manages(manageMode) {
		mode = s.mode
	}
	if err := setOwner(d, uid, gid); err != nil {
		return err
	}
	if err := d.Chmod(unixMode(mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing the directory: %w", err)
	}
	return nil
}

// makeLink points the link at its target, replacing what is at the path
// in one rename (a file's content is saved first).
func (f *File) makeLink(ctx context.Context, h *Host, dir *os.Root, base string, st *fileState) error {
	s := &st.spec
	if err := backupFile(ctx, h, dir, base, s.path, s.backup); err != nil {
		return err
	}
	name := tempName(base)
	if err := sweepTemp(dir, base); err != nil {
		return err
	}
	if err := dir.Symlink(s.target, name); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if err := dir.Rename(name, base); err != nil {
		dir.Remove(name)
		return fmt.Errorf("rename: %w", err)
	}
	if st.chown || s.manages(manageOwner) || s.manages(manageGroup) {
		if err := lchown(dir, base, st); err != nil {
			return err
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing the directory: %w", err)
	}
	return nil
}

// remove takes away what is at the path (ensure = absent), saving a
// file's content first.
func (f *File) remove(ctx context.Context, h *Host, dir *os.Root, base string, st *fileState) error {
	s := &st.spec
	if err := backupFile(ctx, h, dir, base, s.path, s.backup); err != nil {
		return err
	}
	// Remove, never RemoveAll: a directory goes only when it is empty.
	if err := dir.Remove(base); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing the directory: %w", err)
	}
	return nil
}

// purge removes the directory's unmanaged entries that Check listed,
// saving every regular file in them first.
func (f *File) purge(ctx context.Context, h *Host, dir *os.Root, base string, st *fileState) error {
	s := &st.spec
	d, err := dir.OpenRoot(base)
	if err != nil {
		return fmt.Errorf("purging: %w", err)
	}
	defer d.Close()
	for _, name := range st.purge {
		if err := backupTree(ctx, h, d, name, s.path+"/"+name, s.backup); err != nil {
			return fmt.Errorf("purging %s/%s: %w", s.path, name, err)
		}
		if err := d.RemoveAll(name); err != nil {
			return fmt.Errorf("purging %s/%s: %w", s.path, name, err)
		}
	}
	if err := syncDir(d); err != nil {
		return fmt.Errorf("purging: syncing the directory: %w", err)
	}
	return nil
}

// backupTree saves every regular file at or below name (links are not
// followed) before a purge removes it.
func backupTree(ctx context.Context, h *Host, dir *os.Root, name, display string, backup bool) error {
	if !backup || h.Content == nil {
		return nil
	}
	fi, err := dir.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case fi.Mode().IsRegular():
		return backupFile(ctx, h, dir, name, display, true)
	case !fi.IsDir():
		return nil
	}
	sub, err := dir.OpenRoot(name)
	if err != nil {
		return err
	}
	defer sub.Close()
	return fs.WalkDir(sub.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fh, err := sub.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer fh.Close()
		_, err = h.Content.Save(ctx, display+"/"+p, fh)
		return err
	})
}
