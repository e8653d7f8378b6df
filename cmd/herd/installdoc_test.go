package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestInstallDocCommands holds every herd and herd-agent command line in
// docs/install.md's shell blocks to the real command tree: the subcommand
// exists, each flag is one it takes, and its arguments are accepted. herd
// has every command herd-agent has, so both are checked against herd's.
func TestInstallDocCommands(t *testing.T) {
	t.Parallel()
	const doc = "../../docs/install.md"
	f, err := os.Open(doc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inShell, checked := false, 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "```"):
			inShell = !inShell && line == "```sh"
			continue
		case !inShell:
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		// "runuser -u herd -- herd server …" runs herd too.
		if _, after, ok := strings.Cut(line, " -- "); ok {
			line = after
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || (fields[0] != "herd" && fields[0] != "herd-agent") {
			continue
		}
		if fields[0] == "herd-agent" && len(fields) > 1 && fields[1] == "bootstrap" {
			// The boot branch's command (the doc's marked "Bootstrap an
			// agent" section): checked once both are merged.
			continue
		}
		args := make([]string, 0, len(fields)-1)
		for _, a := range fields[1:] {
			args = append(args, strings.Trim(a, `'"`))
		}
		root := newRootCmd()
		cmd, rest, err := root.Find(args)
		if err != nil || cmd == root {
			t.Errorf("%s:%d: %q: no such command (%v)", doc, n, line, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%s:%d: %q: %v", doc, n, line, err)
			continue
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%s:%d: %q: %v", doc, n, line, err)
		}
		checked++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if checked < 5 {
		t.Errorf("%s: only %d herd command lines found in sh blocks; the parser lost them", doc, checked)
	}
}
