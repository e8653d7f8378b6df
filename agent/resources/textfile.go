package resources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"syscall"

	"github.com/herdcm/herd/catalogs"
)

// This file is what the types that edit a text file in place (line, ini,
// mount's fstab) or own one whole (cron, sysctl) share: a read by the one
// resolution policy that never follows a link at the file itself, an
// atomic write through fileWrite that keeps the old file's owner and mode,
// the old content saved to the content store, and a lock per file so that
// several resources editing one file in the same run compose.

// maxTextFile bounds the files these types read whole: a configuration
// file, not a data file.
const maxTextFile = 8 << 20

// textFile is a text file under the host root as Check found it.
type textFile struct {
	path   string // absolute, as the catalog names it
	rel    string // path relative to the root
	exists bool   // a regular file is there
	link   string // a symbolic link is there instead: its target
	stat   syscall.Stat_t
	// content is the file's bytes (nil when it does not exist).
	content []byte
}

// readText reads the regular file p (absolute and clean) under root. Its
// directory is found by the one resolution policy (links inside the root
// followed as the host would, never out of it); a link at p itself is not
// followed but reported in link. A missing file or parent is no error: the
// file does not exist. Anything else at p (a directory, a FIFO) is.
func readText(root, p string) (*textFile, error) {
	tf := &textFile{path: p, rel: p[1:]}
	dir, err := openView(root, tf.rel, false)
	if errors.Is(err, fs.ErrNotExist) {
		return tf, nil
	}
	if errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("a parent of %s is not a directory", p)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	defer dir.close()
	base := path.Base(tf.rel)
	st, err := dir.lstat(base)
	if errors.Is(err, fs.ErrNotExist) {
		return tf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	tf.stat = st
	switch kindOf(st.Mode) {
	case kindFile:
	case kindLink:
		if tf.link, err = dir.readlink(base); err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		return tf, nil
	case kindDir:
		return nil, fmt.Errorf("%s is a directory, not a file", p)
	default:
		return nil, fmt.Errorf("%s is a %s, not a file", p, otherKind(st.Mode))
	}
	if st.Size > maxTextFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: too large to edit", p, maxTextFile)
	}
	r, err := dir.open(base, &st)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxTextFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if len(b) > maxTextFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: too large to edit", p, maxTextFile)
	}
	tf.exists, tf.content = true, b
	return tf, nil
}

// refuseLink is the error of a type that edits a file in place when a
// symbolic link is at the path: following it would edit some other file
// (perhaps one a file resource owns), and replacing it would cut the file
// loose from whatever it pointed to. Either would be a guess.
func (tf *textFile) refuseLink(typ string) error {
	if tf.link == "" {
		return nil
	}
	return fmt.Errorf("%s is a symbolic link (to %s): %s edits a regular file in place and does not follow or replace links; edit %s instead", tf.path, tf.link, typ, tf.link)
}

// textWrite says how writeText writes a file.
type textWrite struct {
	// mode, uid and gid are those of a new file; an existing one keeps
	// its own unless force is set.
	mode     uint32
	uid, gid int
	force    bool
}

// writeText replaces tf's file with content, atomically (fileWrite: a
// temporary file beside it, synced, renamed, the directory synced), in
// the directory found by the one resolution policy. Whatever regular file
// is there at the rename is saved to the content store first.
func writeText(ctx context.Context, h *Host, tf *textFile, content []byte, tw textWrite) error {
	dir, base, err := openParentRoot(h.Root, tf.rel, false)
	if errors.Is(err, fs.ErrNotExist) {
		return missingParent(h, path.Dir(tf.path))
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", tf.path, err)
	}
	defer dir.Close()
	w := fileWrite{mode: tw.mode, uid: tw.uid, gid: tw.gid}
	if tf.exists && !tw.force {
		w.mode, w.uid, w.gid = tf.stat.Mode&0o7777, int(tf.stat.Uid), int(tf.stat.Gid)
	}
	w.fill = func(tmp io.Writer) error {
		if _, err := tmp.Write(content); err != nil {
			return fmt.Errorf("writing a temporary file: %w", err)
		}
		return nil
	}
	w.saveOld = func(dir *os.Root, base string) error {
		return backupFile(ctx, h, dir, base, tf.path, true)
	}
	if err := w.into(dir, base); err != nil {
		return fmt.Errorf("writing %s: %w", tf.path, err)
	}
	return nil
}

