package catalogs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
)

// maxKeptContent caps the static file bytes a site loaded from a revision
// keeps in memory for diffs (FileContent), once its extracted tree is gone.
const maxKeptContent = 64 << 20

// LoadRevision loads the site in dir as of the git revision rev (a commit,
// branch, tag or any rev-parse expression naming a commit): `git archive`
// of that commit's tree of the site, extracted into a private temporary
// directory and loaded from there like any site, then removed before
// LoadRevision returns. The archive is extracted as hostile input:
// regular files, directories and symbolic links only, no name with ".." or
// a leading "/", nothing written through a link, and the site's caps on
// sizes and counts. A link is kept as a link, so Load refuses it as it
// refuses one in a work tree. The site's Version is the full commit id
// unless opts.Version is set; its Dir is empty (the tree is gone), and
// FileContent still has its static files up to 1 MiB each.
func LoadRevision(ctx context.Context, dir, rev string, opts LoadOptions) (*Site, error) {
	commit, top, prefix, err := resolveRevision(ctx, dir, rev)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "herd-site-*")
	if err != nil {
		return nil, fmt.Errorf("loading the site at %s: %w", rev, err)
	}
	defer os.RemoveAll(tmp)
	if err := archiveInto(ctx, top, commit, prefix, tmp); err != nil {
		return nil, fmt.Errorf("loading the site at %s (%s): %w", rev, shortCommit(commit), err)
	}
	if opts.Version == "" {
		opts.Version = commit
	}
	s, err := Load(ctx, tmp, opts)
	if err != nil {
		// The diagnostics name site-relative paths; say which revision.
		return nil, fmt.Errorf("the site at %s (%s): %w", rev, shortCommit(commit), err)
	}
	s.keepContents()
	s.Dir = ""
	return s, nil
}

// resolveRevision returns the full commit id rev names in the repository
// holding dir, the repository's top directory, and dir's path inside it
// ("" at its top).
func resolveRevision(ctx context.Context, dir, rev string) (commit, top, prefix string, err error) {
	if rev == "" || strings.HasPrefix(rev, "-") || strings.ContainsAny(rev, "\x00\n") || len(rev) > 1024 {
		return "", "", "", fmt.Errorf("revision %q: want a commit, branch or tag", rev)
	}
	out, err := git(ctx, dir, "rev-parse", "--show-toplevel", "--show-prefix")
	if err != nil {
		return "", "", "", fmt.Errorf("site %s is not in a git work tree: %w", dir, err)
	}
	// Two lines; the prefix is empty at the top.
	lines := strings.SplitN(out, "\n", 3)
	if len(lines) < 2 || lines[0] == "" {
		return "", "", "", fmt.Errorf("site %s: git rev-parse said %q, want the top directory and the prefix", dir, out)
	}
	top, prefix = lines[0], strings.TrimSuffix(lines[1], "/")
	out, err = git(ctx, dir, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return "", "", "", fmt.Errorf("revision %q: no such commit in the repository of %s", rev, dir)
	}
	commit = strings.TrimSpace(out)
	if prefix != "" {
		if _, err := git(ctx, top, "cat-file", "-e", "--end-of-options", commit+":"+prefix); err != nil {
			return "", "", "", fmt.Errorf("revision %q (%s) has no %s/: the site did not exist yet", rev, shortCommit(commit), prefix)
		}
	}
	return commit, top, prefix, nil
}

// git runs git in dir and returns its output; an error carries its
// stderr. Git's exit status is not wrapped: a command line tool must not
// take it for its own.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4096}
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("git %s: %v: %s", args[0], err, msg)
		}
		return "", fmt.Errorf("git %s: %v", args[0], err)
	}
	return string(out), nil
}

