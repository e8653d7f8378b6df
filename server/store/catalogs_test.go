package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestCatalogs(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)

		if _, ok, err := s.Catalog(ctx, "web-01"); err != nil || ok {
			t.Errorf("Catalog of an unknown node = %v, %v", ok, err)
		}
		c1 := CatalogRecord{Etag: "sha256:c1", Version: "v1", Catalog: []byte(`{"resources":[]}`), Signature: []byte("sig-1")}
		c2 := CatalogRecord{Etag: "sha256:c2", Version: "v2", Catalog: []byte(`{"resources":[1]}`), Signature: []byte("sig-2")}
		save := func(node string, c CatalogRecord) {
			t.Helper()
			if err := s.SaveCatalog(ctx, node, c.Etag, c.Version, c.Catalog, c.Signature); err != nil {
				t.Fatalf("SaveCatalog(%s, %s) = %v", node, c.Etag, err)
			}
		}
		ignoreSaved := cmpopts.IgnoreFields(CatalogRecord{}, "Saved")

		save("web-01", c1)
		must(t, s.SetCompileError(ctx, "web-01", "v2", "boom"))
		if n, _, _ := s.Node(ctx, "web-01"); n.CompileError != "boom" || n.CompileVersion != "v2" || n.CatalogEtag != "sha256:c1" {
			t.Errorf("after a compile error: %+v; want the error and the catalog kept", n)
		}
		save("web-01", c2) // compiles again: the error goes
		save("web-01", c2) // the same again: nothing moves
		save("web-02", c1) // shares the bytes of web-01's previous

		got, ok, err := s.Catalog(ctx, "web-01")
		if err != nil || !ok {
			t.Fatalf("Catalog(web-01) = %v, %v", ok, err)
		}
		if d := cmp.Diff(c2, got, ignoreSaved); d != "" {
			t.Errorf("Catalog(web-01) (-want +got):\n%s", d)
		}
		if got.Saved.IsZero() {
			t.Error("Catalog(web-01).Saved is zero")
		}
		n, _, _ := s.Node(ctx, "web-01")
		if n.CatalogEtag != "sha256:c2" || n.PreviousEtag != "sha256:c1" || n.CatalogVersion != "v2" || n.CompileError != "" || n.CompileVersion != "" {
			t.Errorf("Node(web-01) = %+v; want current c2, previous c1, no compile error", n)
		}
		if got, ok, err := s.CatalogByEtag(ctx, "sha256:c1"); err != nil || !ok {
			t.Errorf("CatalogByEtag(c1) = %v, %v", ok, err)
		} else if d := cmp.Diff(c1, got, ignoreSaved); d != "" {
			t.Errorf("CatalogByEtag(c1) (-want +got):\n%s", d)
		}
		if _, ok, err := s.CatalogByEtag(ctx, "sha256:none"); err != nil || ok {
			t.Errorf("CatalogByEtag(none) = %v, %v", ok, err)
		}

		cur, err := s.CurrentCatalogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(map[string]CatalogRecord{"web-01": c2, "web-02": c1}, cur, ignoreSaved); d != "" {
			t.Errorf("CurrentCatalogs (-want +got):\n%s", d)
		}
		if etags, err := s.CurrentEtags(ctx); err != nil {
			t.Fatal(err)
		} else if d := cmp.Diff(map[string]string{"web-01": "sha256:c2", "web-02": "sha256:c1"}, etags); d != "" {
			t.Errorf("CurrentEtags (-want +got):\n%s", d)
		}

		var blobs, hist int
		if err := s.rdb.QueryRow(`SELECT (SELECT COUNT(*) FROM catalogs), (SELECT COUNT(*) FROM node_catalogs)`).Scan(&blobs, &hist); err != nil {
			t.Fatal(err)
		}
		if blobs != 2 || hist != 3 {
			t.Errorf("%d catalogs, %d history rows; want 2 (by etag) and 3 (c1, c2 for web-01; c1 for web-02)", blobs, hist)
		}

		// A re-signed catalog keeps its bytes and takes the new signature.
		save("web-01", CatalogRecord{Etag: c2.Etag, Version: c2.Version, Catalog: c2.Catalog, Signature: []byte("sig-2b")})
		if got, _, _ := s.Catalog(ctx, "web-01"); string(got.Signature) != "sig-2b" {
			t.Errorf("signature after re-signing = %q", got.Signature)
		}
		// An empty message clears a compile error.
		must(t, s.SetCompileError(ctx, "web-02", "v9", "bad"))
		must(t, s.SetCompileError(ctx, "web-02", "v9", ""))
		if n, _, _ := s.Node(ctx, "web-02"); n.CompileError != "" || n.CompileVersion != "" {
			t.Errorf("compile error after clearing = %q at %q", n.CompileError, n.CompileVersion)
		}
	})
}

// TestCatalogsByEtag: many catalogs in one read, across query chunks;
// an etag the store lacks is left out, and no etags read nothing.
func TestCatalogsByEtag(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		want := map[string][]byte{}
		var etags []string
		for i := range etagChunk + 7 {
			etag := fmt.Sprintf("sha256:%d", i)
			want[etag] = []byte(fmt.Sprintf(`{"n":%d}`, i))
			must(t, s.SaveCatalog(ctx, fmt.Sprintf("node-%d", i), etag, "v1", want[etag], []byte("sig")))
			etags = append(etags, etag)
		}
		got, err := s.CatalogsByEtag(ctx, append(etags, "sha256:missing"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("CatalogsByEtag (-want +got):\n%s", diff)
		}
		if got, err := s.CatalogsByEtag(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("CatalogsByEtag(nil) = %v, %v; want nothing", got, err)
		}
	})
}
