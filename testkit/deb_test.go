package testkit_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

func TestBuildDeb(t *testing.T) {
	t.Parallel()
	spec := testkit.DebSpec{
		Name: "herd-tool", Version: "2:1.4~rc1-3", Arch: "amd64",
		Files:     map[string]string{"/usr/bin/herd-tool": "#!/bin/sh\necho tool\n", "/etc/herd-tool.conf": "x = 1\n"},
		Modes:     map[string]os.FileMode{"/usr/bin/herd-tool": 0o755},
		Depends:   []string{"libc6 (>= 2.36)", "adduser"},
		Conffiles: []string{"/etc/herd-tool.conf"},
	}
	path, content := testkit.BuildDeb(t, spec)
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("BuildDeb returned content that is not the file at %s: %v", path, err)
	}
	if !bytes.HasPrefix(content, []byte("!<arch>\n")) {
		t.Errorf("BuildDeb's .deb is not an ar archive: %q", content[:min(len(content), 16)])
	}
	out, err := exec.Command("dpkg-deb", "--field", path, "Package", "Version", "Architecture", "Depends").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "Package: herd-tool\nVersion: 2:1.4~rc1-3\nArchitecture: amd64\nDepends: libc6 (>= 2.36), adduser\n"
	if string(out) != want {
		t.Errorf("control fields = %q, want %q", out, want)
	}
	out, err = exec.Command("dpkg-deb", "--contents", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"-rwxr-xr-x root/root", "./usr/bin/herd-tool", "-rw-r--r-- root/root", "./etc/herd-tool.conf"} {
		if !strings.Contains(string(out), line) {
			t.Errorf("contents have no %q:\n%s", line, out)
		}
	}
	out, err = exec.Command("dpkg-deb", "--info", path, "conffiles").Output()
	if err != nil || string(out) != "/etc/herd-tool.conf\n" {
		t.Errorf("conffiles = %q, %v", out, err)
	}
	// The same spec gives the same bytes, so digests in tests are stable.
	if _, again := testkit.BuildDeb(t, spec); !bytes.Equal(again, content) {
		t.Error("building the same spec twice gave different bytes")
	}
}

// TestBuildDebInstalls installs a built .deb into a sandbox host with the
// package resource type and reads the result in the root's dpkg status.
func TestBuildDebInstalls(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not installed on this machine")
	}
	testkit.NeedRoot(t, "dpkg installs packages only as root")
	root := testkit.NewSandboxHost(t)
	_, content := testkit.BuildDeb(t, testkit.DebSpec{
		Name: "herd-hello", Version: "1.0-1",
		Files: map[string]string{"/usr/share/herd-hello/hello.txt": "hello\n"},
	})
	digest := catalogs.Digest(content)
	h := &resources.Host{
		Root: root,
		Run: func(ctx context.Context, c resources.Cmd) (resources.Result, error) {
			return resources.RunCommand(ctx, root, c)
		},
		Files: func(_ context.Context, d string) (io.ReadCloser, error) {
			if d != digest {
				t.Fatalf("asked for %s, want %s", d, digest)
			}
			return io.NopCloser(bytes.NewReader(content)), nil
		},
		Log: slog.New(slog.DiscardHandler),
	}
	r := catalogs.Resource{ID: "package:herd-hello", Type: "package", Name: "herd-hello",
		Attrs: map[string]any{"source": "files/herd-hello.deb", "digest": digest}}
	typ := &resources.Package{}
	ctx := context.Background()
	p, err := typ.Check(ctx, h, &r)
	if err != nil || p.InSync() {
		t.Fatalf("Check = %+v, %v; want a plan", p, err)
	}
	if err := typ.Apply(ctx, h, p); err != nil {
		t.Fatalf("Apply: %v\n%s", err, p.Output)
	}
	status, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"Package: herd-hello\n", "Status: install ok installed\n", "Version: 1.0-1\n", "Architecture: all\n"} {
		if !strings.Contains(string(status), field) {
			t.Errorf("the sandbox's dpkg status has no %q:\n%s", field, status)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr/share/herd-hello/hello.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("the package's file = %q, %v", b, err)
	}
	if p, err := typ.Check(ctx, h, &r); err != nil || !p.InSync() {
		t.Errorf("Check after Apply = %+v, %v; want in sync", p, err)
	}
}
