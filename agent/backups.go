package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// RestoreBackup writes backup id back to its path under root. The content
// there now is saved first, so a restore can itself be undone; the write
// is atomic (temp file, fsync, rename, fsync of the directory) and keeps
// the current file's mode and owner. Nothing is written outside root.
func RestoreBackup(ctx context.Context, st *State, root string, id int64) (Backup, error) {
	b, err := st.Backup(ctx, id)
	if err != nil {
		return b, err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return b, fmt.Errorf("restoring %s: %w", b.Path, err)
	}
	defer r.Close()
	rel := strings.TrimPrefix(path.Clean(b.Path), "/")
	mode, uid, gid := fs.FileMode(0o644), -1, -1
	if cur, err := r.Open(rel); err == nil {
		fi, err := cur.Stat()
		if err == nil && fi.Mode().IsRegular() {
			mode = fi.Mode().Perm()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(st.Uid), int(st.Gid)
			}
			if _, err := st.Save(ctx, b.Path, cur); err != nil {
				cur.Close()
				return b, err
			}
		}
		cur.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return b, fmt.Errorf("restoring %s: %w", b.Path, err)
	}
	content, err := st.OpenContent(b.Digest)
	if err != nil {
		return b, err
	}
	defer content.Close()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(path.Dir(rel), ".herd-restore-"+hex.EncodeToString(rnd[:]))
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return b, fmt.Errorf("restoring %s: %w", b.Path, err)
	}
	_, err = io.Copy(f, content)
	if err == nil && uid >= 0 {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, rel)
	}
	if err != nil {
		r.Remove(tmp)
		return b, fmt.Errorf("restoring %s: %w", b.Path, err)
	}
	if d, err := r.Open(path.Dir(rel)); err == nil {
		d.Sync()
		d.Close()
	}
	return b, nil
}
