package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestStampedVersion builds herd-agent as herd-pkg does, with a version
// stamped in by -ldflags, and checks that version prints it, in text and
// as JSON.
func TestStampedVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the node binary; skipped in -short")
	}
	t.Parallel()
	const stamp = "1.2.3~rc1+git20261203140512.abc1234"
	bin := filepath.Join(t.TempDir(), "herd-agent")
	build := exec.Command("go", "build", "-tags", "grpcnotrace", "-trimpath",
		"-ldflags", "-X github.com/herdcm/herd/cmd/nodecmd.version="+stamp, "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("herd-agent version: %v", err)
	}
	if want := "herd-agent " + stamp + " " + runtime.Version() + " linux/" + runtime.GOARCH + "\n"; string(out) != want {
		t.Errorf("herd-agent version = %q, want %q", out, want)
	}

	out, err = exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatalf("herd-agent version --json: %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("herd-agent version --json printed %q: %v", out, err)
	}
	want := map[string]string{"version": stamp, "go": runtime.Version(), "os": "linux", "arch": runtime.GOARCH}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("herd-agent version --json (-want +got):\n%s", diff)
	}
	if strings.Count(string(out), "\n") < 2 {
		t.Errorf("herd-agent version --json is not indented like every --json: %q", out)
	}
}
