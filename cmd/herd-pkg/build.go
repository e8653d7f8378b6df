package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// herdModule is the module path of Herd's tree, which FindTree looks for.
const herdModule = "github.com/herdcm/herd"

// FindTree returns the top of Herd's tree at or above dir: the directory
// whose go.mod declares module github.com/herdcm/herd.
func FindTree(dir string) (string, error) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if f, err := os.Open(filepath.Join(d, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if mod, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok && strings.TrimSpace(mod) == herdModule {
					f.Close()
					return d, nil
				}
			}
			f.Close()
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of %s at or above %s", herdModule, dir)
		}
	}
}

// goArch maps the Debian architectures herd-pkg builds to Go's GOARCH and
// to the C cross compiler cgo (sqlite) needs when it is not this machine's.
var goArch = map[string]struct{ goarch, cc string }{
	"amd64": {"amd64", "x86_64-linux-gnu-gcc"},
	"arm64": {"arm64", "aarch64-linux-gnu-gcc"},
}

// binary is one of Herd's two programs as built for a package.
type binary struct {
	name string // herd or herd-agent
	pkg  string // its main package, relative to the tree
	tags string // build tags
}

var binaries = []binary{
	{name: "herd", pkg: "./cmd/herd"},
	// grpcnotrace leaves grpc's tracing (and html/template) out of the
	// node binary, as .ci/run builds it.
	{name: "herd-agent", pkg: "./cmd/herd-agent", tags: "grpcnotrace"},
}

// buildBinary builds b for arch into dir with the version stamped into
// cmd/nodecmd.version, and returns its path. -trimpath keeps the build
// machine's paths out; -s -w leave the symbol tables out, as Debian strips;
// a position-independent executable gets ASLR, as Debian builds binaries.
func buildBinary(ctx context.Context, src, dir, arch, version string, b binary, log *slog.Logger) (string, error) {
	ga, ok := goArch[arch]
	if !ok {
		return "", fmt.Errorf("architecture %q: want one of amd64, arm64", arch)
	}
	out := filepath.Join(dir, b.name)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-buildmode=pie",
		"-ldflags", "-s -w -X " + herdModule + "/cmd/nodecmd.version=" + version,
		"-o", out}
	if b.tags != "" {
		args = append(args, "-tags", b.tags)
	}
	args = append(args, b.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+ga.goarch, "CGO_ENABLED=1")
	if hostArch() != ga.goarch {
		if _, err := exec.LookPath(ga.cc); err != nil {
			return "", fmt.Errorf("building %s for %s: sqlite is C (cgo) and needs the cross compiler %s (apt-get install gcc-%s libc6-dev-%s-cross)",
				b.name, arch, ga.cc, strings.TrimSuffix(ga.cc, "-gcc"), arch)
		}
		cmd.Env = append(cmd.Env, "CC="+ga.cc)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	log.Info("building", "binary", b.name, "arch", arch, "version", version)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building %s for %s: go %s: %w\n%s", b.name, arch, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// hostArch is this machine's GOARCH: where cgo needs no cross compiler.
func hostArch() string { return runtime.GOARCH }

// GlibcNeeded returns the newest GLIBC_x.y symbol version the ELF file at
// path needs ("2.34"), what its Depends on libc6 must say; "" for a
// binary that needs none (not linked with libc).
func GlibcNeeded(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	syms, err := f.ImportedSymbols()
	if err != nil {
		if errors.Is(err, elf.ErrNoSymbols) {
			return "", nil
		}
		return "", fmt.Errorf("reading %s's dynamic symbols: %w", path, err)
	}
	best := ""
	for _, s := range syms {
		v, ok := strings.CutPrefix(s.Version, "GLIBC_")
		if !ok || !isDotted(v) {
			continue // GLIBC_PRIVATE, other libraries
		}
		if best == "" || compareDotted(v, best) > 0 {
			best = v
		}
	}
	return best, nil
}

func isDotted(v string) bool {
	for p := range strings.SplitSeq(v, ".") {
		if _, err := strconv.Atoi(p); err != nil {
			return false
		}
	}
	return true
}

// compareDotted compares two dotted numeric versions (2.34 < 2.4 is false).
func compareDotted(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
