package resources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/testkit"
)

// aptRepo is a local signed flat apt repository built by a test.
type aptRepo struct {
	dir string // file:DIR is its URI
	key []byte // its ASCII-armored public signing key
}

// buildAptRepo builds a flat repository of debs in a temporary directory:
// a hand-written Packages index, a Release listing its digest, and an
// InRelease clear-signed with a key made for the test (gpg, in its own
// GNUPGHOME), as a vendor's repository is.
func buildAptRepo(t *testing.T, debs ...testkit.DebSpec) aptRepo {
	t.Helper()
	testkit.NeedTools(t, "gpg", "gpgv", "dpkg-deb")
	dir := t.TempDir()
	var packages strings.Builder
	for _, s := range debs {
		_, content := testkit.BuildDeb(t, s)
		name := s.Name + "_" + s.Version + "_all.deb"
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(content)
		fmt.Fprintf(&packages, "Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: Herd Tests <tests@herd.invalid>\nFilename: ./%s\nSize: %d\nSHA256: %s\nDescription: %s\n\n",
			s.Name, s.Version, name, len(content), hex.EncodeToString(sum[:]), s.Name)
	}
	idx := []byte(packages.String())
	if err := os.WriteFile(filepath.Join(dir, "Packages"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(idx)
	release := fmt.Sprintf("Origin: herd-test\nLabel: herd-test\nDate: %s\nSHA256:\n %s %d Packages\n",
		time.Now().UTC().Format(time.RFC1123Z), hex.EncodeToString(sum[:]), len(idx))
	if err := os.WriteFile(filepath.Join(dir, "Release"), []byte(release), 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	gpg := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("gpg", append([]string{"--batch", "--quiet", "--homedir", home}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return out
	}
	gpg("--passphrase", "", "--quick-gen-key", "Herd Test <test@herd.invalid>", "ed25519", "sign", "never")
	gpg("--yes", "--clearsign", "-o", filepath.Join(dir, "InRelease"), filepath.Join(dir, "Release"))
	key := gpg("--armor", "--export")
	// gpg-agent outlives the commands; stop it with the test.
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run() })
	return aptRepo{dir: dir, key: key}
}

// aptRepoRes is an apt_repository resource of repo, its key served by
// files. The repository is copied into the host's root at /srv/NAME, as a
// site ships one (a file: URI of a sandbox names a path inside it).
func aptRepoRes(t *testing.T, h *Host, name string, repo aptRepo, files *testFiles) catalogs.Resource {
	t.Helper()
	if err := os.CopyFS(filepath.Join(h.Root, "srv", name), os.DirFS(repo.dir)); err != nil {
		t.Fatal(err)
	}
	return res("apt_repository", name, map[string]any{
		"uris": []string{"file:/srv/" + name}, "suites": []string{"./"},
		"key": "files/" + name + ".asc", "key_digest": files.add(repo.key),
	})
}

// TestAptInstallByNameOnAFreshRoot: on a fresh sandbox root (no apt lists
// at all), two apt_repository resources are written, then two packages
// install by name from them: apt-get update runs once for the run, not
// once per repository or package, before the first install. A package
// held is installed and selected "hold", read back from the status file.
// A second run starts no process at all.
func TestAptInstallByNameOnAFreshRoot(t *testing.T) {
	testkit.NeedTools(t, "apt-get", "dpkg")
	testkit.NeedRoot(t, "apt-get installs into the sandbox with dpkg --root, which chroots for maintainer scripts")
	repo := buildAptRepo(t, testkit.DebSpec{Name: "herd-one", Version: "1.0", Files: map[string]string{"/usr/share/herd-one/x": "one\n"}})
	other := buildAptRepo(t, testkit.DebSpec{Name: "herd-two", Version: "2.0", Files: map[string]string{"/usr/share/herd-two/x": "two\n"}})
	h, files := newTestHost(t)
	testkit.InitSandboxHost(t, h.Root)
	var updates, runs atomic.Int32
	run := h.Run
	h.Run = func(ctx context.Context, c Cmd) (Result, error) {
		runs.Add(1)
		if slices.Contains(c.Argv, "update") {
			updates.Add(1)
		}
		return run(ctx, c)
	}
	rs := []catalogs.Resource{
		aptRepoRes(t, h, "herd-test", repo, files),
		aptRepoRes(t, h, "herd-test-other", other, files),
		res("package", "herd-one", nil),
		res("package", "herd-two", map[string]any{"ensure": "held"}),
	}
	h.Catalog = &catalogs.Catalog{Resources: rs}
	ctx := context.Background()
	converge := func(types map[string]Type) {
		t.Helper()
		for i := range rs {
			typ := types[rs[i].Type]
			p, err := typ.Check(ctx, h, &rs[i])
			if err != nil {
				t.Fatalf("Check %s: %v", rs[i].ID, err)
			}
			if p.InSync() {
				continue
			}
			if err := typ.Apply(ctx, h, p); err != nil {
				t.Fatalf("Apply %s: %v\n%s", rs[i].ID, err, p.Output)
			}
			if again, err := typ.Check(ctx, h, &rs[i]); err != nil || !again.InSync() {
				t.Fatalf("%s did not converge: %+v, %v", rs[i].ID, again, err)
			}
		}
	}
	converge(Types())
	if n := updates.Load(); n != 1 {
		t.Errorf("apt-get update ran %d times in the run, want once", n)
	}
	for _, name := range []string{"herd-one", "herd-two"} {
		rec, found := dpkgStatusOf(t, h.Root, name)
		if !found || !rec.installed() {
			t.Errorf("%s is not installed: %+v", name, rec)
		}
	}
	if rec, _ := dpkgStatusOf(t, h.Root, "herd-two"); rec.Want != "hold" {
		t.Errorf("herd-two's selection is %q, want hold", rec.Want)
	}
	b, err := os.ReadFile(filepath.Join(h.Root, "etc/apt/sources.list.d/herd-test.sources"))
	if err != nil || !strings.Contains(string(b), "Signed-By: "+filepath.Join(h.Root, "etc/apt/keyrings/herd-test.asc")+"\n") {
		t.Errorf("the source does not name its key: %q, %v", b, err)
	}
	if !strings.Contains(string(b), "URIs: file:"+filepath.Join(h.Root, "srv/herd-test")+"\n") {
		t.Errorf("the source's file: URI does not name the repository inside the root: %q", b)
	}
	if k, err := os.ReadFile(filepath.Join(h.Root, "etc/apt/keyrings/herd-test.asc")); err != nil || string(k) != string(repo.key) {
		t.Errorf("the keyring is not the site's key: %v", err)
	}

	runs.Store(0)
	converge(Types())
	if n := runs.Load(); n != 0 {
		t.Errorf("a second run started %d processes, want none", n)
	}

	// Held by the site, released by hand: put back without a reinstall.
	cmd := exec.Command("dpkg", "--root="+h.Root, "--set-selections")
	cmd.Stdin = strings.NewReader("herd-two install\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg --set-selections: %v\n%s", err, out)
	}
	p, got := pkgCheck(t, h, &Package{}, &rs[3])
	if want := []string{"update selection: install → hold"}; !slices.Equal(got, want) {
		t.Errorf("Check of an unheld package = %v, want %v", got, want)
	}
	if err := (&Package{}).Apply(ctx, h, p); err != nil {
		t.Fatalf("hold again: %v\n%s", err, p.Output)
	}
	if rec, _ := dpkgStatusOf(t, h.Root, "herd-two"); rec.Want != "hold" {
		t.Errorf("herd-two's selection is %q after the put back, want hold", rec.Want)
	}
}

// TestAptURIInRoot: in a sandbox root a file: URI names the path inside
// the root, .. never leaving it; other URIs, and the real host's, stay.
func TestAptURIInRoot(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ root, uri, want string }{
		{"/sb", "file:/srv/repo", "file:/sb/srv/repo"},
		{"/sb", "file:///srv/repo", "file:/sb/srv/repo"},
		{"/sb", "file:/../../etc/apt", "file:/sb/etc/apt"},
		{"/sb", "file:/srv/../../x/", "file:/sb/x"},
		{"/sb", "https://deb.example.com/debian", "https://deb.example.com/debian"},
		{"/sb", "file:relative", "file:relative"},
		{"/", "file:/srv/repo", "file:/srv/repo"},
	} {
		if got := aptURIInRoot(tt.root, tt.uri); got != tt.want {
			t.Errorf("aptURIInRoot(%q, %q) = %q, want %q", tt.root, tt.uri, got, tt.want)
		}
	}
}

