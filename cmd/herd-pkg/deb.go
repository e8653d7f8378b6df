package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Options says what Build builds.
type Options struct {
	Src     string   // the top of Herd's tree
	Out     string   // where the .deb files go (made if missing)
	Version string   // the packages' version, already checked (CheckVersion)
	Arches  []string // Debian architectures: amd64, arm64
	Log     *slog.Logger
}

const (
	maintainer = "Herd developers <herd@herd.invalid>"
	homepage   = "https://github.com/herdcm/herd"
)

// pkgSpec is one of Herd's packages: what goes in it besides its binary.
type pkgSpec struct {
	name        string
	bin         binary
	description string
	depends     []string // besides libc6
	recommends  []string
	// contents are the files from packaging/ (src) and where they go.
	contents []*files.Content
	scripts  nfpm.Scripts
}

// specs are the two packages. Paths under packaging/ are relative to the
// tree; FHS places: /usr/bin, units in /usr/lib/systemd/system,
// configuration as conffiles under /etc/herd, state under /var/lib.
func specs() []pkgSpec {
	file := func(src, dst string, mode fs.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
	}
	conffile := func(src, dst string, mode fs.FileMode) *files.Content {
		c := file(src, dst, mode)
		// noreplace: an admin's edit survives upgrades (dpkg asks when
		// both changed, as for any conffile).
		c.Type = files.TypeConfigNoReplace
		return c
	}
	dir := func(dst string, mode fs.FileMode) *files.Content {
		return &files.Content{Destination: dst, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: mode | fs.ModeDir, Owner: "root", Group: "root"}}
	}
	return []pkgSpec{
		{
			name: "herd-agent",
			bin:  binaries[1],
			description: "configuration management agent: keeps this host as its catalog says\n" +
				"The node binary of Herd, a pull-based configuration management tool:\n" +
				"it enrolls with a Herd server, checks in, converges this host and reports\n" +
				"what it did. It also applies a local site without a server.",
			contents: []*files.Content{
				file("packaging/herd-agent.service", "/usr/lib/systemd/system/herd-agent.service", 0o644),
				conffile("packaging/agent.toml", "/etc/herd/agent.toml", 0o600),
				file("docs/install.md", "/usr/share/doc/herd-agent/install.md", 0o644),
				file("packaging/copyright", "/usr/share/doc/herd-agent/copyright", 0o644),
				dir("/var/lib/herd", 0o700),
			},
			scripts: nfpm.Scripts{
				PostInstall: "packaging/herd-agent.postinst",
				PreRemove:   "packaging/herd-agent.prerm",
				PostRemove:  "packaging/herd-agent.postrm",
			},
		},
		{
			name: "herd",
			bin:  binaries[0],
			description: "configuration management for fleets: server and operator tools\n" +
				"The whole of Herd, a pull-based configuration management tool: the\n" +
				"server that compiles, signs and serves each node's catalog, and the\n" +
				"operators' commands (compile, check, nodes, reports, rollout, audit, ca).",
			// useradd makes the herd user in postinst.
			depends:    []string{"passwd"},
			recommends: []string{"git"},
			contents: []*files.Content{
				file("packaging/herd-server.service", "/usr/lib/systemd/system/herd-server.service", 0o644),
				conffile("packaging/server.toml", "/etc/herd/server.toml", 0o644),
				file("docs/install.md", "/usr/share/doc/herd/install.md", 0o644),
				file("packaging/copyright", "/usr/share/doc/herd/copyright", 0o644),
			},
			scripts: nfpm.Scripts{
				PostInstall: "packaging/herd.postinst",
				PreRemove:   "packaging/herd.prerm",
				PostRemove:  "packaging/herd.postrm",
			},
		},
	}
}

