package store

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCatalogsStoredCompressed: a catalog is stored compressed and read
// back as it was saved, through each way of reading one; a catalog
// stored before (plain JSON) reads as it is; damaged bytes are an error
// naming the catalog.
func TestCatalogsStoredCompressed(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		cat := []byte(`{"environment":"","files":[],"node":"web-01","resources":[` + strings.Repeat(`{"id":"file:/etc/x","type":"file"},`, 500) + `{}],"version":"v1"}`)
		must(t, s.SaveCatalog(ctx, "web-01", "sha256:new", "v1", cat, []byte("sig")))
		must(t, s.PutCatalogs(ctx, []CatalogRecord{{Etag: "sha256:cand", Version: "v2", Catalog: cat, Signature: []byte("sig")}}))
		var stored []byte
		if err := s.rdb.QueryRow(`SELECT catalog FROM catalogs WHERE etag = 'sha256:new'`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(stored, zstdMagic) || len(stored) > len(cat)/4 {
			t.Errorf("stored %d bytes for a %d-byte catalog, want it compressed", len(stored), len(cat))
		}
		if rec, ok, err := s.Catalog(ctx, "web-01"); err != nil || !ok || !bytes.Equal(rec.Catalog, cat) {
			t.Errorf("Catalog(web-01) = %d bytes, %v, %v; want the catalog saved", len(rec.Catalog), ok, err)
		}
		if rec, ok, err := s.CatalogByEtag(ctx, "sha256:cand"); err != nil || !ok || !bytes.Equal(rec.Catalog, cat) {
			t.Errorf("CatalogByEtag(cand) = %d bytes, %v, %v; want the catalog put", len(rec.Catalog), ok, err)
		}

		// Stored before catalogs were compressed, and damaged.
		must(t, s.write(ctx, func(w *wtx) error {
			if _, err := w.exec(`INSERT INTO catalogs (etag, version, catalog, signature, saved) VALUES ('sha256:old', 'v0', ?, ?, 1)`, cat, []byte{}); err != nil {
				return err
			}
			_, err := w.exec(`INSERT INTO catalogs (etag, version, catalog, signature, saved) VALUES ('sha256:bad', 'v0', ?, ?, 1)`,
				append(append([]byte(nil), zstdMagic...), "not zstd"...), []byte{})
			return err
		}))
		byEtag, err := s.CatalogsByEtag(ctx, []string{"sha256:old", "sha256:new", "sha256:cand"})
		if err != nil || len(byEtag) != 3 {
			t.Fatalf("CatalogsByEtag = %d catalogs, %v", len(byEtag), err)
		}
		for etag, b := range byEtag {
			if !bytes.Equal(b, cat) {
				t.Errorf("CatalogsByEtag: %s is %d bytes, want the catalog", etag, len(b))
			}
		}
		if _, _, err := s.CatalogByEtag(ctx, "sha256:bad"); err == nil || !strings.Contains(err.Error(), "sha256:bad") {
			t.Errorf("CatalogByEtag(damaged) = %v, want an error naming it", err)
		}
	})
}

// FuzzUnpackCatalog: a packed catalog unpacks to itself; any stored
// bytes unpack or fail without a panic.
func FuzzUnpackCatalog(f *testing.F) {
	f.Add([]byte(`{"node":"n"}`), []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0})
	f.Add([]byte{}, packCatalog([]byte(`{"resources":[]}`)))
	f.Fuzz(func(t *testing.T, cat, stored []byte) {
		got, err := unpackCatalog(packCatalog(cat))
		if err != nil || !bytes.Equal(got, cat) {
			t.Fatalf("unpack(pack(%q)) = %q, %v", cat, got, err)
		}
		if out, err := unpackCatalog(stored); err == nil && !bytes.HasPrefix(stored, zstdMagic) && !bytes.Equal(out, stored) {
			t.Fatalf("plain bytes %q unpacked to %q", stored, out)
		}
	})
}