// TestAptListsStale: the lists are stale with no Packages index, with a
// last update over a day ago, and with a source newer than the update.
func TestAptListsStale(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, root string)
		want  string
	}{
		{"no lists", func(t *testing.T, root string) {}, "no package lists"},
		{"fresh", func(t *testing.T, root string) {
			writeAt(t, root, "var/lib/apt/lists/x_Packages.lz4", now.Add(-100*time.Hour))
			writeAt(t, root, "etc/apt/sources.list.d/a.sources", now.Add(-2*time.Hour))
			writeAt(t, root, aptStampRel, now.Add(-time.Hour))
		}, ""},
		{"old", func(t *testing.T, root string) {
			writeAt(t, root, "var/lib/apt/lists/x_Packages", now.Add(-100*time.Hour))
			writeAt(t, root, aptStampRel, now.Add(-25*time.Hour))
		}, "last updated"},
		{"old lists, no stamp", func(t *testing.T, root string) {
			writeAt(t, root, "var/lib/apt/lists/x_Packages", now.Add(-100*time.Hour))
		}, "last updated"},
		{"source newer", func(t *testing.T, root string) {
			writeAt(t, root, "var/lib/apt/lists/x_Packages", now.Add(-3*time.Hour))
			writeAt(t, root, aptStampRel, now.Add(-2*time.Hour))
			writeAt(t, root, "etc/apt/sources.list.d/new.sources", now.Add(-time.Hour))
		}, "an apt source changed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			for _, d := range []string{"var/lib/apt/lists", "etc/apt/sources.list.d"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			tt.setup(t, root)
			// The directory's own time must not count as a change.
			old := now.Add(-50 * time.Hour)
			os.Chtimes(filepath.Join(root, "etc/apt/sources.list.d"), old, old)
			got, err := aptListsStale(root, now)
			if err != nil {
				t.Fatal(err)
			}
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("aptListsStale = %q, want %q", got, tt.want)
			}
		})
	}
}

