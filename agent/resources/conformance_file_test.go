package resources

import (
	"os"
	"path/filepath"
	"testing"
)

// fileConformance returns the file type's conformance cases.
func fileConformance(t *testing.T) []conformanceCase {
	static := []byte("static file from the site\n")
	return []conformanceCase{
		{
			name: "file/content and mode",
			typ:  &File{},
			res:  res("file", "/motd", map[string]any{"path": "/motd", "content": "hello\n", "mode": "0600"}),
		},
		{
			name: "file/source by digest",
			typ:  &File{},
			res:  res("file", "/static.txt", map[string]any{"path": "/static.txt", "source": "files/static.txt", "digest": digestOf(static)}),
			setup: func(t *testing.T, h *Host, files *testFiles) {
				files.add(static)
			},
		},
		{
			name: "file/directory",
			typ:  &File{},
			res:  res("file", "/srv", map[string]any{"path": "/srv", "ensure": "directory", "mode": "0750"}),
		},
		{
			name: "file/link",
			typ:  &File{},
			res:  res("file", "/current", map[string]any{"path": "/current", "ensure": "link", "target": "releases/1"}),
		},
		{
			name: "file/absent",
			typ:  &File{},
			res:  res("file", "/old.conf", map[string]any{"path": "/old.conf", "ensure": "absent"}),
			setup: func(t *testing.T, h *Host, _ *testFiles) {
				writeTestFile(t, filepath.Join(h.Root, "old.conf"), "stale\n", 0o644)
			},
		},
		{
			name: "file/purged directory",
			typ:  &File{},
			res:  res("file", "/conf.d", map[string]any{"path": "/conf.d", "ensure": "directory", "purge": true}),
			setup: func(t *testing.T, h *Host, _ *testFiles) {
				if err := os.MkdirAll(filepath.Join(h.Root, "conf.d/sub"), 0o755); err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, filepath.Join(h.Root, "conf.d/stray.conf"), "x\n", 0o644)
				writeTestFile(t, filepath.Join(h.Root, "conf.d/sub/deep"), "y\n", 0o644)
			},
		},
	}
}
