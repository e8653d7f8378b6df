package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/herdcm/herd/cmd/nodecmd"
)

// usageCases walks root's tree and returns the command lines that are
// usage errors by the tree's own rules, so that a command added later is
// covered without touching this test: an unknown flag on every command,
// an extra argument and a missing one wherever the command's Args
// refuses them, and an unknown subcommand under every group. Every
// runnable command must say what arguments it takes (Args): without it
// cobra accepts any, and an extra argument is silently ignored.
func usageCases(t *testing.T, root *cobra.Command) [][]string {
	t.Helper()
	nodecmd.UsageArgs(root)
	extra := []string{"x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12"}
	cases := [][]string{{"--no-such-flag"}, {"no-such-command"}, {"help", "no-such-command"}}
	for _, p := range commandPaths(root, true) {
		c, _, err := root.Find(p)
		if err != nil || c == root {
			t.Fatalf("%s: finding %v: %v", root.Name(), p, err)
		}
		cases = append(cases, append(slices.Clone(p), "--no-such-flag"))
		if !c.Runnable() {
			continue
		}
		if c.Args == nil {
			t.Errorf("%s %s takes any arguments: set its Args (cobra.NoArgs, ExactArgs, ArbitraryArgs…)", root.Name(), strings.Join(p, " "))
			continue
		}
		// A group that also runs (backups [PATH]) may take a word as its
		// argument: an unknown subcommand is a usage error only where
		// Args refuses it.
		if c.HasSubCommands() && c.Args(c, []string{"no-such-command"}) != nil {
			cases = append(cases, append(slices.Clone(p), "no-such-command"))
		}
		if c.Args(c, extra) != nil {
			cases = append(cases, append(slices.Clone(p), extra...))
		}
		if c.Args(c, nil) != nil {
			cases = append(cases, slices.Clone(p))
		}
	}
	return cases
}

// TestUsageErrorsExit64 runs every usage error of both binaries' command
// trees and wants exit 64 and a message on stderr: herd's through the
// built binary, herd-agent's through the Run its main calls.
func TestUsageErrorsExit64(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	for _, args := range usageCases(t, newRootCmd()) {
		t.Run("herd "+strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runBin(t, home, args...)
			if code != nodecmd.ExitUsage || !strings.HasPrefix(stderr, "herd: ") || !strings.Contains(stderr, "--help' for usage") {
				t.Errorf("herd %s exited %d, want %d with a usage message\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, nodecmd.ExitUsage, stdout, stderr)
			}
		})
	}
	agentRoot := func() *cobra.Command { return nodecmd.NewRoot("herd-agent", "", "") }
	for _, args := range usageCases(t, agentRoot()) {
		var errb strings.Builder
		// Usage errors are refused before any command runs: nothing
		// here starts an agent.
		code := nodecmd.Run(agentRoot(), args, strings.NewReader(""), io.Discard, &errb)
		if code != nodecmd.ExitUsage || !strings.HasPrefix(errb.String(), "herd-agent: ") {
			t.Errorf("herd-agent %s exited %d, want %d with a usage message\nstderr: %s", strings.Join(args, " "), code, nodecmd.ExitUsage, errb.String())
		}
	}
}
