package resources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/herdcm/herd/catalogs"
)

// File manages files, directories and symbolic links under the host root
// (the `file` resource type).
//
// Everything goes through an os.Root, so nothing is read or written
// outside the host root, even through a link planted inside it. A link at
// the managed path is replaced, not followed, unless follow = true.
// Contents are written to a temporary file in the same directory, synced
// and renamed over the old one, so a crash leaves the old file or the new
// one, never a mix; replaced and removed contents go to the content store
// first (backup = false turns that off).
//
// Apply refuses what would lose data or guess: replacing a directory with
// a file or link (or a file with a directory), removing a directory that
// is not empty (ensure = absent), and creating a missing parent directory
// that no resource manages. A number given as owner or group that the
// root's account files do not list is used as it is; a name must be there.
//
// The zero File is ready to use and safe for concurrent checks.
type File struct {
	accounts accountCache
	temps    leftoverCache
	// portable makes Check and Apply resolve paths with the fallback
	// for kernels without openat2 (pathrs-lite) even where openat2 is
	// available, so that tests cover it too.
	portable bool
}

var (
	_ Type    = (*File)(nil)
	_ Watcher = (*File)(nil)
)

// fileDefaultMode and dirDefaultMode are the permissions of a new file or
// directory whose resource names no mode.
const (
	fileDefaultMode = 0o644
	dirDefaultMode  = 0o755
)

// The attributes a file resource may manage, as bits, so that ignore
// costs nothing on the hot path.
const (
	manageEnsure uint8 = 1 << iota
	manageContent
	manageMode
	manageOwner
	manageGroup
	manageTarget
	managePurge
)

// ignorable maps an attribute name in ignore to what it stops managing.
// source and template are other spellings of content.
var ignorable = map[string]uint8{
	"ensure": manageEnsure, "content": manageContent, "source": manageContent, "template": manageContent,
	"mode": manageMode, "owner": manageOwner, "group": manageGroup, "target": manageTarget, "purge": managePurge,
}

// fileSpec is a file resource's attributes, read once per check.
type fileSpec struct {
	path   string // as in the catalog: "/etc/motd"
	rel    string // relative to the host root: "etc/motd"
	ensure string
	manage uint8

	hasContent bool
	content    string
	source     string // "files/motd"
	digest     string // of source's content
	mode       uint32
	owner      string
	group      string
	uid, gid   int // resolved owner and group
	target     string
	purge      bool
	backup     bool
	follow     bool
}

func (s *fileSpec) manages(m uint8) bool { return s.manage&m != 0 }

// managesContent says whether the resource says what the file holds.
func (s *fileSpec) managesContent() bool {
	return s.manages(manageContent) && (s.hasContent || s.digest != "")
}

// kind is what a path is on the host.
type kind int

const (
	kindAbsent kind = iota
	kindFile
	kindDir
	kindLink
	kindOther
)

// kindOf classifies a stat's mode.
func kindOf(mode uint32) kind {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return kindFile
	case syscall.S_IFDIR:
		return kindDir
	case syscall.S_IFLNK:
		return kindLink
	}
	return kindOther
}

// describe names what is at a path, for a change ("link to /x").
func (st *fileState) describe() string {
	switch st.kind {
	case kindAbsent:
		return "absent"
	case kindFile:
		return "file"
	case kindDir:
		return "directory"
	case kindLink:
		return "link to " + st.linkTarget
	}
	return otherKind(st.stat.Mode)
}

func otherKind(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO:
		return "named pipe"
	case syscall.S_IFSOCK:
		return "socket"
	case syscall.S_IFCHR:
		return "character device"
	case syscall.S_IFBLK:
		return "block device"
	}
	return "special file"
}

// fileState is what Check learned and Apply needs: the Plan's State.
type fileState struct {
	spec fileSpec
	// rel is the path actually managed, relative to the root: spec.rel, or
	// where its link leads with follow = true.
	rel        string
	kind       kind
	stat       syscall.Stat_t // valid unless kind is kindAbsent
	linkTarget string         // when kind is kindLink

	write   bool     // (re)write the file's content
	mkdir   bool     // create the directory
	relink  bool     // (re)create the link
	remove  bool     // ensure = absent: remove what is there
	chmod   bool     // set the mode of what stays
	chown   bool     // set the owner or group of what stays
	sweep   []string // leftover temporary files beside the path to remove
	purge   []string // names in the directory to remove
	fetched []byte   // source content fetched by Check for its diff, digest verified
}

