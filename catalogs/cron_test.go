package catalogs

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/herdcm/herd/facts"
)

func TestCheckCronSchedule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, wantErr string // wantErr: a part of the message; "" for valid
	}{
		{"* * * * *", ""},
		{"*/15 * * * *", ""},
		{"0 3 * * 1-5", ""},
		{"0,30 8-18/2 1,15 jan-jun sun", ""},
		{"0 0 * * 7", ""},
		{"0 0 1 DEC Sat", ""},
		{"@hourly", ""},
		{"@reboot", ""},
		{"", "want five fields"},
		{"* * * *", "want five fields"},
		{"* * * * * *", "want five fields"},
		{"60 * * * *", "minute field"},
		{"* 24 * * *", "hour field"},
		{"* * 0 * *", "day of month field"},
		{"* * * 13 *", "month field"},
		{"* * * * 8", "day of week field"},
		{"*/0 * * * *", "step"},
		{"5/2 * * * *", "a step needs"},
		{"10-5 * * * *", "runs backwards"},
		{"-1 * * * *", "minute field"},
		{"+1 * * * *", "minute field"},
		{"1,,2 * * * *", "minute field"},
		{"@fortnightly", "is not one of"},
		{"* * * * mon-xyz", "day of week field"},
	} {
		err := CheckCronSchedule(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckCronSchedule(%q) = %v, want nil", tc.in, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("CheckCronSchedule(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
		}
	}
}

// FuzzCheckCronSchedule feeds the schedule parser anything: it must not
// panic, and what it accepts must be a shortcut or five fields made only
// of the characters cron reads, so that a crontab line never gains a
// field or a line from a schedule.
func FuzzCheckCronSchedule(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/15 0-23/2 1,15 jan-dec mon-fri", "@daily", "0 0 * * 7", "60 * * * *", "1-/2 * * * *", "\n* * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckCronSchedule(s) != nil {
			return
		}
		if strings.HasPrefix(s, "@") {
			return
		}
		if strings.ContainsAny(s, "\n\r#%") || len(strings.Fields(s)) != 5 {
			t.Fatalf("CheckCronSchedule accepted %q", s)
		}
	})
}

// TestEditTypesImplicitEdges checks the edges the edit types get without
// writing them: a line or ini waits for the file resource of its path and
// its managed parent directory, a cron job for its user, a mount for its
// mount point's directory.
func TestEditTypesImplicitEdges(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"nodes.toml": {Data: []byte("[[node]]\nroles = [\"r\"]\n")},
		"roles/r.toml": {Data: []byte(`
[[file]]
path = "/etc/app"
ensure = "directory"
[[file]]
path = "/etc/app/app.conf"
mode = "0600"
[[line]]
name = "l"
path = "/etc/app/app.conf"
line = "x"
[[ini]]
name = "i"
path = "/etc/app/other.ini"
setting = "k"
value = "v"
[[user]]
name = "backup"
[[cron]]
name = "job"
schedule = "@daily"
command = "/bin/true"
user = "backup"
[[file]]
path = "/srv/data"
ensure = "directory"
[[mount]]
name = "/srv/data"
device = "tmpfs"
fstype = "tmpfs"
`)},
	}
	s, _, err := loadFS(fsSiteDir(fsys), LoadOptions{Version: "test"}, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := s.Compile("web-01", facts.Facts{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"line:l":          {"file:/etc/app", "file:/etc/app/app.conf"},
		"ini:i":           {"file:/etc/app"},
		"cron:job":        {"user:backup"},
		"mount:/srv/data": {"file:/srv/data"},
	}
	for id, w := range want {
		r, ok := cat.Resource(id)
		if !ok {
			t.Fatalf("no %s in the catalog", id)
		}
		if !slices.Equal(r.Require, w) {
			t.Errorf("%s requires %v, want %v", id, r.Require, w)
		}
	}
}

// TestEditTypesDefaultNames checks the names a line or ini resource gets
// when it is given none, and that two edits of one file may both go
// without.
func TestEditTypesDefaultNames(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"nodes.toml": {Data: []byte("[[node]]\nroles = [\"r\"]\n")},
		"roles/r.toml": {Data: []byte(`
[[line]]
path = "/etc/app.conf"
line = "allow {{ .node }}"
[[line]]
path = "/etc/app.conf"
match = "^legacy"
ensure = "absent"
[[ini]]
path = "/etc/app.ini"
section = "server"
setting = "port"
value = 80
[[sysctl]]
name = "vm.swappiness"
value = 10
[[ini]]
path = "/etc/app.ini"
setting = "debug"
value = "no"
require = ["ini:/etc/app.ini: [server] port"]
`)},
	}
	s, _, err := loadFS(fsSiteDir(fsys), LoadOptions{Version: "test"}, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := s.Compile("web-01", facts.Facts{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range cat.Resources {
		ids = append(ids, r.ID)
	}
	want := []string{"ini:/etc/app.ini: [server] port", "ini:/etc/app.ini: debug", "line:/etc/app.conf: /^legacy/", "line:/etc/app.conf: allow web-01", "sysctl:vm.swappiness"}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("resources %q, want %q", ids, want)
	}
	// An integer value is stored as the text it stands for.
	for id, v := range map[string]string{"ini:/etc/app.ini: [server] port": "80", "sysctl:vm.swappiness": "10"} {
		if r, _ := cat.Resource(id); r.String("value") != v {
			t.Errorf("%s value = %#v, want %q", id, r.Attrs["value"], v)
		}
	}
}
