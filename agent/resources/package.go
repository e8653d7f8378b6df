package resources

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herdcm/herd/catalogs"
)

// Package is the package resource type, provider apt: Debian and its
// derivatives.
//
// Check reads dpkg's database (var/lib/dpkg/status under the host root)
// in process and spawns nothing, except for ensure = "latest", which must
// ask apt for the candidate version. The parsed database is cached on the
// Package, keyed by the status file's identity, so the package Checks of a
// run share one parse and later runs parse again only after dpkg changed
// something. Use one Package for every package resource of a host.
//
// ensure is "installed" (the default; "present" is the same), "held"
// (installed, any version, and selected "hold" so upgrades leave it; the
// selection is read from the status file), "absent"
// (removed, configuration files may stay), "purged" (nothing left),
// "latest" (apt's candidate version) or a Debian version, compared by
// dpkg's rules ("1.0-1" is "0:1.0-1").
//
// A package with a source (a .deb the site ships, named by its digest in
// the catalog) is installed with dpkg from that file, never from an apt
// repository. The catalog does not carry the .deb's version, so for
// ensure = "installed" any installed version is in sync: a new .deb in the
// site does not reinstall by itself; say ensure = "latest" (the .deb's
// version or newer) or give the version to upgrade. Removal uses dpkg,
// which works offline and in a sandbox root, and refuses to remove a
// package others depend on rather than removing them too as apt would.
//
// An install by name first refreshes apt's lists, once per run, when they
// are missing, older than a day, or older than a source (aptlists.go).
//
// In a sandbox root (Host.Root not "/"), dpkg runs with --root and apt-get
// with its directories and status file under the root. A package's
// maintainer scripts then run chrooted into the root, so they need a shell
// there; packages without scripts need nothing.
type Package struct {
	status dpkgCache

	mu   sync.Mutex
	debs map[string]debInfo // by digest: a .deb's control fields never change

	// dpkg takes a lock on its database and fails at once when another
	// dpkg holds it, so the engine's parallel resources must not run two
	// package changes at the same time.
	applyMu sync.Mutex

	// listsFresh says apt's lists were found fresh or refreshed in this
	// run (refreshLists): apt-get update runs at most once per run.
	listsMu    sync.Mutex
	listsFresh bool
}

var _ Type = (*Package)(nil)

// packageTimeout bounds one dpkg or apt-get run: downloads and maintainer
// scripts can take minutes, but a hung one must not hold the run forever.
const packageTimeout = 15 * time.Minute

