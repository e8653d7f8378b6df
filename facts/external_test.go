package facts

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeFiles makes dir/name for each entry; a mode with an x bit makes an
// executable.
func writeFiles(t *testing.T, dir string, files map[string]struct {
	mode os.FileMode
	body string
}) {
	t.Helper()
	for name, f := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
	}
}

type file = struct {
	mode os.FileMode
	body string
}

func TestExternalFacts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]file{
		"a.toml":       {0o644, "toml_fact = \"yes\"\n[toml_table]\nn = 1\nwhen = 2024-05-01T10:00:00Z\n"},
		"b.json":       {0o644, `{"json_fact": {"list": [1, 2.5, "x", null]}}`},
		"c-json.sh":    {0o755, "#!/bin/sh\necho '{\"exec_json\": {\"ok\": true, \"root\": \"'\"$HERD_ROOT\"'\"}}'\n"},
		"d-kv.sh":      {0o755, "#!/bin/sh\necho 'exec_kv=hello world'\necho '# a comment'\necho 'app.version = 1.2'\necho 'app.env=prod'\n"},
		"e-bad.json":   {0o644, "{\"broken\": 1,\n  \"x\": }\n"},
		"f-noexec.sh":  {0o644, "#!/bin/sh\necho noexec=1\n"},
		"g.txt":        {0o644, "txt_fact=1\n"},
		"h-bad.toml":   {0o644, "ok = 1\nnot toml at all\n"},
		"notes.md":     {0o644, "# not a fact\n"},
		"data.csv":     {0o644, "not,a,fact\n"},
		".hidden.sh":   {0o755, "#!/bin/sh\necho hidden=1\n"},
		"old.sh~":      {0o755, "#!/bin/sh\necho backup=1\n"},
		"os.json":      {0o644, `{"os": {"family": "overridden"}}`},
		"protect.json": {0o644, `{"herd": {"version": "evil"}, "identity": {"root": false}, "kept": true}`},
		"z-fails.sh":   {0o755, "#!/bin/sh\necho partial=1\necho boom >&2\nexit 3\n"},
		"z-list.sh":    {0o755, "#!/bin/sh\necho '[1,2]'\n"},
	})
	if err := os.Mkdir(filepath.Join(dir, "subdir.json"), 0o755); err != nil {
		t.Fatal(err)
	}

	only := []string{"toml_fact", "toml_table", "json_fact", "exec_json", "exec_kv", "app", "txt_fact", "os", "herd", "identity", "kept",
		"broken", "noexec", "hidden", "backup", "partial"}
	f, err := Collect(t.Context(), Options{ExternalDir: dir, Only: only, AgentVersion: "test"})

	got := Facts{}
	for _, k := range only {
		if k == "identity" {
			continue // host-dependent; checked below
		}
		if v, ok := f[k]; ok {
			got[k] = v
		}
	}
	want := Facts{
		"toml_fact":  "yes",
		"toml_table": map[string]any{"n": int64(1), "when": "2024-05-01T10:00:00Z"},
		"json_fact":  map[string]any{"list": []any{int64(1), 2.5, "x", nil}},
		"exec_json":  map[string]any{"ok": true, "root": "/"},
		"exec_kv":    "hello world",
		"app":        map[string]any{"version": "1.2", "env": "prod"},
		"txt_fact":   "1",
		"os":         map[string]any{"family": "overridden"},
		"herd":       map[string]any{"version": "test"},
		"kept":       true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Collect(external) mismatch (-want +got):\n%s", diff)
	}
	if root, _ := f.Lookup("identity.root"); root != (os.Geteuid() == 0) {
		t.Errorf("identity.root = %v, an external fact overrode it", root)
	}

	if err == nil {
		t.Fatal("Collect(external) error = nil, want the broken files named")
	}
	msg := err.Error()
	for _, w := range []string{
		filepath.Join(dir, "e-bad.json") + ": line 2, column 8: invalid character '}'",
		filepath.Join(dir, "f-noexec.sh") + ": has a #! line but is not executable",
		filepath.Join(dir, "h-bad.toml") + ": line 2, column",
		filepath.Join(dir, "protect.json") + `: may not override "herd"`,
		filepath.Join(dir, "protect.json") + `: may not override "identity"`,
		filepath.Join(dir, "z-fails.sh") + ": running: exit status 3: boom",
		filepath.Join(dir, "z-list.sh") + ": the top level is an array, not a JSON object",
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("Collect(external) error lacks %q; got:\n%s", w, msg)
		}
	}
	if n := len(unjoinTest(err)); n != 7 {
		t.Errorf("Collect(external) gave %d errors, want 7:\n%s", n, msg)
	}
}

func unjoinTest(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestExternalMissingDir(t *testing.T) {
	t.Parallel()
	f, err := Collect(t.Context(), Options{ExternalDir: filepath.Join(t.TempDir(), "nope"), Only: []string{"x"}})
	if err != nil || len(f) != 0 {
		t.Errorf("Collect(missing facts dir) = %v, %v; want no facts, no error", f, err)
	}
}

// TestExternalHangingScript checks that a script that hangs is killed with
// its children when the timeout passes, and that the run does not wait.
func TestExternalHangingScript(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	writeFiles(t, dir, map[string]file{
		"hang.sh": {0o755, "#!/bin/sh\nsleep 60 &\necho $! > " + pidFile + "\nsleep 60\n"},
		"ok.json": {0o644, `{"fine": 1}`},
	})
	start := time.Now()
	// The timeout leaves a loaded machine time to start the script and
	// its child (200 ms did not, in CI), and is still far below the
	// script's 60 s.
	f, err := Collect(t.Context(), Options{ExternalDir: dir, Only: []string{"fine"}, Timeout: 2 * time.Second})
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("Collect(hanging script) took %v, want about the 2s timeout", took)
	}
	if want := filepath.Join(dir, "hang.sh") + ": timed out after"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Collect(hanging script) error = %v, want %q", err, want)
	}
	if f["fine"] != int64(1) {
		t.Errorf("Collect(hanging script) fine = %v, want 1 from the other file", f["fine"])
	}
	waitGone(t, pidFile)
}

