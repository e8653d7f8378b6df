package catalogs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// The caps on what a site may hold. Anyone who can push to the site
// controls its files, so a file too large to be a plausible role, template
// or static file is refused by name before it costs memory, and the whole
// tree is bounded too.
const (
	// MaxSourceFile caps every file read into memory: herd.toml,
	// nodes.toml, roles, data, templates, tests and facts files.
	MaxSourceFile = 1 << 20
	// MaxStaticFile caps each file under files/ (digested, then shipped).
	MaxStaticFile = 64 << 20
	// MaxSiteBytes caps the sum of every file's size.
	MaxSiteBytes = 1 << 30
	// MaxSiteFiles caps how many files and directories a site may have.
	MaxSiteFiles = 50000
)

// siteLimits are the caps one load applies; tests shrink them.
type siteLimits struct {
	source, static, total int64
	files                 int
}

var defaultLimits = siteLimits{source: MaxSourceFile, static: MaxStaticFile, total: MaxSiteBytes, files: MaxSiteFiles}

// siteDir is the one way Herd reads a site: Load, the content version, site
// tests and their facts files, and Site.ReadFile (the static files the
// server stores and masterless apply serves) all go through it. It lists
// directories through fsys and opens files with open, which for a real
// site is an os.Root: nothing outside the site directory can be reached,
// whatever its symbolic links say.
type siteDir struct {
	fsys fs.FS
	open func(name string) (fs.File, error)
}

// openSiteDir confines every later read to dir.
func openSiteDir(dir string) (siteDir, func() error, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return siteDir{}, nil, err
	}
	return siteDir{
		fsys: root.FS(),
		// O_NONBLOCK: a FIFO put in place of a checked regular file
		// must not block the open; it is refused right after.
		open: func(name string) (fs.File, error) { return root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0) },
	}, root.Close, nil
}

// fsSiteDir reads a site held in an fs.FS (tests and fuzzing).
func fsSiteDir(fsys fs.FS) siteDir { return siteDir{fsys: fsys, open: fsys.Open} }

// errNotRegular says a site path is not a plain file.
var errNotRegular = errors.New("not a regular file")

// read copies the regular file rel into w, refusing symbolic links, FIFOs,
// devices, sockets and anything over limit bytes, without blocking on any
// of them. lst is what the directory listing said rel is (nil when not
// known): the opened file must be that very file, so that a path swapped for
// a link between listing and opening is refused too.
func (sd siteDir) read(rel string, lst fs.FileInfo, limit int64, w io.Writer) (int64, error) {
	if lst != nil {
		if err := checkRegular(sd.fsys, rel, lst.Mode()); err != nil {
			return 0, err
		}
	}
	f, err := sd.open(rel)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := checkRegular(sd.fsys, rel, fi.Mode()); err != nil {
		return 0, err
	}
	if lst != nil && !sameFile(lst, fi) {
		return 0, fmt.Errorf("%w: it changed into a symbolic link while the site was read", errNotRegular)
	}
	if fi.Size() > limit {
		return 0, fmt.Errorf("%d bytes, more than the %s a site allows for it", fi.Size(), byteSize(limit))
	}
	// The file may grow after the stat: read at most one byte past the cap.
	n, err := io.Copy(w, io.LimitReader(f, limit+1))
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, fmt.Errorf("more than the %s a site allows for it", byteSize(limit))
	}
	return n, nil
}

// checkRegular refuses everything but a regular file, naming what it is.
func checkRegular(fsys fs.FS, rel string, m fs.FileMode) error {
	switch {
	case m.IsRegular():
		return nil
	case m&fs.ModeSymlink != 0:
		if target, err := fs.ReadLink(fsys, rel); err == nil {
			return fmt.Errorf("%w: a symbolic link (to %s); the site reads regular files only, so a link committed to it cannot reach outside", errNotRegular, target)
		}
		return fmt.Errorf("%w: a symbolic link; the site reads regular files only", errNotRegular)
	case m.IsDir():
		return fmt.Errorf("%w: a directory", errNotRegular)
	case m&fs.ModeNamedPipe != 0:
		return fmt.Errorf("%w: a named pipe", errNotRegular)
	case m&fs.ModeDevice != 0:
		return fmt.Errorf("%w: a device", errNotRegular)
	case m&fs.ModeSocket != 0:
		return fmt.Errorf("%w: a socket", errNotRegular)
	}
	return fmt.Errorf("%w: mode %v", errNotRegular, m)
}