func writeAt(t *testing.T, root, rel string, at time.Time) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}

// aptRepositoryConformance returns the apt_repository type's cases.
func aptRepositoryConformance(t *testing.T) []conformanceCase {
	key := []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZtest\n-----END PGP PUBLIC KEY BLOCK-----\n")
	full := func(files *testFiles) map[string]any {
		return map[string]any{
			"uris": []string{"https://deb.example.com/debian"}, "suites": []string{"bookworm", "bookworm-updates"},
			"components": []string{"main", "contrib"}, "architectures": []string{"amd64"},
			"key": "files/example.asc", "key_digest": files.add(key),
		}
	}
	var withFiles *testFiles
	keep := func(t *testing.T, h *Host, files *testFiles) {
		withFiles = files
		testkit.InitSandboxHost(t, h.Root)
	}
	existing := func(t *testing.T, h *Host, files *testFiles) {
		keep(t, h, files)
		writeRootFile(t, h, "etc/apt/sources.list.d/example.sources", "Types: deb\nURIs: http://old.example.com/debian\nSuites: bookworm\nComponents: main\n")
		writeRootFile(t, h, "etc/apt/keyrings/example.asc", "old key")
		writeRootFile(t, h, "etc/apt/keyrings/example.gpg", "an older key of the other kind")
	}
	_ = withFiles
	files := &testFiles{m: map[string][]byte{}}
	r := res("apt_repository", "example", full(files))
	cases := []conformanceCase{
		{name: "apt_repository/fresh", typ: &AptRepository{}, setup: keep, res: r},
		{name: "apt_repository/changed", typ: &AptRepository{}, setup: existing, res: r},
		{name: "apt_repository/no-key", typ: &AptRepository{}, setup: keep,
			res: res("apt_repository", "plain", map[string]any{"uris": []string{"file:/srv/repo"}, "suites": []string{"./"}})},
		{name: "apt_repository/absent", typ: &AptRepository{}, setup: existing,
			res: res("apt_repository", "example", map[string]any{"ensure": "absent"})},
	}
	// The cases' keys are served by each case's own files.
	for i := range cases {
		setup := cases[i].setup
		cases[i].setup = func(t *testing.T, h *Host, fs *testFiles) {
			fs.add(key)
			setup(t, h, fs)
		}
	}
	return cases
}

