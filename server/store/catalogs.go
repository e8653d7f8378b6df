package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// CatalogRecord is a stored catalog: its canonical bytes, their etag
// ("sha256:..."), the site version it was compiled at, and the server's
// signature over the bytes.
type CatalogRecord struct {
	Etag      string
	Version   string
	Catalog   []byte
	Signature []byte
	Saved     time.Time // when these bytes were first stored
}

// SaveCatalog makes the catalog with etag node's current one, keeping the
// one it replaces as the node's previous catalog, and clears the node's
// compile error (the node compiled). The bytes are stored once per etag;
// saving an etag the store holds only updates its signature (a re-signed
// catalog). Saving the node's current etag again changes nothing else.
func (s *Store) SaveCatalog(ctx context.Context, node, etag, version string, catalog, signature []byte) error {
	if node == "" || etag == "" {
		return fmt.Errorf("saving catalog of %q: empty node name or etag", node)
	}
	if signature == nil {
		signature = []byte{} // NULL is not a signature; empty says "none"
	}
	now := time.Now()
	packed := packCatalog(catalog)
	err := s.write(ctx, func(w *wtx) error {
		if _, err := w.exec(`INSERT INTO catalogs (etag, version, catalog, signature, saved) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (etag) DO UPDATE SET signature = excluded.signature WHERE catalogs.signature != excluded.signature`,
			etag, version, packed, signature, ns(now)); err != nil {
			return err
		}
		var current string
		err := w.queryRow(`SELECT catalog_etag FROM nodes WHERE name = ?`, node).Scan(&current)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if current == etag {
			_, err := w.exec(`UPDATE nodes SET compile_error = '', compile_version = '' WHERE name = ?`, node)
			return err
		}
		if _, err := w.exec(`INSERT INTO node_catalogs (node, at, etag) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, node, ns(now), etag); err != nil {
			return err
		}
		_, err = w.exec(`INSERT INTO nodes (name, first_seen, catalog_etag, catalog_saved) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET previous_etag = nodes.catalog_etag, catalog_etag = excluded.catalog_etag,
				catalog_saved = excluded.catalog_saved, compile_error = '', compile_version = ''`,
			node, ns(now), etag, ns(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("saving catalog %s of %s: %w", etag, node, err)
	}
	return nil
}

// SetCompileError records that node's catalog failed to compile at site
// version (the node keeps its current catalog); an empty msg clears it.
func (s *Store) SetCompileError(ctx context.Context, node, version, msg string) error {
	if node == "" {
		return errors.New("recording compile error: empty node name")
	}
	if msg == "" {
		version = ""
	}
	now := time.Now()
	err := s.write(ctx, func(w *wtx) error {
		_, err := w.exec(`INSERT INTO nodes (name, first_seen, compile_error, compile_version) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET compile_error = excluded.compile_error, compile_version = excluded.compile_version`,
			node, ns(now), msg, version)
		return err
	})
	if err != nil {
		return fmt.Errorf("recording compile error of %s: %w", node, err)
	}
	return nil
}

// CompileErrors returns every node's recorded compile error (by node
// name), for a restarted server to show them until its next compile.
func (s *Store) CompileErrors(ctx context.Context) (map[string]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, compile_error FROM nodes WHERE compile_error != ''`)
	if err != nil {
		return nil, fmt.Errorf("listing compile errors: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var node, msg string
		if err := rows.Scan(&node, &msg); err != nil {
			return nil, fmt.Errorf("listing compile errors: %w", err)
		}
		out[node] = msg
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing compile errors: %w", err)
	}
	return out, nil
}

const catalogColumns = `c.etag, c.version, c.catalog, c.signature, c.saved`

func scanCatalog(sc interface{ Scan(...any) error }, extra ...any) (CatalogRecord, error) {
	var c CatalogRecord
	var saved int64
	if err := sc.Scan(append([]any{&c.Etag, &c.Version, &c.Catalog, &c.Signature, &saved}, extra...)...); err != nil {
		return c, err
	}
	c.Saved = fromNS(saved)
	var err error
	if c.Catalog, err = unpackCatalog(c.Catalog); err != nil {
		return c, fmt.Errorf("catalog %s: %w", c.Etag, err)
	}
	return c, nil
}

// Catalog returns node's current catalog; ok is false when it has none.
func (s *Store) Catalog(ctx context.Context, node string) (CatalogRecord, bool, error) {
	c, err := scanCatalog(s.rdb.QueryRowContext(ctx, `SELECT `+catalogColumns+` FROM nodes n JOIN catalogs c ON c.etag = n.catalog_etag WHERE n.name = ?`, node))
	if errors.Is(err, sql.ErrNoRows) {
		return CatalogRecord{}, false, nil
	}
	if err != nil {
		return CatalogRecord{}, false, fmt.Errorf("reading catalog of %s: %w", node, err)
	}
	return c, true, nil
}

// CatalogByEtag returns the catalog stored under etag, whichever node it
// is or was current for (a node's previous catalog, a diff).
func (s *Store) CatalogByEtag(ctx context.Context, etag string) (CatalogRecord, bool, error) {
	c, err := scanCatalog(s.rdb.QueryRowContext(ctx, `SELECT `+catalogColumns+` FROM catalogs c WHERE c.etag = ?`, etag))
	if errors.Is(err, sql.ErrNoRows) {
		return CatalogRecord{}, false, nil
	}
	if err != nil {
		return CatalogRecord{}, false, fmt.Errorf("reading catalog %s: %w", etag, err)
	}
	return c, true, nil
}

// CatalogsByEtag returns the catalog bytes stored under each of etags
// that the store holds, by etag; an etag it does not hold is left out.
// It reads many in one query per etagChunk: a whole-fleet audit reads
// every node's catalog, and a query per catalog was a third of reading
// them.
func (s *Store) CatalogsByEtag(ctx context.Context, etags []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(etags))
	for chunk := range slices.Chunk(etags, etagChunk) {
		args := make([]any, len(chunk))
		for i, e := range chunk {
			args[i] = e
		}
		rows, err := s.rdb.QueryContext(ctx, `SELECT etag, catalog FROM catalogs WHERE etag IN (?`+strings.Repeat(",?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("reading catalogs: %w", err)
		}
		for rows.Next() {
			var (
				etag string
				b    []byte
			)
			if err := rows.Scan(&etag, &b); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading catalogs: %w", err)
			}
			if b, err = unpackCatalog(b); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading catalog %s: %w", etag, err)
			}
			out[etag] = b
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("reading catalogs: %w", err)
		}
	}
	return out, nil
}

// etagChunk is how many etags one CatalogsByEtag query binds.
const etagChunk = 100

// CurrentEtags returns every node's current catalog etag by node name:
// what a server that missed releases compares with its own.
func (s *Store) CurrentEtags(ctx context.Context) (map[string]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, catalog_etag FROM nodes WHERE catalog_etag != ''`)
	if err != nil {
		return nil, fmt.Errorf("listing current catalog etags: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var node, etag string
		if err := rows.Scan(&node, &etag); err != nil {
			return nil, fmt.Errorf("listing current catalog etags: %w", err)
		}
		out[node] = etag
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing current catalog etags: %w", err)
	}
	return out, nil
}

// CurrentCatalogs returns every node's current catalog by node name, for
// the server to warm its cache at start. It holds every catalog in memory
// at once.
func (s *Store) CurrentCatalogs(ctx context.Context) (map[string]CatalogRecord, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+catalogColumns+`, n.name FROM nodes n JOIN catalogs c ON c.etag = n.catalog_etag`)
	if err != nil {
		return nil, fmt.Errorf("listing current catalogs: %w", err)
	}
	defer rows.Close()
	out := map[string]CatalogRecord{}
	for rows.Next() {
		var node string
		c, err := scanCatalog(rows, &node)
		if err != nil {
			return nil, fmt.Errorf("listing current catalogs: %w", err)
		}
		out[node] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing current catalogs: %w", err)
	}
	return out, nil
}