// sameFile reports whether two infos describe the same file. Infos that do
// not come from the OS (an fs.FS in tests) carry no identity and pass.
func sameFile(a, b fs.FileInfo) bool {
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	if !okA || !okB {
		return true
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// readTree reads every file of the site once, through sd. Files under
// files/ are only digested: they can be large and are shipped by digest.
// A file that cannot be read safely is a diagnostic naming it; the walk
// stops only when a cap on the whole tree is reached.
func (l *loader) readTree(sd siteDir) error {
	var total int64
	count := 0
	return fs.WalkDir(sd.fsys, ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			if rel == "." {
				return fmt.Errorf("loading site: %w", err)
			}
			l.diags.add(Pos{File: rel}, "reading the site: %v", unwrapPath(err))
			return nil
		}
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		// Directories count too: a tree of empty directories costs a
		// walk as much as files do.
		if count++; count > l.limits.files {
			l.diags.add(Pos{File: rel}, "the site has more than %d files and directories, the most a site may have", l.limits.files)
			return fs.SkipAll
		}
		if d.IsDir() {
			if strings.HasPrefix(rel, "files/") {
				l.site.dirs[rel] = true
			}
			return nil
		}
		lst, err := d.Info()
		if err != nil {
			l.diags.add(Pos{File: rel}, "reading the site: %v", unwrapPath(err))
			return nil
		}
		limit := l.limits.source
		static := strings.HasPrefix(rel, "files/")
		if static {
			limit = l.limits.static
		}
		if lst.Mode().IsRegular() && total+lst.Size() > l.limits.total {
			l.diags.add(Pos{File: rel}, "the site holds more than %s, the most a site may hold", byteSize(l.limits.total))
			return fs.SkipAll
		}
		h := sha256.New()
		var buf bytes.Buffer
		w := io.Writer(h)
		if !static {
			w = io.MultiWriter(h, &buf)
		}
		n, err := sd.read(rel, lst, limit, w)
		total += n
		if err != nil {
			l.diags.add(Pos{File: rel}, "reading the site: %v", unwrapPath(err))
			return nil
		}
		hexsum := hex.EncodeToString(h.Sum(nil))
		exec := static && lst.Mode()&0o111 != 0
		if exec {
			// A source directory ships executable bits: a changed bit is
			// a changed site.
			l.digests = append(l.digests, rel+"\x00"+hexsum+"\x00x")
		} else {
			l.digests = append(l.digests, rel+"\x00"+hexsum)
		}
		switch {
		case static:
			l.site.files[rel] = FileRef{Digest: "sha256:" + hexsum, Path: rel, Size: n}
			if exec {
				l.site.execs[rel] = true
			}
		case strings.HasPrefix(rel, "policies/") && strings.HasSuffix(rel, ".rego"):
			l.site.policies = append(l.site.policies, SourceFile{Path: rel, Data: buf.Bytes()})
		default:
			l.contents[rel] = buf.Bytes()
		}
		return nil
	})
}

// unwrapPath drops the *PathError wrapper, whose path is the diagnostic's
// position already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// ReadFile reads the static file f (one of Files(), or of a catalog compiled
// from this site) through the same confined reader Load uses, and checks
// it still has the digest the catalog names. The server stores the files
// it serves this way and masterless apply serves them: a file swapped for
// a symbolic link, a FIFO or a device after the load is refused, never
// followed or blocked on.
func (s *Site) ReadFile(f FileRef) ([]byte, error) {
	if s.Dir == "" {
		return nil, fmt.Errorf("reading %s: the site was not loaded from a directory", f.Path)
	}
	if !strings.HasPrefix(f.Path, "files/") || !fs.ValidPath(f.Path) {
		return nil, fmt.Errorf("reading %s: not a path under files/", f.Path)
	}
	sd, closeDir, err := openSiteDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Path, err)
	}
	defer closeDir()
	lst, err := fs.Lstat(sd.fsys, f.Path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Path, unwrapPath(err))
	}
	var buf bytes.Buffer
	if _, err := sd.read(f.Path, lst, MaxStaticFile, &buf); err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Path, unwrapPath(err))
	}
	if Digest(buf.Bytes()) != f.Digest {
		return nil, fmt.Errorf("reading %s: it changed in the site since the catalog was compiled (digest %s, want %s)", f.Path, Digest(buf.Bytes()), f.Digest)
	}
	return buf.Bytes(), nil
}
