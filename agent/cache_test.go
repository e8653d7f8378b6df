package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/catalogs"
)

func TestAcceptCatalog(t *testing.T) {
	t.Parallel()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	good, err := testCatalog("web-01", "v1", fileRes("/etc/motd", "hi\n")).Encode()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := testCatalog("db-01", "v1").Encode()
	garbage := []byte(`{"not":"a catalog"}`)
	for _, tt := range []struct {
		name string
		key  ed25519.PublicKey
		etag string
		data []byte
		sig  []byte
		want string // "" for accepted
	}{
		{"good", pub, catalogs.Digest(good), good, ed25519.Sign(key, good), ""},
		{"no pinned key", nil, catalogs.Digest(good), good, ed25519.Sign(key, good), "no server signing key"},
		{"another key", pub, catalogs.Digest(good), good, ed25519.Sign(otherKey, good), "bad signature"},
		{"no signature", pub, catalogs.Digest(good), good, nil, "bad signature"},
		{"bytes changed", pub, catalogs.Digest(good), append([]byte(" "), good...), ed25519.Sign(key, good), "bad signature"},
		{"wrong etag", pub, catalogs.Digest(other), good, ed25519.Sign(key, good), "is not the digest"},
		{"signed garbage", pub, catalogs.Digest(garbage), garbage, ed25519.Sign(key, garbage), "decoding catalog"},
		{"another node's", pub, catalogs.Digest(other), other, ed25519.Sign(key, other), `compiled for node "db-01"`},
	} {
		cat, err := acceptCatalog(tt.key, "web-01", tt.etag, tt.data, tt.sig)
		switch {
		case tt.want == "" && (err != nil || cat == nil || cat.Version != "v1"):
			t.Errorf("%s: acceptCatalog = %v, %v; want the catalog", tt.name, cat, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: acceptCatalog error = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestCatalogCacheReverifies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := OpenState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	if _, _, ok, err := st.loadCatalog(ctx, pub, "web-01"); ok || err != nil {
		t.Fatalf("empty cache: ok %v, err %v", ok, err)
	}
	b, _ := testCatalog("web-01", "v1").Encode()
	etag := catalogs.Digest(b)
	if err := st.saveCatalog(ctx, "web-01", etag, b, ed25519.Sign(key, b)); err != nil {
		t.Fatal(err)
	}
	cat, got, ok, err := st.loadCatalog(ctx, pub, "web-01")
	if err != nil || !ok || got != etag || cat.Version != "v1" {
		t.Fatalf("loadCatalog = %v, %s, %v, %v", cat, got, ok, err)
	}
	// Enrolled anew with another server: its key does not verify the
	// cached catalog, which is then not used.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, _, ok, err := st.loadCatalog(ctx, other, "web-01"); ok || err == nil {
		t.Errorf("loadCatalog with another key: ok %v, err %v; want refused", ok, err)
	}
}

func TestFileCache(t *testing.T) {
	t.Parallel()
	c := fileCache{dir: filepath.Join(t.TempDir(), "files")}
	content := []byte("hello, cache\n")
	d := catalogs.Digest(content)
	write := func(b []byte) func(io.Writer) error {
		return func(w io.Writer) error { _, err := w.Write(b); return err }
	}
	if err := c.put(d, int64(len(content)), write([]byte("hello, cachE\n"))); err == nil || !strings.Contains(err.Error(), "got content") {
		t.Errorf("put of other content = %v, want a digest mismatch", err)
	}
	if err := c.put(d, int64(len(content))+1, write(content)); err == nil || !strings.Contains(err.Error(), "want 14") {
		t.Errorf("put of fewer bytes than said = %v", err)
	}
	if err := c.put(d, 4, write(content)); !errors.Is(err, errTooLong) {
		t.Errorf("put of more bytes than said = %v, want errTooLong", err)
	}
	if err := c.put("md5:abc", 3, write(content)); err == nil {
		t.Error("put accepted a bad digest")
	}
	if c.has(d) {
		t.Fatal("a refused file is in the cache")
	}
	if err := c.put(d, int64(len(content)), write(content)); err != nil {
		t.Fatal(err)
	}
	rc, err := c.open(d)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(rc); err != nil || string(b) != string(content) {
		t.Errorf("read %q, %v", b, err)
	}
	rc.Close()

	// Corrupted on disk: the read fails at its end and the copy is
	// dropped, so that the next run fetches it again.
	p := filepath.Join(c.dir, strings.TrimPrefix(d, "sha256:"))
	if err := os.WriteFile(p, []byte("bit rot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err = c.open(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("reading a corrupt cached file: %v, want an error", err)
	}
	rc.Close()
	if c.has(d) {
		t.Error("a corrupt cached file was kept")
	}

	// gc keeps only what the catalog ships.
	other := []byte("other\n")
	for _, b := range [][]byte{content, other} {
		if err := c.put(catalogs.Digest(b), int64(len(b)), write(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.gc(map[string]bool{d: true}); err != nil {
		t.Fatal(err)
	}
	if !c.has(d) || c.has(catalogs.Digest(other)) {
		t.Errorf("after gc: has kept %v, has dropped %v", c.has(d), c.has(catalogs.Digest(other)))
	}
}

// FuzzAcceptCatalog feeds arbitrary bytes, signed by the pinned key (a
// compromised or buggy server signs what it likes), through the agent's
// acceptance: it must refuse or accept without panicking, and anything it
// accepts is this node's catalog.
func FuzzAcceptCatalog(f *testing.F) {
	good, _ := testCatalog("web-01", "v1", fileRes("/etc/motd", "hi\n"), fileRes("/srv/x", "x", "mode", "0644", "drift", "watch")).Encode()
	f.Add(good)
	f.Add([]byte(`{"environment":"","files":null,"node":"web-01","resources":null,"version":""}`))
	f.Add([]byte(`{"node":"web-01","resources":[{"attrs":{"n":1e400}}]}`))
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	f.Fuzz(func(t *testing.T, data []byte) {
		cat, err := acceptCatalog(pub, "web-01", catalogs.Digest(data), data, ed25519.Sign(key, data))
		if err != nil {
			return
		}
		if cat.Node != "web-01" {
			t.Fatalf("accepted a catalog for %q", cat.Node)
		}
	})
}

// FuzzRetryAfter: the one value the agent reads from the wire outside
// protobuf and the catalog is the retry hint; whatever it holds, the hint
// is between zero and a day.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"1500", "-1", "", "9223372036854775807", " 7 ", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := retryAfter(map[string][]string{RetryAfterKey: {s}})
		if d < 0 || d > 24*time.Hour {
			t.Fatalf("retryAfter(%q) = %v", s, d)
		}
	})
}
