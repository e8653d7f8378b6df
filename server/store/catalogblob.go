package store

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Catalogs are stored zstd-compressed (the fastest level). A catalog is
// JSON that repeats itself: 47 KB of the 200-resource benchmark catalog
// is 2.6 KB. A plan writes every node's catalog, and on PostgreSQL (fsync
// on, its own compression the slowest part) writing 470 MB for 10,000
// nodes was what the plan waited on; compressing one takes about 0.2 ms
// and reading one back 0.08 ms. Catalogs stored before (from migration 14
// on every catalog written is compressed) are JSON, which cannot begin
// with zstd's magic number, and are read as they are. zstd is
// klauspost/compress's, already in the module graph through OPA: Go's
// standard library has no zstd, and its flate is several times slower
// for a worse ratio.

// zstdMagic begins every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// maxCatalogBytes bounds a stored catalog decompressed: far above any
// catalog the server makes (its largest message is 16 MiB by default),
// so that damaged bytes cannot make the reader allocate without end.
const maxCatalogBytes = 256 << 20

var (
	catalogEncoder = sync.OnceValue(func() *zstd.Encoder {
		// Options that cannot fail: the error is for bad options.
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
		return e
	})
	catalogDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxCatalogBytes))
		return d
	})
)

// packCatalog returns a catalog's bytes as the store keeps them.
func packCatalog(b []byte) []byte {
	return catalogEncoder().EncodeAll(b, make([]byte, 0, len(b)/8))
}

// unpackCatalog returns the catalog bytes the store kept as b.
func unpackCatalog(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, zstdMagic) {
		return b, nil // stored before catalogs were compressed
	}
	out, err := catalogDecoder().DecodeAll(b, nil)
	if err != nil {
		return nil, fmt.Errorf("decompressing a stored catalog: %w", err)
	}
	return out, nil
}
