package testkit

import (
	"os/exec"
	"strings"
	"testing"
)

// Git runs git in dir as a test's committer (no user configuration or
// signing from the machine) and returns its output, trimmed; an error
// fails the test with git's own words.
func Git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
