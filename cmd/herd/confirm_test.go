package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/herdcm/herd/cmd/nodecmd"
	"github.com/herdcm/herd/testkit"
)

// openPty returns the terminal end of a new pseudo-terminal, standing in
// for an operator's terminal on stdin; both ends close with the test.
func openPty(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("naming the pty: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening the pty's terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty
}

// TestApplyRealRootAsks: herd apply on the real root (/) with a terminal
// on stdin says which node and catalog it is about to apply and how much
// would change, and refuses a node this host never applied (a typo in
// --node) until --yes; it changes nothing when it refuses. Once applied,
// that node is not asked about again; without a terminal nothing asks.
// The site's only resource is a file in the test's temporary directory,
// so that the real root is touched nowhere else.
func TestApplyRealRootAsks(t *testing.T) {
	t.Parallel()
	tty := openPty(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "motd")
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":   "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml": fmt.Sprintf("[[file]]\npath = %q\ncontent = \"hello\\n\"\n", target),
	})
	state := t.TempDir()
	apply := func(stdin *os.File, extra ...string) (string, string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		args := append([]string{"apply", "--site", site, "--node", "web-O1", "--state-dir", state}, extra...)
		var code int
		if stdin != nil {
			code = run(args, stdin, &out, &errb)
		} else {
			code = run(args, strings.NewReader(""), &out, &errb)
		}
		return out.String(), errb.String(), code
	}

	out, stderr, code := apply(tty)
	if code != nodecmd.ExitError {
		t.Fatalf("apply of a new node from a terminal exited %d, want %d:\n%s%s", code, nodecmd.ExitError, out, stderr)
	}
	for _, want := range []string{"about to apply node web-O1 to this host (/): site sha256:", "catalog sha256:", "1 of 1 resources would change",
		"this host never applied node web-O1", "--yes"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("the refused apply wrote the file")
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("the refused apply wrote state: %v", ents)
	}

	out, stderr, code = apply(tty, "--yes")
	if code != 2 || !strings.Contains(out, "converged web-O1") {
		t.Fatalf("apply --yes exited %d, want 2:\n%s%s", code, out, stderr)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "hello\n" {
		t.Fatalf("apply --yes left %s = %q, %v", target, b, err)
	}

	if err := os.WriteFile(target, []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = apply(tty)
	if code != 2 || !strings.Contains(stderr, "1 of 1 resources would change") {
		t.Fatalf("a second apply of a node this host applied exited %d, want 2 without asking:\n%s%s", code, out, stderr)
	}

	// No terminal: a pipeline is never asked, and told nothing.
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = apply(nil, "--node", "other")
	if code != 2 || strings.Contains(stderr, "about to apply") {
		t.Fatalf("apply without a terminal exited %d, want 2 and no question:\n%s%s", code, out, stderr)
	}
}
