package server

import (
	"context"
	"log/slog"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/herdcm/herd/testkit"
)

// TestMatchBranches: names and globs select branches, each once, sorted;
// a branch that cannot be an environment is never selected.
func TestMatchBranches(t *testing.T) {
	t.Parallel()
	branches := []string{"production", "staging", "feature-a", "feature-b", "team/web", "-x", "bad name", "a..b", "x.lock"}
	tests := []struct {
		patterns []string
		want     []string
	}{
		{[]string{"production", "staging"}, []string{"production", "staging"}},
		{[]string{"feature-*"}, []string{"feature-a", "feature-b"}},
		{[]string{"*"}, []string{"feature-a", "feature-b", "production", "staging"}},
		{[]string{"team/*", "staging", "staging"}, []string{"staging", "team/web"}},
		{[]string{"*x*", "a*", "*lock"}, nil},
		{[]string{"qa"}, nil},
	}
	for _, tt := range tests {
		if got := matchBranches(tt.patterns, branches); !slices.Equal(got, tt.want) {
			t.Errorf("matchBranches(%q) = %q, want %q", tt.patterns, got, tt.want)
		}
	}
}

// TestCheckEnvironments: a bad pattern or default is refused with what is
// wrong, before the server starts.
func TestCheckEnvironments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		patterns []string
		def      string
		says     string // "" for no error
	}{
		{[]string{"production", "staging", "feature-*", "team/[a-c]*"}, "production", ""},
		{nil, "", ""},
		{[]string{""}, "", "environments[0]: an empty pattern"},
		{[]string{"ok", "[x"}, "", "environments[1]: pattern \"[x\""},
		{[]string{"a b"}, "", "cannot be in a branch name"},
		{[]string{"a~1"}, "", "cannot be in a branch name"},
		{[]string{"*"}, "bad name", "default_environment"},
		{[]string{"*"}, "../x", "default_environment"},
		{nil, "staging", "needs environments"},
	}
	for _, tt := range tests {
		err := CheckEnvironments(tt.patterns, tt.def)
		switch {
		case tt.says == "" && err != nil:
			t.Errorf("CheckEnvironments(%q, %q) = %v, want nil", tt.patterns, tt.def, err)
		case tt.says != "" && (err == nil || !strings.Contains(err.Error(), tt.says)):
			t.Errorf("CheckEnvironments(%q, %q) = %v, want an error saying %q", tt.patterns, tt.def, err, tt.says)
		}
	}
}

// FuzzEnvironmentPatterns: whatever patterns and branch names arrive
// (server.toml is the operator's, branch names anyone's who can push),
// checking and matching never panic, a checked pattern's matches are
// each a valid environment name the pattern matches, and a name an
// agent sends is valid only when it is short and of the allowed
// characters.
func FuzzEnvironmentPatterns(f *testing.F) {
	f.Add("feature-*", "feature-a\nproduction\nteam/web")
	f.Add("[", "x")
	f.Add("*", "-x\n..\na//b\n.hidden\nx.lock\n")
	f.Add("team/?eb", "team/web\nteam/Web\nteam/w/eb")
	f.Fuzz(func(t *testing.T, pattern, branchList string) {
		branches := strings.Split(branchList, "\n")
		if err := CheckEnvironments([]string{pattern}, ""); err != nil {
			return
		}
		got := matchBranches([]string{pattern}, branches)
		if !slices.IsSorted(got) {
			t.Errorf("matchBranches(%q) = %q: not sorted", pattern, got)
		}
		for _, b := range got {
			if !validEnvName(b) {
				t.Errorf("matchBranches(%q) selected %q, not a valid environment name", pattern, b)
			}
			if ok, _ := path.Match(pattern, b); !ok {
				t.Errorf("matchBranches(%q) selected %q, which the pattern does not match", pattern, b)
			}
		}
		for _, b := range branches {
			if validEnvName(b) && (len(b) > 255 || strings.ContainsAny(b, " \t\n\\:~^*?[")) {
				t.Errorf("validEnvName(%q) = true", b)
			}
		}
	})
}

// TestEnvironmentsNeedTheDefaultBranch: with environments, the default
// environment must be one of the branches they select, and a site that is
// not a git repository is refused; either way the server does not start
// and says what it found.
func TestEnvironmentsNeedTheDefaultBranch(t *testing.T) {
	t.Parallel()
	testkit.NeedTools(t, "git")
	site := t.TempDir()
	writeFiles(t, site, testSite)
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "one"}, {"branch", "staging"}} {
		testkit.Git(t, site, args...)
	}
	plain := t.TempDir()
	writeFiles(t, plain, testSite)
	tests := []struct {
		site     string
		patterns []string
		def      string
		says     string
	}{
		{site, []string{"main", "staging"}, "", `the default environment "production" is not a branch`},
		{site, []string{"staging"}, "main", "(branches: main, staging)"},
		{plain, []string{"*"}, "", "listing the branches of"},
	}
	for _, tt := range tests {
		s, err := New(context.Background(), Options{Site: tt.site, Dir: t.TempDir(), Environments: tt.patterns, DefaultEnvironment: tt.def,
			Log: slog.New(slog.NewTextHandler(testLog{t}, nil))})
		if err == nil {
			s.Close()
			t.Errorf("New(environments %q, default %q) started", tt.patterns, tt.def)
			continue
		}
		if !strings.Contains(err.Error(), tt.says) {
			t.Errorf("New(environments %q, default %q) = %v, want an error saying %q", tt.patterns, tt.def, err, tt.says)
		}
	}
}