// archiveInto extracts the tree of the site (prefix in commit of the
// repository at top) into dst.
func archiveInto(ctx context.Context, top, commit, prefix, dst string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tree := commit
	if prefix != "" {
		tree = commit + ":" + prefix
	}
	cmd := exec.CommandContext(ctx, "git", "-C", top, "archive", "--format=tar", "--end-of-options", tree)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4096}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	extractErr := extractTar(stdout, dst, defaultLimits)
	if extractErr != nil {
		// Stop git rather than wait for it to write the rest.
		cancel()
	}
	// Drain what is left so that git can exit, then reap it.
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	switch {
	case extractErr != nil:
		return extractErr
	case waitErr != nil:
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("git archive: %v: %s", waitErr, msg)
		}
		return fmt.Errorf("git archive: %v", waitErr)
	}
	return nil
}

// extractTar writes the tar stream r under dst, refusing every entry that
// is not a regular file, a directory or a symbolic link, every name that
// is absolute or climbs with "..", and every write that would go through a
// link (dst is opened as an os.Root). limits cap each file, the sum and
// the count.
func extractTar(r io.Reader, dst string, limits siteLimits) error {
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var total int64
	count := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if name == "" || name == "." {
			continue
		}
		if !fs.ValidPath(name) || strings.Contains(name, "\\") {
			return fmt.Errorf("archive entry %q: not a plain relative path", hdr.Name)
		}
		if count++; count > limits.files {
			return fmt.Errorf("the site has more than %d files and directories, the most a site may have", limits.files)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("archive entry %s: %w", name, unwrapPath(err))
			}
		case tar.TypeReg:
			if hdr.Size > limits.static {
				return fmt.Errorf("archive entry %s: %d bytes, more than the %s a site allows for a file", name, hdr.Size, byteSize(limits.static))
			}
			if total += hdr.Size; total > limits.total {
				return fmt.Errorf("the site holds more than %s, the most a site may hold", byteSize(limits.total))
			}
			if err := writeEntry(root, name, tr, hdr.Size, hdr.Mode&0o111 != 0); err != nil {
				return fmt.Errorf("archive entry %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := mkParent(root, name); err != nil {
				return fmt.Errorf("archive entry %s: %w", name, err)
			}
			// Kept as a link: Load refuses it by name, wherever it
			// points, as it does in a work tree.
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("archive entry %s: %w", name, unwrapPath(err))
			}
		default:
			return fmt.Errorf("archive entry %s: type %q; a site holds regular files, directories and symbolic links only", name, string(hdr.Typeflag))
		}
	}
}

func mkParent(root *os.Root, name string) error {
	if d := path.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return unwrapPath(err)
		}
	}
	return nil
}

// writeEntry creates name (which must not exist: an earlier entry of the
// same name, or a link, is not written through) with size bytes of r,
// executable when exec says (git keeps that bit, and a source directory
// ships it).
func writeEntry(root *os.Root, name string, r io.Reader, size int64, exec bool) error {
	if err := mkParent(root, name); err != nil {
		return err
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return unwrapPath(err)
	}
	if exec {
		if err := f.Chmod(0o755); err != nil {
			f.Close()
			return err
		}
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// keepContents keeps the static files small enough to diff in memory, for
// FileContent once the site's directory is gone.
func (s *Site) keepContents() {
	s.blobs = map[string][]byte{}
	var kept int64
	for _, f := range s.Files() {
		if f.Size > maxDiffText || kept+f.Size > maxKeptContent {
			continue
		}
		if _, ok := s.blobs[f.Digest]; ok {
			continue
		}
		b, err := s.ReadFile(f)
		if err != nil {
			continue
		}
		s.blobs[f.Digest] = b
		kept += f.Size
	}
}

// FileContent returns the bytes of the site's static file with the given
// digest, and false when the site has none (or, for a site loaded from a
// revision, when it was too large to keep). It is a ContentFunc, for Diff.
func (s *Site) FileContent(digest string) ([]byte, bool) {
	if b, ok := s.blobs[digest]; ok {
		return b, true
	}
	if s.Dir == "" {
		return nil, false
	}
	for _, f := range s.files {
		if f.Digest == digest && f.Size <= maxDiffText {
			b, err := s.ReadFile(f)
			return b, err == nil
		}
	}
	return nil, false
}

// shortCommit abbreviates a commit id for messages.
func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// limitedBuffer keeps the first max bytes written to it and drops the
// rest, so that a chatty child cannot grow our memory.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