// spec reads and resolves a resource's attributes. Owners and groups are
// looked up in the host root's own account files.
func (f *File) spec(h *Host, want *catalogs.Resource) (fileSpec, error) {
	s := fileSpec{
		path:   want.String("path"),
		ensure: want.String("ensure"),
		manage: manageEnsure | manageContent | manageMode | manageOwner | manageGroup | manageTarget | managePurge,
		backup: !want.Has("backup") || want.Bool("backup"),
		follow: want.Bool("follow"),
		purge:  want.Bool("purge"),
	}
	if s.path == "" {
		s.path = want.Name
	}
	if !path.IsAbs(s.path) || path.Clean(s.path) != s.path || s.path == "/" {
		return s, fmt.Errorf("path %q: want an absolute, clean path below /", s.path)
	}
	s.rel = s.path[1:]
	if s.ensure == "" {
		s.ensure = "file"
	}
	switch s.ensure {
	case "file", "directory", "link", "absent":
	default:
		return s, fmt.Errorf("ensure %q: want file, directory, link or absent", s.ensure)
	}
	for _, a := range want.Strings("ignore") {
		s.manage &^= ignorable[a]
	}
	if c, ok := want.Attrs["content"].(string); ok {
		s.hasContent, s.content = true, c
	}
	if s.source = want.String("source"); s.source != "" {
		if s.digest = want.String("digest"); !strings.HasPrefix(s.digest, "sha256:") {
			return s, fmt.Errorf("source %s has no sha256 digest in the catalog", s.source)
		}
	}
	if m := want.String("mode"); m != "" && s.manages(manageMode) {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o7777 {
			return s, fmt.Errorf("mode %q: want octal permission bits like \"0644\"", m)
		}
		s.mode = uint32(v)
	} else {
		s.manage &^= manageMode
	}
	s.target = want.String("target")
	var err error
	if s.owner = want.String("owner"); s.owner != "" && s.manages(manageOwner) {
		if s.uid, err = f.accounts.accountID(h.Root, true, s.owner); err != nil {
			return s, fmt.Errorf("owner: %w", err)
		}
	} else {
		s.manage &^= manageOwner
	}
	if s.group = want.String("group"); s.group != "" && s.manages(manageGroup) {
		if s.gid, err = f.accounts.accountID(h.Root, false, s.group); err != nil {
			return s, fmt.Errorf("group: %w", err)
		}
	} else {
		s.manage &^= manageGroup
	}
	return s, nil
}

// Check compares the path with the resource and plans the changes. It
// only reads: no temporary file, no directory, nothing is created.
func (f *File) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := f.spec(h, want)
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", s.path, err)
	}
	// The plan and the state it carries are one allocation: Check runs
	// once per file per run, thousands of times.
	ps := &struct {
		p  Plan
		st fileState
	}{st: fileState{spec: s, rel: s.rel}}
	st := &ps.st
	dir, err := f.look(h, st)
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", s.path, err)
	}
	if dir != nil {
		defer dir.close()
	}
	p := &ps.p
	p.Resource, p.State = want, st
	if dir != nil {
		if err := f.checkLeftovers(dir, st, p); err != nil {
			return nil, fmt.Errorf("checking %s: %w", s.path, err)
		}
	}
	switch s.ensure {
	case "absent":
		err = f.checkAbsent(dir, st, p)
	case "directory":
		err = f.checkDir(h, dir, st, p)
	case "link":
		err = f.checkLink(h, st, p)
	default:
		err = f.checkFile(ctx, h, dir, st, p)
	}
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", s.path, err)
	}
	return p, nil
}

// look finds what is at the path: it fills st's kind, stat and link
// target and returns the open parent directory, or nil when the parent
// does not exist (then the path is absent).
func (f *File) look(h *Host, st *fileState) (dirView, error) {
	dir, err := f.lstat(h, st)
	if err != nil || st.kind != kindLink || !st.spec.follow {
		return dir, err
	}
	switch st.spec.ensure {
	case "file", "directory":
	default:
		return dir, nil // a link resource or absent acts on the link itself
	}
	// follow = true: manage what the link leads to. Each step is looked
	// up by the one resolution policy, so the chain cannot leave the root;
	// the name of the next step is the link's target taken from inside the
	// root (absolute from the root, ".." stopping there).
	for n := 0; st.kind == kindLink; n++ {
		if n == maxLinks {
			dir.close()
			return nil, fmt.Errorf("following the link at %s: %w", st.spec.path, syscall.ELOOP)
		}
		next := path.Clean("/" + path.Join(path.Dir(st.rel), st.linkTarget))
		if path.IsAbs(st.linkTarget) {
			next = path.Clean(st.linkTarget)
		}
		dir.close()
		if next == "/" {
			return nil, fmt.Errorf("following the link at %s: it leads to the host root", st.spec.path)
		}
		st.rel = next[1:]
		if dir, err = f.lstat(h, st); err != nil {
			return nil, err
		}
	}
	return dir, nil
}

