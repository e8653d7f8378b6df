package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdcm/herd/catalogs"
)

// acceptCatalog verifies a catalog from the server and decodes it: the
// signature of the pinned server key over the exact bytes first (nothing
// unauthenticated is parsed), then the etag against the bytes, then the
// node it was compiled for, which must be this node: the signature alone
// would let a server bug hand one node another's catalog.
func acceptCatalog(key ed25519.PublicKey, node, etag string, data, sig []byte) (*catalogs.Catalog, error) {
	if len(key) != ed25519.PublicKeySize {
		return nil, errors.New("no server signing key pinned: enroll again")
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(key, data, sig) {
		return nil, errors.New("bad signature: the server key pinned at enrollment did not sign it")
	}
	if d := catalogs.Digest(data); d != etag {
		return nil, fmt.Errorf("its etag %s is not the digest of its bytes (%s)", etag, d)
	}
	cat, err := catalogs.Decode(data)
	if err != nil {
		return nil, err
	}
	if cat.Node != node {
		return nil, fmt.Errorf("it was compiled for node %q, and this node is %q", cat.Node, node)
	}
	return cat, nil
}

// fileCache holds the static files of the cached catalog by digest, in
// STATE/files/<hex>, so that a run while the server is away still has
// them. A file enters only after its digest was verified, and is verified
// again as it is read.
type fileCache struct{ dir string }

// digestHex returns the hex of a "sha256:<hex>" digest, refusing anything
// else: the result names a file.
func digestHex(digest string) (string, error) {
	sum, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return "", fmt.Errorf("bad digest %q", digest)
	}
	return sum, nil
}

func (c fileCache) has(digest string) bool {
	sum, err := digestHex(digest)
	if err != nil {
		return false
	}
	fi, err := os.Stat(filepath.Join(c.dir, sum))
	return err == nil && fi.Mode().IsRegular()
}

// open returns the cached content of digest. The reader hashes what it
// reads and, at the end, fails instead of returning io.EOF when the content
// is not what the digest says (and drops the corrupt copy, so that the next
// run fetches it again).
func (c fileCache) open(digest string) (io.ReadCloser, error) {
	sum, err := digestHex(digest)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(c.dir, sum)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not in the local file cache (it could not be fetched from the server)", digest)
	}
	if err != nil {
		return nil, fmt.Errorf("opening cached file %s: %w", digest, err)
	}
	return &verifyingReader{f: f, path: p, want: sum, h: sha256.New()}, nil
}

type verifyingReader struct {
	f    *os.File
	path string
	want string
	h    hash.Hash
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			os.Remove(v.path)
			return n, fmt.Errorf("cached file sha256:%s is corrupt (its content is sha256:%s): dropped; the next run fetches it again", v.want, got)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }

// put stores the content that write produces under digest, refusing it
// unless it is exactly size bytes with that digest. The content is written
// to a temporary file, fsynced and renamed, so that a crash leaves either
// nothing or the whole verified file.
func (c fileCache) put(digest string, size int64, write func(io.Writer) error) error {
	sum, err := digestHex(digest)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("caching %s: %w", digest, err)
	}
	tmp, err := os.CreateTemp(c.dir, ".incoming-*")
	if err != nil {
		return fmt.Errorf("caching %s: %w", digest, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	lw := &limitWriter{w: io.MultiWriter(tmp, h), left: size}
	err = write(lw)
	if err == nil && lw.left != 0 {
		err = fmt.Errorf("got %d bytes, want %d", size-lw.left, size)
	}
	if err == nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != sum {
			err = fmt.Errorf("got content sha256:%s", got)
		}
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(c.dir, sum))
	}
	if err != nil {
		return fmt.Errorf("caching %s: %w", digest, err)
	}
	return nil
}

// errTooLong stops a transfer that sends more than the catalog said.
var errTooLong = errors.New("more bytes than the catalog's size for it")

// limitWriter refuses to write past left bytes, so that a wrong or hostile
// stream cannot fill the disk.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errTooLong
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

// gc removes the cached files that keep does not name (left behind by
// earlier catalogs) and stale temporary files.
func (c fileCache) gc(keep map[string]bool) error {
	ents, err := os.ReadDir(c.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cleaning the file cache: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if keep["sha256:"+e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// files serves cat's static files from the cache: only the digests cat
// ships, as Apply's siteFiles does.
func (c fileCache) files(cat *catalogs.Catalog) func(context.Context, string) (io.ReadCloser, error) {
	ships := make(map[string]bool, len(cat.Files))
	for _, fr := range cat.Files {
		ships[fr.Digest] = true
	}
	return func(_ context.Context, digest string) (io.ReadCloser, error) {
		if !ships[digest] {
			return nil, fmt.Errorf("no file with digest %s in this catalog", digest)
		}
		return c.open(digest)
	}
}