// debianPackageName is Debian policy's package name, with an optional
// ":arch" qualifier. It also keeps a name that would read as an option
// ("-o…") away from dpkg and apt-get.
var debianPackageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$`)

// packageOp is what Apply does.
type packageOp int

const (
	pkgInstallSource packageOp = iota + 1 // dpkg -i the site's .deb
	pkgInstallApt                         // apt-get install
	pkgRemove                             // dpkg --remove
	pkgPurge                              // dpkg --purge
	pkgHold                               // dpkg --set-selections: hold
)

// packageState is what Check hands Apply in Plan.State.
type packageState struct {
	op        packageOp
	name      string // as in the catalog, maybe "name:arch"
	version   string // the version to install; empty for any
	source    string // the .deb's path in the site, for messages
	digest    string
	downgrade bool // the version to install is older than the installed one
	reinstall bool // the package is half-installed or half-configured
	hold      bool // ensure = "held": select it "hold" once installed
	held      bool // dpkg's selection for it is "hold" now
}

// debInfo is what Herd reads of a .deb's control file.
type debInfo struct{ name, version, arch string }

// Check compares the package's state in dpkg's database with want.
func (t *Package) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	name := packageName(want)
	if !debianPackageName.MatchString(name) {
		return nil, fmt.Errorf("checking package %q: not a Debian package name (lowercase letters, digits, + - ., optionally :arch)", name)
	}
	if p := want.String("provider"); p != "" && p != "apt" {
		return nil, fmt.Errorf("checking package %s: provider %q is not supported (want apt)", name, p)
	}
	plan := &Plan{Resource: want}
	if slices.Contains(want.Strings("ignore"), "ensure") {
		// Another tool owns whether and which version is installed.
		return plan, nil
	}
	ensure := want.String("ensure")
	if ensure == "" || ensure == "present" {
		ensure = "installed"
	}
	source, digest := want.String("source"), want.String("digest")
	if source != "" && digest == "" {
		return nil, fmt.Errorf("checking package %s: source %s has no digest in the catalog", name, source)
	}
	db, err := t.status.load(pkgRoot(h))
	if err != nil {
		return nil, fmt.Errorf("checking package %s: %w", name, err)
	}
	rec, found := db.find(name)
	installed := found && rec.installed()
	st := &packageState{name: name, source: source, digest: digest, held: found && rec.Want == "hold"}
	from := describeDpkgRecord(rec, found)
	change := func(to string, a Action) {
		// apt-get leaves a half-installed package alone unless told to
		// install it again.
		st.reinstall = a != Delete && found && rec.broken()
		plan.Changes = append(plan.Changes, Change{Attr: "ensure", From: from, To: to, Action: a})
		plan.State = st
	}
	// An install over nothing creates; over a present package it updates.
	installAction := Create
	if found && (installed || rec.broken()) {
		installAction = Update
	}
	st.op = pkgInstallApt
	if source != "" {
		st.op = pkgInstallSource
	}

	switch ensure {
	case "absent":
		if found && (installed || rec.broken()) {
			st.op = pkgRemove
			change("absent", Delete)
		}
	case "purged":
		if found && rec.present() {
			st.op = pkgPurge
			change("purged", Delete)
		}
	case "installed":
		if !installed {
			change("installed", installAction)
		}
	case "held":
		// Installed (any version) and held, the selection read from the
		// status file: apt-get upgrade and unattended-upgrades leave it.
		st.hold = true
		switch {
		case !installed:
			change("held", installAction)
		case !st.held:
			st.op = pkgHold
			plan.Changes = append(plan.Changes, Change{Attr: "selection", From: rec.Want, To: "hold", Action: Update})
			plan.State = st
		}
	case "latest":
		latest, err := t.latest(ctx, h, name, source, digest)
		if err != nil {
			return nil, fmt.Errorf("checking package %s: %w", name, err)
		}
		switch {
		case latest == "" && !installed:
			// apt knows no version (no lists in a sandbox, a typo); Apply
			// will say so in apt's words.
			change("latest", installAction)
		case latest == "":
			// Installed, and nothing newer is known.
		case !installed || compareDebianVersions(rec.Version, latest) < 0:
			if source != "" {
				st.version = latest
			}
			change(latest, installAction)
		}
	default:
		if why := validDebVersion(ensure); why != "" {
			return nil, fmt.Errorf("checking package %s: ensure %q: want installed, absent, purged, latest or a Debian version (%s)", name, ensure, why)
		}
		if !installed || compareDebianVersions(rec.Version, ensure) != 0 {
			st.version = ensure
			st.downgrade = installed && compareDebianVersions(rec.Version, ensure) > 0
			change(ensure, installAction)
		}
	}
	return plan, nil
}

// describeDpkgRecord says what is installed, as the From of a change:
// "absent", "1.0-1", or "1.0-1 (config-files)" for what is left of a
// package or one whose installation was interrupted.
func describeDpkgRecord(r dpkgRecord, found bool) string {
	switch {
	case !found || !r.present():
		return "absent"
	case r.installed() && r.Flag == "ok":
		return r.Version
	}
	return fmt.Sprintf("%s (%s)", r.Version, r.State)
}

// Apply installs, upgrades, downgrades, removes or purges the package.
func (t *Package) Apply(ctx context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*packageState)
	if !ok {
		return fmt.Errorf("applying package %s: the plan has no package state", p.Resource.ID)
	}
	t.applyMu.Lock()
	defer t.applyMu.Unlock()
	// Whatever happened, dpkg may have written its database.
	defer t.status.invalidate()
	root := pkgRoot(h)
	switch st.op {
	case pkgInstallSource:
		if err := t.installSource(ctx, h, p, st); err != nil {
			return err
		}
		return t.holdIfWanted(ctx, h, p, st)
	case pkgHold:
		return t.holdIfWanted(ctx, h, p, st)
	case pkgInstallApt:
		// An install by name needs lists that know the name: on a fresh
		// host there are none, and a new apt_repository's are not there
		// until apt-get update fetched them.
		if err := t.refreshLists(ctx, h, p); err != nil {
			return fmt.Errorf("installing %s: %w", st.name, err)
		}
		argv := []string{"apt-get", "install", "-y", "-q", "--no-install-recommends",
			"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
			// Wait for a running unattended-upgrades instead of failing at once.
			"-o", "DPkg::Lock::Timeout=120"}
		if st.downgrade {
			argv = append(argv, "--allow-downgrades")
		}
		if st.reinstall {
			argv = append(argv, "--reinstall")
		}
		if st.hold || st.held {
			// The catalog names this package, so changing it is wanted;
			// without this apt refuses to touch a held package.
			argv = append(argv, "--allow-change-held-packages")
		}
		argv = append(argv, aptRootOptions(root)...)
		target := st.name
		if st.version != "" {
			target += "=" + st.version
		}
		if err := pkgRun(ctx, h, p, "installing "+target+" with apt-get", append(argv, target)); err != nil {
			return err
		}
		return t.holdIfWanted(ctx, h, p, st)
	case pkgRemove, pkgPurge:
		op, doing := "--remove", "removing "
		if st.op == pkgPurge {
			op, doing = "--purge", "purging "
		}
		argv := dpkgArgv(root)
		if st.held {
			// dpkg skips a held package with a warning and exit status
			// 0 otherwise; the catalog says it must go.
			argv = append(argv, "--force-hold")
		}
		return pkgRun(ctx, h, p, doing+st.name+" with dpkg", append(argv, op, st.name))
	}
	return fmt.Errorf("applying package %s: unknown operation %d", st.name, st.op)
}

// holdIfWanted selects the package "hold" in dpkg's database for
// ensure = "held", with dpkg --set-selections (what apt-mark hold does),
// which works offline and under --root.
func (t *Package) holdIfWanted(ctx context.Context, h *Host, p *Plan, st *packageState) error {
	if !st.hold {
		return nil
	}
	argv := append(dpkgArgv(pkgRoot(h)), "--set-selections")
	res, err := h.Run(ctx, Cmd{Argv: argv, Stdin: []byte(st.name + " hold\n"), Timeout: packageTimeout})
	p.Output += string(res.Output)
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("dpkg exited with status %d: %s", res.ExitCode, toolErrorLine(res.Output))
	}
	if err != nil {
		return fmt.Errorf("holding %s: %w", st.name, err)
	}
	return nil
}

// installSource installs the site's .deb with dpkg -i, after checking
// that it is the package (and version) the resource asks for, so that a
// wrong file fails at once instead of never converging.
func (t *Package) installSource(ctx context.Context, h *Host, p *Plan, st *packageState) error {
	root := pkgRoot(h)
	doing := fmt.Sprintf("installing %s from %s", st.name, st.source)
	// Under the root's own cache, so that dpkg reads it from the host it
	// installs into and the file never crosses filesystems twice.
	dir, dirPath, err := debCacheDir(root)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	defer dir.Close()
	name, err := fetchDeb(ctx, h, dir, st.digest)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	defer dir.Remove(name)
	deb := filepath.Join(dirPath, name)
	info, err := t.debInfo(ctx, h, st.digest, deb)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	base, _, _ := strings.Cut(st.name, ":")
	if info.name != base {
		return fmt.Errorf("%s: the file is package %s, not %s", doing, info.name, base)
	}
	if st.version != "" && compareDebianVersions(info.version, st.version) != 0 {
		return fmt.Errorf("%s: the file is version %s, but ensure wants %s", doing, info.version, st.version)
	}
	argv := append(dpkgArgv(root), "--force-confdef", "--force-confold", "--install", deb)
	return pkgRun(ctx, h, p, doing+" with dpkg", argv)
}

// latest returns the version ensure = "latest" means: the .deb's for a
// package with a source, else apt's candidate. An empty answer means none
// is known.
func (t *Package) latest(ctx context.Context, h *Host, name, source, digest string) (string, error) {
	if source != "" {
		t.mu.Lock()
		info, ok := t.debs[digest]
		t.mu.Unlock()
		if ok {
			return info.version, nil
		}
		// Outside the host root: Check must leave the host as it found it.
		tmp, err := os.MkdirTemp("", "herd-deb-")
		if err != nil {
			return "", fmt.Errorf("reading the version of %s: %w", source, err)
		}
		defer os.RemoveAll(tmp)
		dir, err := os.OpenRoot(tmp)
		if err != nil {
			return "", fmt.Errorf("reading the version of %s: %w", source, err)
		}
		defer dir.Close()
		name, err := fetchDeb(ctx, h, dir, digest)
		if err != nil {
			return "", fmt.Errorf("reading the version of %s: %w", source, err)
		}
		info, err = t.debInfo(ctx, h, digest, filepath.Join(tmp, name))
		if err != nil {
			return "", fmt.Errorf("reading the version of %s: %w", source, err)
		}
		return info.version, nil
	}
	return aptCandidate(ctx, h, name)
}

// aptCandidate asks apt-cache which version apt would install. apt-cache
// is told to keep its package cache in memory: by default it rewrites
// var/cache/apt/*.bin when stale, and Check must not write.
func aptCandidate(ctx context.Context, h *Host, name string) (string, error) {
	argv := append([]string{"apt-cache", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="},
		aptRootOptions(pkgRoot(h))...)
	res, err := h.Run(ctx, Cmd{Argv: append(argv, "policy", name), Timeout: time.Minute})
	if err != nil {
		return "", fmt.Errorf("asking apt-cache for the candidate version: %w", err)
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("asking apt-cache for the candidate version: exit status %d: %s", res.ExitCode, toolErrorLine(res.Output))
	}
	return parseAptPolicy(res.Output), nil
}

// parseAptPolicy returns the Candidate of `apt-cache policy NAME`'s
// output, or "" when there is none (an unknown package prints nothing).
func parseAptPolicy(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Candidate:"); ok {
			if v = strings.TrimSpace(v); v != "(none)" {
				return v
			}
			return ""
		}
	}
	return ""
}

// debInfo reads a .deb's Package, Version and Architecture with dpkg-deb,
// remembering them by digest.
func (t *Package) debInfo(ctx context.Context, h *Host, digest, deb string) (debInfo, error) {
	t.mu.Lock()
	info, ok := t.debs[digest]
	t.mu.Unlock()
	if ok {
		return info, nil
	}
	res, err := h.Run(ctx, Cmd{Argv: []string{"dpkg-deb", "--field", deb, "Package", "Version", "Architecture"}, Timeout: time.Minute})
	if err != nil {
		return debInfo{}, fmt.Errorf("reading the .deb's control fields: %w", err)
	}
	if res.ExitCode != 0 {
		return debInfo{}, fmt.Errorf("reading the .deb's control fields: dpkg-deb exited with status %d: %s", res.ExitCode, toolErrorLine(res.Output))
	}
	recs, err := parseDpkgStatus(res.Output)
	if err != nil || len(recs) != 1 || recs[0].Version == "" {
		return debInfo{}, fmt.Errorf("reading the .deb's control fields: unexpected dpkg-deb output %q", dpkgClip(string(res.Output), 200))
	}
	info = debInfo{name: recs[0].Name, version: recs[0].Version, arch: recs[0].Arch}
	t.mu.Lock()
	if t.debs == nil {
		t.debs = map[string]debInfo{}
	}
	t.debs[digest] = info
	t.mu.Unlock()
	return info, nil
}

// debCacheDir opens ROOT/var/cache/herd, where a site's .deb waits for
// dpkg, creating it (0700) if need be, resolved by the one policy so that
// a link planted in the root never leads the write out of it. dirPath is
// where the directory really is (read back from its handle), for dpkg's
// command line.
func debCacheDir(root string) (dir *os.Root, dirPath string, err error) {
	cfd, err := openDirInRoot(root, "var/cache", false)
	if err != nil {
		return nil, "", fmt.Errorf("opening var/cache: %w", err)
	}
	cache, err := rootAt(cfd)
	unix.Close(cfd)
	if err != nil {
		return nil, "", err
	}
	defer cache.Close()
	if err := cache.Mkdir("herd", 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, "", fmt.Errorf("making var/cache/herd: %w", err)
	}
	fd, err := openDirInRoot(root, "var/cache/herd", false)
	if err != nil {
		return nil, "", fmt.Errorf("opening var/cache/herd: %w", err)
	}
	defer unix.Close(fd)
	if dirPath, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err != nil {
		return nil, "", fmt.Errorf("finding var/cache/herd: %w", err)
	}
	if dir, err = rootAt(fd); err != nil {
		return nil, "", err
	}
	return dir, dirPath, nil
}

// fetchDeb writes the site file with the given digest to a new file in dir
// and returns its name there, checking the content against the digest on
// the way: dpkg installs as root whatever it is given.
func fetchDeb(ctx context.Context, h *Host, dir *os.Root, digest string) (string, error) {
	if h.Files == nil {
		return "", errors.New("fetching the .deb: the host has no file source")
	}
	rc, err := h.Files(ctx, digest)
	if err != nil {
		return "", fmt.Errorf("fetching the .deb: %w", err)
	}
	defer rc.Close()
	name := "package-" + rand.Text() + ".deb"
	f, err := dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("fetching the .deb: %w", err)
	}
	sum := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, sum), rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if got := "sha256:" + hex.EncodeToString(sum.Sum(nil)); got != digest {
			err = fmt.Errorf("content has digest %s, want %s", got, digest)
		}
	}
	if err != nil {
		dir.Remove(name)
		return "", fmt.Errorf("fetching the .deb: %w", err)
	}
	return name, nil
}

// pkgRun runs one dpkg or apt-get command of an Apply, keeping its output
// in the plan and turning a failure into an error that quotes the line
// that says why.
func pkgRun(ctx context.Context, h *Host, p *Plan, doing string, argv []string) error {
	res, err := h.Run(ctx, Cmd{
		Argv: argv,
		// No debconf questions and no pagers: nobody is there to answer.
		Env:     []string{"DEBIAN_FRONTEND=noninteractive", "APT_LISTCHANGES_FRONTEND=none"},
		Timeout: packageTimeout,
	})
	p.Output += string(res.Output)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: %s exited with status %d: %s", doing, argv[0], res.ExitCode, toolErrorLine(res.Output))
	}
	return nil
}

// toolErrorLine picks the line of a tool's output that says what went
// wrong: apt's last "E:" line or dpkg's last "error" line, else the last
// line, which is where the shadow tools put theirs.
func toolErrorLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "E:") || strings.Contains(l, "error") {
			return l
		}
	}
	if len(lines) == 0 || lines[len(lines)-1] == "" {
		return "no output"
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// pkgRoot is the host root, "/" when unset.
func pkgRoot(h *Host) string {
	if h.Root == "" {
		return "/"
	}
	return h.Root
}

// pkgSandbox reports whether root is a sandbox rather than the real host.
func pkgSandbox(root string) bool { return root != "/" }

// dpkgArgv starts a dpkg command for root. dpkg is named without a path so
// that the agent's host runs its own dpkg against the root: a dpkg inside
// a sandbox root belongs to that root's libraries, not this machine's.
func dpkgArgv(root string) []string {
	if pkgSandbox(root) {
		return []string{"dpkg", "--root=" + root}
	}
	return []string{"dpkg"}
}

// aptRootOptions point apt at a sandbox root: its configuration, lists,
// caches and dpkg status file, and tell the dpkg it runs to use the root.
func aptRootOptions(root string) []string {
	if !pkgSandbox(root) {
		return nil
	}
	return []string{
		"-o", "Dir=" + root,
		"-o", "Dir::State::status=" + filepath.Join(root, dpkgStatusPath),
		"-o", "DPkg::Options::=--root=" + root,
	}
}

// packageName is the resource's package name.
func packageName(r *catalogs.Resource) string {
	if n := r.String("name"); n != "" {
		return n
	}
	return r.Name
}
