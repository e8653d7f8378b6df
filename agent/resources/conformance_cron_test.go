package resources

import (
	"os"
	"path/filepath"
	"testing"
)

// cronConformance returns the cron type's conformance cases.
func cronConformance(t *testing.T) []conformanceCase {
	cronDirSetup := func(t *testing.T, h *Host, _ *testFiles) {
		if err := os.MkdirAll(filepath.Join(h.Root, "etc/cron.d"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	job := map[string]any{"schedule": "*/15 * * * *", "command": "/usr/local/bin/backup --quiet", "user": "backup", "environment": map[string]string{"MAILTO": "ops@example.com", "PATH": "/usr/bin:/bin"}}
	return []conformanceCase{
		{
			name:  "cron/create",
			typ:   &Cron{},
			res:   res("cron", "backup", job),
			setup: cronDirSetup,
			drift: func(t *testing.T, h *Host) {
				p := filepath.Join(h.Root, "etc/cron.d/backup")
				writeTestFile(t, p, "* * * * * root /bin/evil\n", 0o666)
			},
		},
		{
			name: "cron/replace a link",
			typ:  &Cron{},
			res:  res("cron", "backup", job),
			setup: func(t *testing.T, h *Host, f *testFiles) {
				cronDirSetup(t, h, f)
				if err := os.Symlink("/etc/passwd", filepath.Join(h.Root, "etc/cron.d/backup")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "cron/absent",
			typ:  &Cron{},
			res:  res("cron", "old-job", map[string]any{"ensure": "absent"}),
			setup: func(t *testing.T, h *Host, f *testFiles) {
				writeRootFile(t, h, "etc/cron.d/old-job", "@daily root /bin/true\n")
			},
			drift: func(t *testing.T, h *Host) { writeRootFile(t, h, "etc/cron.d/old-job", "@daily root /bin/true\n") },
		},
	}
}