// TestExternalScriptLeavesChild checks that a script that exits while a
// child still holds its stdout is not waited for, and that the child is
// killed.
func TestExternalScriptLeavesChild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	writeFiles(t, dir, map[string]file{
		"daemon.sh": {0o755, "#!/bin/sh\nsleep 60 &\necho $! > " + pidFile + "\necho left=child\n"},
	})
	start := time.Now()
	f, err := Collect(t.Context(), Options{ExternalDir: dir, Only: []string{"left"}, Timeout: 10 * time.Second})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Collect(script leaving a child) took %v", took)
	}
	if err != nil || f["left"] != "child" {
		t.Errorf("Collect(script leaving a child) = %v, %v; want left=child, no error", f, err)
	}
	waitGone(t, pidFile)
}

// waitGone fails unless the process whose pid is in pidFile is gone (or a
// zombie) within a few seconds.
func waitGone(t *testing.T, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the script did not record its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("the script's child %d outlived it", pid)
}

func TestParseKeyValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Facts
		wantErr string
	}{
		{"", Facts{}, ""},
		{"a=1\n\n# c\nb = two words \r\n", Facts{"a": "1", "b": "two words"}, ""},
		{"a=b=c", Facts{"a": "b=c"}, ""},
		{"x.y=1\nx.z=2", Facts{"x": map[string]any{"y": "1", "z": "2"}}, ""},
		{"empty=", Facts{"empty": ""}, ""},
		{"a=1\nnot a pair\n", nil, `line 2: want key=value, got "not a pair"`},
		{"=1", nil, `line 1: bad key ""`},
		{"a..b=1", nil, `line 1: bad key "a..b"`},
		{"a=1\na.b=2", nil, `line 2: "a" is already a value, not a table`},
		{"a.b=1\na=2", nil, `line 2: "a" is already a table, not a value`},
	}
	for _, tt := range tests {
		got, err := parseKeyValue([]byte(tt.in))
		if errString(err) != tt.wantErr {
			t.Errorf("parseKeyValue(%q) error = %v, want %q", tt.in, err, tt.wantErr)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseKeyValue(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseJSONFacts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Facts
		wantErr string
	}{
		{`{"a": 1, "b": 1.5, "c": 1e400}`, Facts{"a": int64(1), "b": 1.5, "c": "1e400"}, ""},
		{`{}`, Facts{}, ""},
		{`{"a": 1} {"b": 2}`, nil, "line 1, column 10: data after the JSON object"},
		{"{\n\"a\": tru}", nil, "line 2, column 9: invalid character '}' in literal true (expecting 'e')"},
		{`{"a": `, nil, "line 1, column 7: unexpected end of JSON"},
		{`"s"`, nil, "the top level is a string, not a JSON object"},
	}
	for _, tt := range tests {
		got, err := parseJSONFacts([]byte(tt.in))
		if errString(err) != tt.wantErr {
			t.Errorf("parseJSONFacts(%q) error = %v, want %q", tt.in, err, tt.wantErr)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseJSONFacts(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseTOMLFacts(t *testing.T) {
	t.Parallel()
	got, err := parseTOMLFacts([]byte("f = nan\nd = 1979-05-27\nt = 07:32:00\n[a.b]\nc = [1, \"x\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Facts{"f": "NaN", "d": "1979-05-27", "t": "07:32:00", "a": map[string]any{"b": map[string]any{"c": []any{int64(1), "x"}}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseTOMLFacts mismatch (-want +got):\n%s", diff)
	}
}

// TestSandboxExecutablesRunOnlyWhenAsked: an executable in a sandbox
// root's facts directory is reported and not run, unless SandboxExec;
// data files count either way.
func TestSandboxExecutablesRunOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		t.Run(strconv.FormatBool(allow), func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			dir := filepath.Join(root, "etc/herd/facts.d")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			ran := filepath.Join(t.TempDir(), "ran")
			writeFiles(t, dir, map[string]file{
				"a.toml": {0o644, "data_fact = 1\n"},
				"b.sh":   {0o755, "#!/bin/sh\ntouch " + ran + "\necho exec_fact=1\n"},
			})
			f, err := Collect(t.Context(), Options{Root: root, SandboxExec: allow, Only: []string{"data_fact", "exec_fact"}})
			if _, ok := f["data_fact"]; !ok {
				t.Errorf("data_fact missing: %v", f)
			}
			_, statErr := os.Stat(ran)
			_, got := f["exec_fact"]
			if got != allow || (statErr == nil) != allow {
				t.Errorf("SandboxExec %v: exec_fact present %v, script ran %v; want %v", allow, got, statErr == nil, allow)
			}
			notRun := err != nil && strings.Contains(err.Error(), "b.sh: not run")
			if notRun == allow {
				t.Errorf("SandboxExec %v: error %v", allow, err)
			}
		})
	}
}
