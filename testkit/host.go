package testkit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/herdcm/herd/agent/sandbox"
)

// NewSandboxHost returns a new host root for tests, laid out by
// InitSandboxHost, with a Debian 12 etc/os-release, in a directory removed
// when the test ends. Types given a
// resources.Host with this Root manage it exactly as they would "/".
func NewSandboxHost(tb testing.TB) string {
	tb.Helper()
	root := tb.TempDir()
	// The testing package makes the test's temp directory 0700; a real
	// root's ancestors are traversable, and a service running as another
	// user (a database's own account) must reach its directory too.
	if err := os.Chmod(filepath.Dir(root), 0o755); err != nil {
		tb.Fatalf("opening up %s: %v", filepath.Dir(root), err)
	}
	InitSandboxHost(tb, root)
	return root
}

// InitSandboxHost lays out root, an existing directory, as sandbox.Init
// does (a minimal Debian 12 host), failing the test on error.
func InitSandboxHost(tb testing.TB, root string) {
	tb.Helper()
	if err := sandbox.Init(root); err != nil {
		tb.Fatal(err)
	}
}
