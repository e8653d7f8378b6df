package testkit

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FilesHolding returns every regular file under dirs whose bytes hold
// needle, sorted: the canary tests' search of everything Herd wrote
// (sqlite databases and their WAL files, freed pages included, logs,
// caches, backups). Symbolic links are not followed: a link is a name,
// and its target is searched where it lives, if under dirs.
func FilesHolding(tb testing.TB, needle []byte, dirs ...string) []string {
	tb.Helper()
	var out []string
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil // a file removed while the walk ran (a temp file)
				}
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if bytes.Contains(b, needle) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("searching %s: %v", dir, err)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