// lstat stats st.rel without following a link at it.
func (f *File) lstat(h *Host, st *fileState) (dirView, error) {
	st.kind, st.linkTarget = kindAbsent, ""
	dir, err := openView(h.Root, st.rel, f.portable)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, syscall.ENOTDIR) {
		if st.spec.ensure == "absent" {
			return nil, nil // nothing can be there
		}
		return nil, fmt.Errorf("a parent of %s is not a directory", st.spec.path)
	}
	if err != nil {
		return nil, err
	}
	base := path.Base(st.rel)
	sys, err := dir.lstat(base)
	if errors.Is(err, fs.ErrNotExist) {
		return dir, nil
	}
	if err != nil {
		dir.close()
		return nil, err
	}
	st.stat = sys
	st.kind = kindOf(sys.Mode)
	if st.kind == kindLink {
		if st.linkTarget, err = dir.readlink(base); err != nil {
			dir.close()
			return nil, err
		}
	}
	return dir, nil
}

// checkFile plans ensure = file.
func (f *File) checkFile(ctx context.Context, h *Host, dir dirView, st *fileState, p *Plan) error {
	s := &st.spec
	switch st.kind {
	case kindDir:
		if s.manages(manageEnsure) {
			return errors.New("it is a directory; refusing to replace it with a file, which would lose its contents")
		}
		f.checkMeta(h, st, p, false)
		return nil
	case kindOther:
		if s.manages(manageEnsure) {
			return fmt.Errorf("it is a %s, not a regular file; refusing to replace it", otherKind(st.stat.Mode))
		}
		f.checkMeta(h, st, p, false)
		return nil
	case kindAbsent, kindLink:
		if !s.manages(manageEnsure) {
			if st.kind == kindLink {
				f.checkMeta(h, st, p, false)
			}
			return nil
		}
		action := Create
		if st.kind == kindLink {
			action = Update
		}
		p.Changes = append(p.Changes, Change{Attr: "ensure", From: st.describe(), To: "file", Action: action})
		st.write = true
		if s.managesContent() {
			c, err := f.contentChange(ctx, h, dir, st)
			if err != nil {
				return err
			}
			c.Action = Create
			p.Changes = append(p.Changes, c)
		}
		f.checkMeta(h, st, p, true)
		return nil
	}
	if s.managesContent() {
		same, err := f.sameContent(h, dir, st)
		if err != nil {
			return err
		}
		if !same {
			c, err := f.contentChange(ctx, h, dir, st)
			if err != nil {
				return err
			}
			p.Changes = append(p.Changes, c)
			st.write = true
		}
	}
	f.checkMeta(h, st, p, false)
	return nil
}

// checkMeta plans mode, owner and group. With create, what is there will
// be replaced, so every managed attribute is a change from nothing.
func (f *File) checkMeta(h *Host, st *fileState, p *Plan, create bool) {
	s := &st.spec
	// Links have no mode of their own.
	if s.manages(manageMode) && s.ensure != "link" && (create || st.kind != kindLink) {
		if create {
			p.Changes = append(p.Changes, Change{Attr: "mode", To: formatMode(s.mode), Action: Create})
		} else if cur := st.stat.Mode & 0o7777; cur != s.mode {
			p.Changes = append(p.Changes, Change{Attr: "mode", From: formatMode(cur), To: formatMode(s.mode), Action: Update})
			st.chmod = true
		}
	}
	if s.manages(manageOwner) {
		if create {
			p.Changes = append(p.Changes, Change{Attr: "owner", To: s.owner, Action: Create})
		} else if st.stat.Uid != uint32(s.uid) {
			from := f.accounts.accountName(h.Root, true, st.stat.Uid)
			p.Changes = append(p.Changes, Change{Attr: "owner", From: from, To: s.owner, Action: Update})
			st.chown = true
		}
	}
	if s.manages(manageGroup) {
		if create {
			p.Changes = append(p.Changes, Change{Attr: "group", To: s.group, Action: Create})
		} else if st.stat.Gid != uint32(s.gid) {
			from := f.accounts.accountName(h.Root, false, st.stat.Gid)
			p.Changes = append(p.Changes, Change{Attr: "group", From: from, To: s.group, Action: Update})
			st.chown = true
		}
	}
}

