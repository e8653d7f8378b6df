package resources

import "testing"

// iniConformance returns the ini type's conformance cases.
func iniConformance(t *testing.T) []conformanceCase {
	conf := func(content string) func(t *testing.T, h *Host, _ *testFiles) {
		return func(t *testing.T, h *Host, _ *testFiles) { writeRootFile(t, h, "etc/app.ini", content) }
	}
	handEdit := func(content string) func(t *testing.T, h *Host) {
		return func(t *testing.T, h *Host) { writeRootFile(t, h, "etc/app.ini", content) }
	}
	return []conformanceCase{
		{
			name:  "ini/change a value",
			typ:   &INI{},
			res:   res("ini", "port", map[string]any{"path": "/etc/app.ini", "section": "server", "setting": "port", "value": "8080"}),
			setup: conf("; app\n[server]\nport=80 \nhost = a\n\n[client]\nport = 1\n"),
			drift: handEdit("[server]\nport = 9\n"),
		},
		{
			name:  "ini/add to a section",
			typ:   &INI{},
			res:   res("ini", "host", map[string]any{"path": "/etc/app.ini", "section": "server", "setting": "workers", "value": "4"}),
			setup: conf("[server]\nport = 80\n\n[client]\n"),
			drift: handEdit("[server]\n"),
		},
		{
			name:  "ini/new section in a new file",
			typ:   &INI{},
			res:   res("ini", "x", map[string]any{"path": "/etc/app.ini", "section": "main", "setting": "x", "value": "1"}),
			setup: func(t *testing.T, h *Host, _ *testFiles) { writeRootFile(t, h, "etc/other", "") },
			drift: handEdit("# all gone\n"),
		},
		{
			name:  "ini/top of the file",
			typ:   &INI{},
			res:   res("ini", "x", map[string]any{"path": "/etc/app.ini", "setting": "debug", "value": "false"}),
			setup: conf("# top\n[a]\nk = v\n"),
		},
		{
			name:  "ini/absent",
			typ:   &INI{},
			res:   res("ini", "x", map[string]any{"path": "/etc/app.ini", "section": "a", "setting": "k", "ensure": "absent"}),
			setup: conf("[a]\nk = v\nj = w\n[b]\nk = keep\n"),
			drift: handEdit("[a]\nk = again\n"),
		},
	}
}
