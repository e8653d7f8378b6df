package resources

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

// conformanceCase is one resource of one type, run through the contract
// every type must keep. Each type's test file contributes its cases.
type conformanceCase struct {
	name string
	typ  Type
	res  catalogs.Resource
	// setup prepares the fresh root (a dpkg status file, accounts, static
	// files the resource ships).
	setup func(t *testing.T, h *Host, files *testFiles)
	// tools the case needs on this machine; the case is skipped, saying
	// which is missing, only when one truly is.
	tools []string
	// root, when set, says why the case needs root (dpkg installs,
	// usermod chroots into the host root); it is skipped otherwise.
	root string
	// refresh says the type has a meaningful Refresh for this resource.
	refresh bool
	// drift, when set, changes the converged host by hand: Check must
	// find work again and Apply put it back.
	drift func(t *testing.T, h *Host)
}

// allConformanceCases gathers every type's cases into one table.
func allConformanceCases(t *testing.T) []conformanceCase {
	var cs []conformanceCase
	for _, f := range []func(*testing.T) []conformanceCase{
		fileConformance, packageConformance, userConformance, groupConformance, execConformance, serviceConformance,
		lineConformance, iniConformance, cronConformance, sysctlConformance, mountConformance,
		authorizedKeyConformance, aptRepositoryConformance,
	} {
		cs = append(cs, f(t)...)
	}
	return cs
}

// TestConformance runs every type's cases through the contract of
// CONVENTIONS.md §4, each in a fresh root:
//   - Check on a fresh root finds something to do;
//   - Check changes nothing (the tree's hash is unchanged), which is what
//     makes noop safe;
//   - Apply then Check is in sync;
//   - a second Check is in sync again, so a second run never calls Apply.
func TestConformance(t *testing.T) {
	t.Parallel()
	cases := allConformanceCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			testkit.NeedTools(t, tc.tools...)
			if tc.root != "" {
				testkit.NeedRoot(t, tc.root)
			}
			h, files := newTestHost(t)
			if tc.setup != nil {
				tc.setup(t, h, files)
			}
			res := tc.res
			h.Catalog = &catalogs.Catalog{Node: "test", Resources: []catalogs.Resource{res}}
			ctx := context.Background()

			before := treeHash(t, h.Root)
			p, err := tc.typ.Check(ctx, h, &res)
			if err != nil {
				t.Fatalf("Check on a fresh root: %v", err)
			}
			if p.InSync() {
				t.Fatal("Check on a fresh root found nothing to do")
			}
			if after := treeHash(t, h.Root); after != before {
				t.Fatal("Check changed the host")
			}
			for _, c := range p.Changes {
				if c.Action == 0 || c.Attr == "" {
					t.Errorf("change %+v has no attribute or action", c)
				}
			}
			if err := tc.typ.Apply(ctx, h, p); err != nil {
				t.Fatalf("Apply: %v (output %q)", err, p.Output)
			}
			again, err := tc.typ.Check(ctx, h, &res)
			if err != nil {
				t.Fatalf("Check after Apply: %v", err)
			}
			if !again.InSync() {
				t.Fatalf("did not converge: Check after Apply = %+v", again.Changes)
			}
			settled := treeHash(t, h.Root)
			third, err := tc.typ.Check(ctx, h, &res)
			if err != nil || !third.InSync() {
				t.Fatalf("second run: Check = %+v, %v; want in sync", third, err)
			}
			if treeHash(t, h.Root) != settled {
				t.Fatal("a Check of a converged resource changed the host")
			}
			if tc.drift != nil {
				tc.drift(t, h)
				p, err := tc.typ.Check(ctx, h, &res)
				if err != nil || p.InSync() {
					t.Fatalf("after a hand change: Check = %+v, %v; want changes", p, err)
				}
				if err := tc.typ.Apply(ctx, h, p); err != nil {
					t.Fatalf("putting the hand change back: %v", err)
				}
				if again, err := tc.typ.Check(ctx, h, &res); err != nil || !again.InSync() {
					t.Fatalf("after putting back: Check = %+v, %v; want in sync", again, err)
				}
			}
			if tc.refresh {
				r, ok := tc.typ.(Refresher)
				if !ok {
					t.Fatalf("%T does not implement Refresher", tc.typ)
				}
				if err := r.Refresh(ctx, h, &res); err != nil {
					t.Fatalf("Refresh: %v", err)
				}
			}
		})
	}
}

// testFiles serves static files by digest, as the site or server would.
type testFiles struct {
	mu sync.Mutex
	m  map[string][]byte
}

// add stores content and returns its digest.
func (f *testFiles) add(content []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := catalogs.Digest(content)
	f.m[d] = content
	return d
}

func (f *testFiles) open(_ context.Context, digest string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.m[digest]
	if !ok {
		return nil, fmt.Errorf("no file with digest %s", digest)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// dirContent is a ContentStore in a directory, for tests.
type dirContent struct {
	dir string
	mu  sync.Mutex
	log []string // paths saved, in order
}

func (d *dirContent) Save(_ context.Context, path string, r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	digest := catalogs.Digest(b)
	if err := os.WriteFile(filepath.Join(d.dir, digest[len("sha256:"):]), b, 0o600); err != nil {
		return "", err
	}
	d.mu.Lock()
	d.log = append(d.log, path)
	d.mu.Unlock()
	return digest, nil
}

// newTestHost returns a host with a fresh empty root.
func newTestHost(t *testing.T) (*Host, *testFiles) {
	t.Helper()
	root := t.TempDir()
	files := &testFiles{m: map[string][]byte{}}
	h := &Host{
		Root: root,
		Run: func(ctx context.Context, c Cmd) (Result, error) {
			return RunCommand(ctx, root, c)
		},
		Content: &dirContent{dir: t.TempDir()},
		Files:   files.open,
		Log:     slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	return h, files
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// treeHash digests everything observable under root: paths, types,
// permissions, owners, link targets and contents.
func treeHash(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	sum := sha256.New()
	for _, l := range lines {
		fmt.Fprintln(sum, l)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// res builds a catalog resource for a test.
func res(typ, name string, attrs map[string]any) catalogs.Resource {
	if attrs == nil {
		attrs = map[string]any{}
	}
	return catalogs.Resource{ID: typ + ":" + name, Type: typ, Name: name, Attrs: attrs, Source: "test"}
}