// removeText removes the file (or link) at tf's path, saving a regular
// file's content first.
func removeText(ctx context.Context, h *Host, tf *textFile) error {
	dir, base, err := openParentRoot(h.Root, tf.rel, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", tf.path, err)
	}
	defer dir.Close()
	if err := backupFile(ctx, h, dir, base, tf.path, true); err != nil {
		return fmt.Errorf("removing %s: %w", tf.path, err)
	}
	if err := dir.Remove(base); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", tf.path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("removing %s: syncing the directory: %w", tf.path, err)
	}
	return nil
}

// textDiff is the unified diff between two versions of a file, or "" when
// either is not text worth showing (then the change's From and To say
// enough).
func textDiff(p string, existed bool, old, new []byte) string {
	if !diffable(old) || !diffable(new) {
		return ""
	}
	oldName := p
	if !existed {
		oldName = "/dev/null"
	}
	return UnifiedDiff(oldName, p, string(old), string(new))
}

// editLocks holds one mutex per edited file (by root and path), so that
// the Applies of several resources editing one file in the same run (the
// engine runs resources in parallel) never lose each other's edit: each
// re-reads the file under the lock and edits what is there then.
var editLocks sync.Map // string → *sync.Mutex

// lockFile takes the edit lock of p under root and returns its release.
func lockFile(root, p string) func() {
	m, _ := editLocks.LoadOrStore(root+"\x00"+p, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// lineSpan is one line of a file: its text without the terminator, and
// whether a newline ended it (the last line of a file may lack one).
type lineSpan struct {
	text []byte
	nl   bool
}

// splitText cuts b into lines, keeping every byte: joinText(splitText(b))
// is b.
func splitText(b []byte) []lineSpan {
	var out []lineSpan
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, lineSpan{text: b})
			break
		}
		out = append(out, lineSpan{text: b[:i], nl: true})
		b = b[i+1:]
	}
	return out
}

// joinText puts lines back together.
func joinText(ls []lineSpan) []byte {
	n := 0
	for _, l := range ls {
		n += len(l.text) + 1
	}
	out := make([]byte, 0, n)
	for _, l := range ls {
		out = append(out, l.text...)
		if l.nl {
			out = append(out, '\n')
		}
	}
	return out
}

// appendLine adds a line at the end, ending an unterminated last line
// first so that the new line is a line of its own.
func appendLine(ls []lineSpan, text string) []lineSpan {
	if n := len(ls); n > 0 && !ls[n-1].nl {
		ls[n-1].nl = true
	}
	return append(ls, lineSpan{text: []byte(text), nl: true})
}

// insertLine inserts a line before index i (len(ls) appends).
func insertLine(ls []lineSpan, i int, text string) []lineSpan {
	if i >= len(ls) {
		return appendLine(ls, text)
	}
	ls = append(ls, lineSpan{})
	copy(ls[i+1:], ls[i:])
	ls[i] = lineSpan{text: []byte(text), nl: true}
	return ls
}

// cleanAbs checks a path from a catalog: absolute, clean and below the
// root, so that it names a file under the host root and nothing above it.
func cleanAbs(attr, p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("%s %q: want an absolute, clean path below /", attr, p)
	}
	return nil
}

// managedPath is the host path a resource writes, for a purged directory
// that must keep it: a file's path, the file a line or ini resource edits,
// a cron job's file, a persisted sysctl's file, the fstab of a mount; ""
// for a resource that writes no file of its own.
func managedPath(r *catalogs.Resource) string {
	switch r.Type {
	case "file":
		if p := r.String("path"); p != "" {
			return p
		}
		return r.Name
	case "line", "ini":
		return r.String("path")
	case "cron":
		return cronDir + "/" + r.Name
	case "sysctl":
		if !r.Has("persist") || r.Bool("persist") {
			return sysctlConfPath(r.Name)
		}
	case "mount":
		return defaultFstab
	}
	return ""
}
