package resources

import (
	"os"
	"path/filepath"
	"testing"
)

// writeRootFile writes a file under the host root, making its directory.
func writeRootFile(t *testing.T, h *Host, p, content string) {
	t.Helper()
	full := filepath.Join(h.Root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, full, content, 0o644)
}

// lineConformance returns the line type's conformance cases.
func lineConformance(t *testing.T) []conformanceCase {
	appConf := func(content string) func(t *testing.T, h *Host, _ *testFiles) {
		return func(t *testing.T, h *Host, _ *testFiles) { writeRootFile(t, h, "etc/app.conf", content) }
	}
	handEdit := func(content string) func(t *testing.T, h *Host) {
		return func(t *testing.T, h *Host) { writeRootFile(t, h, "etc/app.conf", content) }
	}
	return []conformanceCase{
		{
			name:  "line/append",
			typ:   &Line{},
			res:   res("line", "allow", map[string]any{"path": "/etc/app.conf", "line": "allow 10.0.0.0/8"}),
			setup: appConf("# rules\ndeny all"),
			drift: handEdit("# rules\ndeny all\n"),
		},
		{
			name:  "line/create the file",
			typ:   &Line{},
			res:   res("line", "allow", map[string]any{"path": "/etc/app.conf", "line": "allow all"}),
			setup: func(t *testing.T, h *Host, _ *testFiles) { os.MkdirAll(filepath.Join(h.Root, "etc"), 0o755) },
		},
		{
			name:  "line/replace the first match",
			typ:   &Line{},
			res:   res("line", "port", map[string]any{"path": "/etc/app.conf", "line": "port 8080", "match": "^port "}),
			setup: appConf("host a\nport 80\nport 81\n"),
			drift: handEdit("host a\nport 80\nport 81\n"),
		},
		{
			name:  "line/replace all matches",
			typ:   &Line{},
			res:   res("line", "port", map[string]any{"path": "/etc/app.conf", "line": "port 8080", "match": "^#?port ", "replace_all": true}),
			setup: appConf("port 80\nx\n#port 81\n"),
			drift: handEdit("port 80\nx\nport 8080\n"),
		},
		{
			name:  "line/absent",
			typ:   &Line{},
			res:   res("line", "old", map[string]any{"path": "/etc/app.conf", "line": "legacy = on", "ensure": "absent"}),
			setup: appConf("a\nlegacy = on\nb\nlegacy = on"),
			drift: handEdit("legacy = on\n"),
		},
		{
			name:  "line/absent by match",
			typ:   &Line{},
			res:   res("line", "old", map[string]any{"path": "/etc/app.conf", "match": "^legacy", "ensure": "absent"}),
			setup: appConf("a\nlegacy = on\nlegacy_x = 1\nb\n"),
		},
	}
}