// TestAptRepositoryChanges: a changed source is described field by field,
// and a hand edit of a field is put back.
func TestAptRepositoryChanges(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	writeRootFile(t, h, "etc/apt/sources.list.d/example.sources", "Types: deb\nURIs: http://old.example.com/debian\nSuites: bookworm\nComponents: main\n")
	r := res("apt_repository", "example", map[string]any{"uris": []string{"https://deb.example.com/debian"}, "suites": []string{"bookworm"}, "components": []string{"main"}})
	h.Run = func(context.Context, Cmd) (Result, error) {
		t.Fatal("Check started a process")
		return Result{}, nil
	}
	_, got := pkgCheck(t, h, &AptRepository{}, &r)
	if want := []string{"update URIs: http://old.example.com/debian → https://deb.example.com/debian"}; !slices.Equal(got, want) {
		t.Errorf("Check = %v, want %v", got, want)
	}
}

// FuzzParseDeb822: any input parses or fails without panicking, and what
// aptSources renders always parses back to the values it was given.
func FuzzParseDeb822(f *testing.F) {
	for _, s := range []string{
		"Types: deb\nURIs: https://a\nSuites: b\nComponents: main\n",
		"# c\n\nTypes: deb\n\nTypes: deb-src\nURIs: x\n",
		"Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n",
		" continuation first\n",
		"NoColon\n",
		"A: 1\nA: 2\n",
	} {
		f.Add([]byte(s), "bookworm")
	}
	f.Fuzz(func(t *testing.T, data []byte, suite string) {
		stanzas, err := parseDeb822(data)
		if err == nil {
			for _, s := range stanzas {
				if len(s) == 0 {
					t.Fatal("an empty stanza")
				}
			}
		}
		r := res("apt_repository", "x", map[string]any{"uris": []string{"https://a.example/debian"}, "suites": []string{suite}, "components": []string{"main"}})
		src, err := aptSources("/", &r, "etc/apt/keyrings/x.asc")
		if err != nil {
			return
		}
		back, err := parseDeb822(src)
		if err != nil || len(back) != 1 {
			t.Fatalf("aptSources gave %q, which parses as %v, %v", src, back, err)
		}
		if v, _ := back[0].get("Suites"); v != suite {
			t.Fatalf("Suites came back as %q, want %q", v, suite)
		}
	})
}

