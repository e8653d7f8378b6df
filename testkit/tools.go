package testkit

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTools skips the test when one of tools is not on this machine,
// saying which: tests that use real dpkg, useradd or apt run wherever the
// tools are, and CI installs them.
func NeedTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
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