// Build builds both binaries for each of o.Arches and writes
// herd-agent_VERSION_ARCH.deb and herd_VERSION_ARCH.deb into o.Out,
// returning their paths.
func Build(ctx context.Context, o Options) ([]string, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Arches) == 0 {
		return nil, errors.New("no architecture to build for")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("making %s: %w", o.Out, err)
	}
	work, err := os.MkdirTemp("", "herd-pkg-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	// The files carry the commit's time, so one commit packs the same way
	// twice; a tree outside git gets the time of the build.
	mtime := CommitTime(ctx, o.Src)
	if mtime.IsZero() {
		mtime = time.Now().UTC().Truncate(time.Second)
	}
	var out []string
	for _, arch := range o.Arches {
		for _, s := range specs() {
			binDir := filepath.Join(work, arch)
			if err := os.MkdirAll(binDir, 0o755); err != nil {
				return nil, err
			}
			bin, err := buildBinary(ctx, o.Src, binDir, arch, o.Version, s.bin, o.Log)
			if err != nil {
				return nil, err
			}
			changelog, err := writeChangelog(binDir, s.name, o.Version, mtime)
			if err != nil {
				return nil, err
			}
			path, err := writeDeb(o, s, arch, bin, changelog, mtime)
			if err != nil {
				return nil, err
			}
			out = append(out, path)
		}
	}
	return out, nil
}

// writeDeb packs s with its binary bin for arch into o.Out.
func writeDeb(o Options, s pkgSpec, arch, bin, changelog string, mtime time.Time) (string, error) {
	glibc, err := GlibcNeeded(bin)
	if err != nil {
		return "", err
	}
	depends := append([]string(nil), s.depends...)
	if glibc != "" {
		depends = append([]string{fmt.Sprintf("libc6 (>= %s)", glibc)}, depends...)
	}
	contents := []*files.Content{{
		Source: bin, Destination: "/usr/bin/" + s.bin.name,
		FileInfo: &files.ContentFileInfo{Mode: 0o755, Owner: "root", Group: "root"},
	}, {
		Source: changelog, Destination: "/usr/share/doc/" + s.name + "/changelog.gz",
		FileInfo: &files.ContentFileInfo{Mode: 0o644, Owner: "root", Group: "root"},
	}}
	for _, c := range s.contents {
		cc := *c
		fi := *c.FileInfo
		cc.FileInfo = &fi
		if cc.Source != "" {
			cc.Source = filepath.Join(o.Src, filepath.FromSlash(cc.Source))
		}
		contents = append(contents, &cc)
	}
	script := func(p string) string {
		if p == "" {
			return ""
		}
		return filepath.Join(o.Src, filepath.FromSlash(p))
	}
	info := &nfpm.Info{
		Name:          s.name,
		Arch:          arch,
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none", // already a Debian version: nfpm must not reparse it as semver
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    maintainer,
		Homepage:      homepage,
		Description:   s.description,
		MTime:         mtime,
		// Globbing would read a file name with * or [ as a pattern.
		DisableGlobbing: true,
		Overridables: nfpm.Overridables{
			Depends:    depends,
			Recommends: s.recommends,
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: script(s.scripts.PostInstall),
				PreRemove:   script(s.scripts.PreRemove),
				PostRemove:  script(s.scripts.PostRemove),
			},
			// gzip: every dpkg reads it, and it packs the 40 MB server
			// binary in a fraction of xz's time.
			Deb: nfpm.Deb{Compression: "gzip"},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("package %s: %w", s.name, err)
	}
	name := deb.Default.ConventionalFileName(info)
	path := filepath.Join(o.Out, name)
	// Written beside, then renamed: a failed build leaves no half package
	// under the final name.
	f, err := os.CreateTemp(o.Out, "."+name+".*")
	if err != nil {
		return "", fmt.Errorf("package %s: %w", s.name, err)
	}
	defer os.Remove(f.Name())
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("package %s: %w", s.name, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("package %s: %w", s.name, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", fmt.Errorf("package %s: %w", s.name, err)
	}
	o.Log.Info("wrote", "package", path)
	return path, nil
}

// writeChangelog writes the changelog.gz Debian wants in every package's
// doc directory into dir: one entry for this build (Herd keeps its history
// in git, not in a debian/changelog). gzip without a name or time, as
// dh_compress does, so the same build packs the same bytes.
func writeChangelog(dir, name, version string, when time.Time) (string, error) {
	var text bytes.Buffer
	fmt.Fprintf(&text, "%s (%s) unstable; urgency=medium\n\n  * Built from the Herd tree by herd-pkg; the history is in git.\n\n -- %s  %s\n",
		name, version, maintainer, when.UTC().Format(time.RFC1123Z))
	path := filepath.Join(dir, name+".changelog.gz")
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	if _, err := zw.Write(text.Bytes()); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, gz.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("writing the changelog of %s: %w", name, err)
	}
	return path, nil
}
