package catalogs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// filterEnv declares the names a test filter may type-check against.
var filterEnv = map[string]any{"name": "", "changed": 0, "facts": map[string]any{}, "seen": time.Time{}}

func TestFilter(t *testing.T) {
	t.Parallel()
	debian := map[string]any{
		"name": "web-01", "changed": 2, "seen": time.Now().Add(-2 * time.Hour),
		"os":     map[string]any{"family": "debian"},
		"memory": map[string]any{"total_bytes": 2e9},
		"facts":  map[string]any{"os": map[string]any{"family": "debian"}},
	}
	bare := map[string]any{"name": "db-01", "changed": 0, "seen": time.Now(), "facts": map[string]any{}}
	tests := []struct {
		src        string
		env        map[string]any
		want       bool
		wantRunErr bool
	}{
		{`os.family == "debian" && memory.total_bytes < 4e9`, debian, true, false},
		{`facts.os.family == "debian"`, debian, true, false},
		{`name startsWith "web-" and changed > 0`, debian, true, false},
		{`now() - seen > duration("1h")`, debian, true, false},
		{`now() - seen > duration("1h")`, bare, false, false},
		{`os?.family == "debian"`, bare, false, false},
		{`os == nil`, bare, true, false},
		// A path through a missing fact fails on that node.
		{`os.family == "debian"`, bare, false, true},
		{`memory.total_bytes < 4e9`, bare, false, true},
	}
	for _, tt := range tests {
		f, err := CompileFilter(tt.src, filterEnv)
		if err != nil {
			t.Errorf("CompileFilter(%q) = %v", tt.src, err)
			continue
		}
		got, err := f.Matcher()(tt.env)
		if (err != nil) != tt.wantRunErr || got != tt.want {
			t.Errorf("CompileFilter(%q) over %v = %v, %v; want %v (error: %v)", tt.src, tt.env["name"], got, err, tt.want, tt.wantRunErr)
		}
	}
}

func TestFilterCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		src     string
		wantCol int
		wantMsg string
	}{
		{`name == `, 8, "unexpected token"},
		{`name > 3`, 6, "mismatched types"},
		{`os.family ==== "x"`, 13, "unexpected token"},
		{`"debian"`, 0, "expected bool"},
		{``, 1, "unexpected token EOF"},
	}
	for _, tt := range tests {
		_, err := CompileFilter(tt.src, filterEnv)
		var fe *FilterError
		if !errors.As(err, &fe) {
			t.Errorf("CompileFilter(%q) = %v, want a FilterError", tt.src, err)
			continue
		}
		if fe.Column != tt.wantCol || !strings.Contains(fe.Msg, tt.wantMsg) {
			t.Errorf("CompileFilter(%q) = column %d %q; want column %d, %q", tt.src, fe.Column, fe.Msg, tt.wantCol, tt.wantMsg)
		}
	}
}

// FuzzCompileFilter: no expression panics the compiler or a run over a
// node's env, and an error always has a message.
func FuzzCompileFilter(f *testing.F) {
	for _, s := range []string{`os.family == "debian" && memory.total_bytes < 4e9`, `name matches "^web"`, `facts.a.b[0] > 1`,
		`now() - seen > duration("1h")`, `1..1000000 | all(# > 0)`, `"\x1b[31m" == name`, `((((`, `name == `} {
		f.Add(s)
	}
	env := map[string]any{"name": "web-01", "changed": 1, "seen": time.Now(), "facts": map[string]any{"a": map[string]any{"b": []any{2.0}}},
		"os": map[string]any{"family": "debian"}, "memory": map[string]any{"total_bytes": 1e9}}
	f.Fuzz(func(t *testing.T, src string) {
		flt, err := CompileFilter(src, filterEnv)
		if err != nil {
			if err.Error() == "" {
				t.Errorf("CompileFilter(%q): an error without a message", src)
			}
			return
		}
		_, _ = flt.Matcher()(env)
	})
}

func TestFilterUses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		src  string
		want bool
	}{
		{`changed > 0 && name == "a"`, true},
		{`name == "changed"`, false},
		{`facts.changed == 1`, false},
		{`[1, 2] | any(# == changed)`, true},
		{`$env["changed"] > 0`, true},
	}
	for _, tt := range tests {
		f, err := CompileFilter(tt.src, filterEnv)
		if err != nil {
			t.Fatalf("CompileFilter(%q) = %v", tt.src, err)
		}
		if got := f.Uses("changed"); got != tt.want {
			t.Errorf("CompileFilter(%q).Uses(changed) = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func TestFilterNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		src  string
		want []string
	}{
		{`changed > 0 && os.family == "debian"`, []string{"changed", "os"}},
		{`facts.os.family == "x" || name == "y"`, []string{"facts", "name"}},
		{`$env["os"] != nil`, nil},
		{`true`, []string{}},
	}
	for _, tt := range tests {
		f, err := CompileFilter(tt.src, filterEnv)
		if err != nil {
			t.Fatalf("CompileFilter(%q) = %v", tt.src, err)
		}
		if diff := cmp.Diff(tt.want, f.Names()); diff != "" {
			t.Errorf("CompileFilter(%q).Names() (-want +got):\n%s", tt.src, diff)
		}
	}
}