// TestNewTypesDriftPutBack: a hand edit of what authorized_key and
// apt_repository manage is found by Check (which changes nothing) and put
// back by Apply, keeping the hand-made lines that are not the resource's.
func TestNewTypesDriftPutBack(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		typ   Type
		res   func(files *testFiles) catalogs.Resource
		setup func(t *testing.T, root string)
		edit  func(t *testing.T, root string)
		check func(t *testing.T, root string)
	}{
		{"authorized_key: line removed by hand", &AuthorizedKey{},
			func(*testFiles) catalogs.Resource {
				return res("authorized_key", "alice@laptop", map[string]any{"user": "alice", "key": testPubKey(1)})
			},
			withHome,
			func(t *testing.T, root string) { writeKeys(t, root, "# mine\n"+testPubKey(7)+" by-hand\n") },
			func(t *testing.T, root string) {
				if got, want := readKeys(t, root), "# mine\n"+testPubKey(7)+" by-hand\n"+testPubKey(1)+" alice@laptop\n"; got != want {
					t.Errorf("authorized_keys = %q, want %q", got, want)
				}
			}},
		{"apt_repository: URIs edited by hand", &AptRepository{},
			func(files *testFiles) catalogs.Resource {
				return res("apt_repository", "example", map[string]any{"uris": []string{"https://deb.example.com/debian"}, "suites": []string{"bookworm"}, "components": []string{"main"},
					"key": "files/example.gpg", "key_digest": files.add([]byte("binary key"))})
			},
			func(t *testing.T, root string) {},
			func(t *testing.T, root string) {
				p := filepath.Join(root, "etc/apt/sources.list.d/example.sources")
				b, _ := os.ReadFile(p)
				os.WriteFile(p, []byte(strings.Replace(string(b), "https://deb.example.com", "http://evil.example", 1)), 0o644)
				os.WriteFile(filepath.Join(root, "etc/apt/keyrings/example.gpg"), []byte("another key"), 0o644)
			},
			func(t *testing.T, root string) {
				b, _ := os.ReadFile(filepath.Join(root, "etc/apt/sources.list.d/example.sources"))
				k, _ := os.ReadFile(filepath.Join(root, "etc/apt/keyrings/example.gpg"))
				if !strings.Contains(string(b), "URIs: https://deb.example.com/debian\n") || string(k) != "binary key" {
					t.Errorf("not put back: %q, key %q", b, k)
				}
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, files := newTestHost(t)
			tt.setup(t, h.Root)
			r := tt.res(files)
			h.Catalog = &catalogs.Catalog{Resources: []catalogs.Resource{r}}
			pkgConverge(t, h, tt.typ, &r)
			tt.edit(t, h.Root)
			before := treeHash(t, h.Root)
			p, err := tt.typ.Check(context.Background(), h, &r)
			if err != nil || p.InSync() {
				t.Fatalf("Check after a hand edit = %+v, %v; want changes", p, err)
			}
			if treeHash(t, h.Root) != before {
				t.Fatal("Check changed the host")
			}
			if err := tt.typ.Apply(context.Background(), h, p); err != nil {
				t.Fatal(err)
			}
			if again, err := tt.typ.Check(context.Background(), h, &r); err != nil || !again.InSync() {
				t.Fatalf("after the put back: %+v, %v", again, err)
			}
			tt.check(t, h.Root)
		})
	}
}

// TestAptRepositoryBadInput: a catalog's bad name, word or key is a clear
// error at Check.
func TestAptRepositoryBadInput(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	ok := map[string]any{"uris": []string{"https://a.example/debian"}, "suites": []string{"bookworm"}, "components": []string{"main"}}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range ok {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, tt := range []struct {
		name  string
		attrs map[string]any
		want  string
	}{
		{"../x", ok, "the name must be"},
		{"x", with("suites", []string{"book\nworm"}), "not one word"},
		{"x", with("uris", []string(nil)), "want at least one"},
		{"x", with("key", "files/k.txt"), "want a .asc"},
		{"x", with("key", "files/k.asc"), "no digest"},
		{"x", with("ensure", "latest"), "want present or absent"},
	} {
		r := res("apt_repository", tt.name, tt.attrs)
		if _, err := (&AptRepository{}).Check(context.Background(), h, &r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%s %v) = %v, want an error saying %q", tt.name, tt.attrs, err, tt.want)
		}
	}
}
