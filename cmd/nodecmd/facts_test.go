package nodecmd

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// runFacts runs `herd facts args…` in process and returns its stdout,
// stderr and exit code.
func runFacts(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := NewRoot("herd", "", "")
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"facts"}, args...))
	code = ExitOK
	if err := root.Execute(); err != nil {
		code = ExitError
		var ce exitCoder
		if errors.As(err, &ce) {
			code = ce.ExitCode()
		}
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

func TestFactsCommand(t *testing.T) {
	t.Parallel()
	tree, err := filepath.Abs("../../facts/testdata/debian12")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{"one value", []string{"--root", tree, "os.family"}, "debian\n", "", ExitOK},
		{"external value", []string{"--root", tree, "role.name"}, "web\n", "", ExitOK},
		{"several", []string{"--root", tree, "os.release", "hostname"},
			"os.release.full  = 12.5\nos.release.major = 12\nos.release.minor = 5\nhostname         = web-01\n", "", ExitOK},
		{"json", []string{"--root", tree, "--json", "os.family", "processors.count"},
			"{\n  \"os.family\": \"debian\",\n  \"processors.count\": 2\n}\n", "", ExitOK},
		{"list inline", []string{"--root", tree, "owner.oncall"}, "[\"ana\",\"bo\"]\n", "", ExitOK},
		{"missing", []string{"--root", tree, "os.famly"}, "", `no fact named "os.famly"`, ExitError},
		{"some missing", []string{"--root", tree, "hostname", "nope"}, "hostname = web-01\n", `no fact named "nope"`, ExitError},
		{"bad flag", []string{"--nope"}, "", "unknown flag", ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, code := runFacts(t, tt.args...)
			if diff := cmp.Diff(tt.wantOut, out); diff != "" {
				t.Errorf("herd facts %q stdout mismatch (-want +got):\n%s", tt.args, diff)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("herd facts %q stderr = %q, want it to contain %q", tt.args, errOut, tt.wantErr)
			}
			if code != tt.wantCode {
				t.Errorf("herd facts %q exit = %d, want %d", tt.args, code, tt.wantCode)
			}
		})
	}
}

// TestFactsCommandWarns checks that a failing collector is a warning and
// the rest still prints with exit 0.
func TestFactsCommandWarns(t *testing.T) {
	t.Parallel()
	out, errOut, code := runFacts(t, "--root", t.TempDir(), "--json")
	if code != ExitOK {
		t.Errorf("herd facts (empty root) exit = %d, want 0; stderr:\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "herd: warning: collector os: reading ") {
		t.Errorf("herd facts (empty root) stderr lacks the os warning:\n%s", errOut)
	}
	if !strings.Contains(out, `"herd": {`) {
		t.Errorf("herd facts (empty root) stdout lacks the herd fact:\n%s", out)
	}
}

func TestFormatValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{"debian", "debian"},
		{"", `""`},
		{" padded", `" padded"`},
		{"two\nlines", `"two\nlines"`},
		{int64(3), "3"},
		{2.5, "2.5"},
		{true, "true"},
		{nil, "null"},
		{[]any{"rw", "ro"}, `["rw","ro"]`},
		{map[string]any{}, "{}"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.in); got != tt.want {
			t.Errorf("formatValue(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