// bufPool holds read buffers for comparing and hashing contents, so the
// in-sync path does not allocate one per file.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// sameContent reports whether the regular file at st holds what the
// resource wants: sizes first, then the bytes themselves for content (held
// in memory anyway) or a streamed sha256 for a source (known by digest).
func (f *File) sameContent(h *Host, dir dirView, st *fileState) (bool, error) {
	s := &st.spec
	if size := wantSize(h, s); size >= 0 && size != st.stat.Size {
		return false, nil
	}
	if s.hasContent && s.content == "" {
		return true, nil // both empty: nothing to read
	}
	fh, err := dir.open(path.Base(st.rel), &st.stat)
	if err != nil {
		return false, fmt.Errorf("reading: %w", err)
	}
	defer fh.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if s.hasContent {
		same, err := sameContent(fh, s.content, *bp)
		if err != nil {
			return false, fmt.Errorf("reading: %w", err)
		}
		return same, nil
	}
	d, err := hashReader(fh, *bp)
	if err != nil {
		return false, fmt.Errorf("reading: %w", err)
	}
	return d == s.digest, nil
}

// wantSize is the size the file should have, or -1 when only its digest
// is known (a source the catalog's file list does not size).
func wantSize(h *Host, s *fileSpec) int64 {
	if s.hasContent {
		return int64(len(s.content))
	}
	if h.Catalog != nil {
		fs := h.Catalog.Files
		if i, ok := slices.BinarySearchFunc(fs, s.digest, func(fr catalogs.FileRef, d string) int { return strings.Compare(fr.Digest, d) }); ok {
			return fs[i].Size
		}
	}
	return -1
}

