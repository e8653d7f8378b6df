package resources

import (
	"context"
	"testing"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

// packageConformance returns the package type's conformance cases: real
// .debs built by the test, installed into and removed from the sandbox
// root with the machine's dpkg --root.
func packageConformance(t *testing.T) []conformanceCase {
	tools := []string{"dpkg", "dpkg-deb"}
	hello := testkit.DebSpec{
		Name: "herd-hello", Version: "1.0-1",
		Files:     map[string]string{"/usr/share/herd-hello/hello.txt": "hello\n", "/etc/herd-hello.conf": "greeting = hello\n"},
		Conffiles: []string{"/etc/herd-hello.conf"},
	}
	// shipped adds the .deb to the files the host can fetch and points the
	// resource at it, as compile does for source = "files/….deb". It runs
	// in a case's setup and changes the attributes map the case's resource
	// shares with the variable.
	shipped := func(r *catalogs.Resource, files *testFiles, spec testkit.DebSpec) {
		_, content := testkit.BuildDeb(t, spec)
		r.Attrs["source"] = "files/" + spec.Name + ".deb"
		r.Attrs["digest"] = files.add(content)
	}
	installed := func(t *testing.T, h *Host, files *testFiles, spec testkit.DebSpec) {
		t.Helper()
		r := res("package", spec.Name, nil)
		shipped(&r, files, spec)
		pkgConverge(t, h, &Package{}, &r)
	}
	fromSource := res("package", "herd-hello", map[string]any{})
	version := res("package", "herd-hello", map[string]any{"ensure": "1.0-1"})
	latest := res("package", "herd-hello", map[string]any{"ensure": "latest"})
	upgrade := res("package", "herd-hello", map[string]any{"ensure": "2.0-1"})
	held := res("package", "herd-hello", map[string]any{"ensure": "held"})
	holdInstalled := res("package", "herd-hello", map[string]any{"ensure": "held"})
	hello2 := hello
	hello2.Version = "2.0-1"
	return []conformanceCase{
		{
			name: "package/held-from-source", typ: &Package{}, res: held, tools: tools, root: dpkgRoot,
			setup: func(t *testing.T, h *Host, files *testFiles) {
				testkit.InitSandboxHost(t, h.Root)
				shipped(&held, files, hello)
			},
		},
		{
			name: "package/hold-installed", typ: &Package{}, res: holdInstalled, tools: tools, root: dpkgRoot,
			setup: func(t *testing.T, h *Host, files *testFiles) {
				testkit.InitSandboxHost(t, h.Root)
				installed(t, h, files, hello)
				shipped(&holdInstalled, files, hello)
			},
		},
		{
			name: "package/from-source", typ: &Package{}, res: fromSource, tools: tools, root: dpkgRoot,
			setup: func(t *testing.T, h *Host, files *testFiles) {
				testkit.InitSandboxHost(t, h.Root)
				shipped(&fromSource, files, hello)
			},
		},
		{
			name: "package/version-from-source", typ: &Package{}, res: version, tools: tools, root: dpkgRoot,
			setup: func(t *testing.T, h *Host, files *testFiles) {
				testkit.InitSandboxHost(t, h.Root)
				shipped(&version, files, hello)
			},
		},
		{
			name: "package/latest-from-source", typ: &Package{}, res: latest, tools: tools, root: dpkgRoot,
			setup: func(t *testing.T, h *Host, files *testFiles) {
				testkit.InitSandboxHost(t, h.Root)
				installed(t, h, files, hello)
				shipped(&latest, files, hello2)
			},
		},
		{
			name: "package/upgrade-from-source", typ: &Package{}, res: upgrade, tools: tools, root: dpkgRoot,
			setup: func(t *testing.T, h *Host, files *testFiles) {
				testkit.InitSandboxHost(t, h.Root)
				installed(t, h, files, hello)
				shipped(&upgrade, files, hello2)
			},
		},
		{
			name: "package/absent", typ: &Package{}, tools: tools, root: dpkgRoot,
			res: res("package", "herd-hello", map[string]any{"ensure": "absent"}),
			setup: func(t *testing.T, h *Host, files *testFiles) {
				testkit.InitSandboxHost(t, h.Root)
				installed(t, h, files, hello)
			},
		},
		{
			name: "package/purged", typ: &Package{}, tools: tools, root: dpkgRoot,
			res: res("package", "herd-hello", map[string]any{"ensure": "purged"}),
			setup: func(t *testing.T, h *Host, files *testFiles) {
				testkit.InitSandboxHost(t, h.Root)
				installed(t, h, files, hello)
			},
		},
	}
}

// pkgConverge checks and applies r on h, failing the test unless it ends
// in sync.
func pkgConverge(t *testing.T, h *Host, typ Type, r *catalogs.Resource) {
	t.Helper()
	ctx := context.Background()
	p, err := typ.Check(ctx, h, r)
	if err != nil {
		t.Fatalf("Check(%s): %v", r.ID, err)
	}
	if !p.InSync() {
		if err := typ.Apply(ctx, h, p); err != nil {
			t.Fatalf("Apply(%s): %v\n%s", r.ID, err, p.Output)
		}
	}
	if p, err = typ.Check(ctx, h, r); err != nil || !p.InSync() {
		t.Fatalf("Check(%s) after Apply = %+v, %v; want in sync", r.ID, p, err)
	}
}
