package testkit

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTools skips the test when one of tools is not on this machine,
// saying which: tests that use real dpkg, useradd or apt run wherever the
// tools are. Under CI=true it fails instead: .ci/run installs every tool
// a test names, and a missing one must not turn into a quiet skip.
func NeedTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("%s is not installed, and CI must run this test: add its package to .ci/run", tool)
			}
			tb.Skipf("%s is not installed on this machine; CI installs it", tool)
		}
	}
}

// NeedRoot skips the test when it does not run as root, saying why it
// needs to.
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skipf("needs root: %s", why)
	}
}