// hashReader streams r through sha256 and returns "sha256:<hex>".
func hashReader(r io.Reader, buf []byte) (string, error) {
	sum := sha256.New()
	for {
		n, err := r.Read(buf)
		sum.Write(buf[:n])
		if err == io.EOF {
			return "sha256:" + hex.EncodeToString(sum.Sum(nil)), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// contentChange describes how the content will change: the two digests,
// and a unified diff when both sides are small text. A source is fetched
// for the diff only when it is small; it is then kept for Apply.
func (f *File) contentChange(ctx context.Context, h *Host, dir dirView, st *fileState) (Change, error) {
	s := &st.spec
	c := Change{Attr: "content", Action: Update}
	var wantText []byte
	if s.hasContent {
		c.To = catalogs.Digest([]byte(s.content))
		if len(s.content) <= maxDiffBytes {
			wantText = []byte(s.content)
		}
	} else {
		c.To = s.digest
		if size := wantSize(h, s); size >= 0 && size <= maxDiffBytes && (st.kind != kindFile || st.stat.Size <= maxDiffBytes) {
			b, err := fetch(ctx, h, s)
			if err != nil {
				return c, err
			}
			st.fetched, wantText = b, b
		}
	}
	oldName := s.path
	var oldText []byte
	if st.kind == kindFile {
		fh, err := dir.open(path.Base(st.rel), &st.stat)
		if err != nil {
			return c, fmt.Errorf("reading: %w", err)
		}
		defer fh.Close()
		if st.stat.Size <= maxDiffBytes {
			if oldText, err = io.ReadAll(io.LimitReader(fh, maxDiffBytes+1)); err != nil {
				return c, fmt.Errorf("reading: %w", err)
			}
			c.From = catalogs.Digest(oldText)
		} else {
			bp := bufPool.Get().(*[]byte)
			defer bufPool.Put(bp)
			if c.From, err = hashReader(fh, *bp); err != nil {
				return c, fmt.Errorf("reading: %w", err)
			}
		}
	} else {
		oldName = "/dev/null"
		oldText = []byte{}
	}
	if oldText != nil && wantText != nil && diffable(oldText) && diffable(wantText) {
		c.Diff = UnifiedDiff(oldName, s.path, string(oldText), string(wantText))
	}
	return c, nil
}

// fetch reads a source's content from h.Files and checks its digest, so
// that a corrupt or wrong file is never installed.
func fetch(ctx context.Context, h *Host, s *fileSpec) ([]byte, error) {
	if h.Files == nil {
		return nil, fmt.Errorf("fetching %s: the host serves no static files", s.source)
	}
	rc, err := h.Files(ctx, s.digest)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", s.source, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxDiffBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", s.source, err)
	}
	if d := catalogs.Digest(b); d != s.digest {
		return nil, fmt.Errorf("fetching %s: got content %s, want %s", s.source, d, s.digest)
	}
	return b, nil
}

// checkDir plans ensure = directory, with purge.
func (f *File) checkDir(h *Host, dir dirView, st *fileState, p *Plan) error {
	s := &st.spec
	switch st.kind {
	case kindFile, kindOther:
		if s.manages(manageEnsure) {
			return fmt.Errorf("it is a %s; refusing to replace it with a directory", st.describe())
		}
		f.checkMeta(h, st, p, false)
		return nil
	case kindAbsent, kindLink:
		if !s.manages(manageEnsure) {
			if st.kind == kindLink {
				f.checkMeta(h, st, p, false)
			}
			return nil
		}
		action := Create
		if st.kind == kindLink {
			action = Update
		}
		p.Changes = append(p.Changes, Change{Attr: "ensure", From: st.describe(), To: "directory", Action: action})
		st.mkdir = true
		f.checkMeta(h, st, p, true)
		return nil
	}
	f.checkMeta(h, st, p, false)
	if !s.purge || !s.manages(managePurge) {
		return nil
	}
	stray, err := f.strays(h, dir, st)
	if err != nil {
		return err
	}
	for _, name := range stray {
		p.Changes = append(p.Changes, Change{Attr: "purge", From: s.path + "/" + name, To: "absent", Action: Delete})
	}
	st.purge = stray
	return nil
}

// strays lists the entries of a purged directory that no file resource in
// the catalog manages, neither itself nor anything below it, sorted.
func (f *File) strays(h *Host, dir dirView, st *fileState) ([]string, error) {
	names, err := dir.names(path.Base(st.rel), -1)
	if err != nil {
		return nil, fmt.Errorf("listing for purge: %w", err)
	}
	if h.Catalog == nil {
		// Without the catalog every entry would look unmanaged.
		return nil, errors.New("purge needs the host's catalog to know which entries are managed")
	}
	managed := map[string]bool{}
	prefix := st.spec.path + "/"
	for i := range h.Catalog.Resources {
		p := managedPath(&h.Catalog.Resources[i])
		if rest, ok := strings.CutPrefix(p, prefix); ok && p != "" {
			first, _, _ := strings.Cut(rest, "/")
			managed[first] = true
		}
	}
	var stray []string
	for _, n := range names {
		if !managed[n] {
			stray = append(stray, n)
		}
	}
	slices.Sort(stray)
	return stray, nil
}

// checkLink plans ensure = link.
func (f *File) checkLink(h *Host, st *fileState, p *Plan) error {
	s := &st.spec
	switch st.kind {
	case kindDir, kindOther:
		if s.manages(manageEnsure) {
			return fmt.Errorf("it is a %s; refusing to replace it with a link", st.describe())
		}
		return nil
	case kindAbsent, kindFile:
		if !s.manages(manageEnsure) {
			return nil
		}
		action := Create
		if st.kind == kindFile {
			action = Update
		}
		p.Changes = append(p.Changes, Change{Attr: "ensure", From: st.describe(), To: "link to " + s.target, Action: action})
		st.relink = true
		f.checkMeta(h, st, p, true)
		return nil
	}
	if s.manages(manageTarget) && st.linkTarget != s.target {
		p.Changes = append(p.Changes, Change{Attr: "target", From: st.linkTarget, To: s.target, Action: Update})
		st.relink = true
	}
	// A new link would be owned by the agent, so a relinked one needs its
	// owner set again whatever the old link's was.
	f.checkMeta(h, st, p, false)
	if st.relink && (s.manages(manageOwner) || s.manages(manageGroup)) {
		st.chown = true
	}
	return nil
}

// checkAbsent plans ensure = absent: a file, link or special file goes, a
// directory only when it is empty.
func (f *File) checkAbsent(dir dirView, st *fileState, p *Plan) error {
	if st.kind == kindAbsent || !st.spec.manages(manageEnsure) {
		return nil
	}
	if st.kind == kindDir {
		names, err := dir.names(path.Base(st.rel), 1)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			return errors.New("it is a directory that is not empty; refusing to remove it (remove or purge its entries first)")
		}
	}
	p.Changes = append(p.Changes, Change{Attr: "ensure", From: st.describe(), To: "absent", Action: Delete})
	st.remove = true
	return nil
}
