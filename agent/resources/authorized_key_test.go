package resources

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/herdcm/herd/catalogs"
)

// testPubKey returns a real ed25519 public key, "ssh-ed25519 base64",
// different for each seed.
func testPubKey(seed byte) string {
	priv := ed25519.NewKeyFromSeed(append(make([]byte, 31), seed))
	pub := priv.Public().(ed25519.PublicKey)
	var wire []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), pub} {
		wire = binary.BigEndian.AppendUint32(wire, uint32(len(part)))
		wire = append(wire, part...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(wire)
}

// withHome lays out a root whose etc/passwd has alice (this process's
// uid and gid, so no chown needs root) with her home.
func withHome(t *testing.T, root string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nalice:x:%d:%d::/home/alice:/bin/sh\n", os.Getuid(), os.Getgid())
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "home/alice"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// writeKeys writes alice's authorized_keys.
func writeKeys(t *testing.T, root, content string) {
	t.Helper()
	dir := filepath.Join(root, "home/alice/.ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readKeys(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "home/alice/.ssh/authorized_keys"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// authorizedKeyConformance returns the authorized_key type's cases.
func authorizedKeyConformance(t *testing.T) []conformanceCase {
	home := func(t *testing.T, h *Host, _ *testFiles) { withHome(t, h.Root) }
	other := "# bob's key, by hand\n" + testPubKey(9) + " bob@desk\n\n"
	withOther := func(t *testing.T, h *Host, _ *testFiles) {
		withHome(t, h.Root)
		writeKeys(t, h.Root, other)
	}
	withOurs := func(t *testing.T, h *Host, _ *testFiles) {
		withHome(t, h.Root)
		writeKeys(t, h.Root, other+testPubKey(1)+" alice@laptop\n")
	}
	key := map[string]any{"user": "alice", "key": testPubKey(1)}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range key {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return []conformanceCase{
		{name: "authorized_key/fresh", typ: &AuthorizedKey{}, setup: home, res: res("authorized_key", "alice@laptop", key)},
		{name: "authorized_key/beside-others", typ: &AuthorizedKey{}, setup: withOther,
			res: res("authorized_key", "alice@laptop", with(map[string]any{"options": []string{"no-pty", `from="10.0.0.0/8"`}}))},
		{name: "authorized_key/purge", typ: &AuthorizedKey{}, setup: withOther,
			res: res("authorized_key", "alice@laptop", with(map[string]any{"purge": true}))},
		{name: "authorized_key/absent", typ: &AuthorizedKey{}, setup: withOurs,
			res: res("authorized_key", "alice@laptop", with(map[string]any{"ensure": "absent"}))},
	}
}

// TestAuthorizedKeyKeepsOthers: the managed line is added, changed in
// place and removed; every other line (keys, comments, blank lines, a
// line that is no key, a last line without a newline) stays byte for
// byte. With purge, other keys go and comments stay.
func TestAuthorizedKeyKeepsOthers(t *testing.T) {
	t.Parallel()
	bob := testPubKey(9) + " bob@desk"
	old := "# managed by hand\n\n" + bob + "\nnot a key at all\n" + `command="/bin/echo hi",no-pty ` + testPubKey(1) + " old-label\r\n" + "   " + testPubKey(3) + "\tcarol"
	for _, tt := range []struct {
		name  string
		attrs map[string]any
		want  string
	}{
		{"changed in place", map[string]any{"options": []string{"no-pty"}},
			"# managed by hand\n\n" + bob + "\nnot a key at all\nno-pty " + testPubKey(1) + " alice@laptop\n" + "   " + testPubKey(3) + "\tcarol"},
		{"removed", map[string]any{"ensure": "absent"},
			"# managed by hand\n\n" + bob + "\nnot a key at all\n" + "   " + testPubKey(3) + "\tcarol"},
		{"purge", map[string]any{"purge": true},
			"# managed by hand\n\nnot a key at all\n" + testPubKey(1) + " alice@laptop\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHost(t)
			withHome(t, h.Root)
			writeKeys(t, h.Root, old)
			attrs := map[string]any{"user": "alice", "key": testPubKey(1)}
			for k, v := range tt.attrs {
				attrs[k] = v
			}
			r := res("authorized_key", "alice@laptop", attrs)
			h.Catalog = &catalogs.Catalog{Resources: []catalogs.Resource{r}}
			pkgConverge(t, h, &AuthorizedKey{}, &r)
			if got := readKeys(t, h.Root); got != tt.want {
				t.Errorf("authorized_keys = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAuthorizedKeyParallel: the keys of one user converge in parallel
// (as the engine runs them) and none loses another's line; .ssh is 0700
// and the file 0600, both the user's.
func TestAuthorizedKeyParallel(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	withHome(t, h.Root)
	var rs []catalogs.Resource
	for i := range 8 {
		rs = append(rs, res("authorized_key", fmt.Sprintf("k%d", i), map[string]any{"user": "alice", "key": testPubKey(byte(i + 10)), "purge": true}))
	}
	h.Catalog = &catalogs.Catalog{Resources: rs}
	var plans []*Plan
	for i := range rs {
		p, err := (&AuthorizedKey{}).Check(context.Background(), h, &rs[i])
		if err != nil {
			t.Fatal(err)
		}
		plans = append(plans, p)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(plans))
	for i, p := range plans {
		wg.Go(func() { errs[i] = (&AuthorizedKey{}).Apply(context.Background(), h, p) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	got := readKeys(t, h.Root)
	h.Run = func(context.Context, Cmd) (Result, error) {
		t.Fatal("a no-change check started a process")
		return Result{}, nil
	}
	for i := range rs {
		if p, err := (&AuthorizedKey{}).Check(context.Background(), h, &rs[i]); err != nil || !p.InSync() {
			t.Errorf("key %d after the parallel run: %+v, %v; file:\n%s", i, p, err, got)
		}
	}
	for rel, mode := range map[string]os.FileMode{"home/alice/.ssh": 0o700 | os.ModeDir, "home/alice/.ssh/authorized_keys": 0o600} {
		fi, err := os.Lstat(filepath.Join(h.Root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode || int(fi.Sys().(*syscall.Stat_t).Uid) != os.Getuid() {
			t.Errorf("%s: mode %v uid %d, want %v owned by %d", rel, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, mode, os.Getuid())
		}
	}
}

// TestAuthorizedKeyLinksNotFollowed: a home that is a link to a path
// outside the root resolves inside it, never outside; a .ssh or an
// authorized_keys that is a link (the user's own doing) is refused, and
// nothing outside the root is written.
func TestAuthorizedKeyLinksNotFollowed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		plant func(t *testing.T, root, outside string)
		err   string // "" when the key lands in the root
	}{
		{"home is a link out", func(t *testing.T, root, outside string) {
			os.RemoveAll(filepath.Join(root, "home/alice"))
			mustSymlink(t, outside, filepath.Join(root, "home/alice"))
			// Resolved in the root, the link names ROOT/<outside>.
			if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"home is a relative link climbing out", func(t *testing.T, root, outside string) {
			os.RemoveAll(filepath.Join(root, "home/alice"))
			mustSymlink(t, "../../../../../../../../.."+outside, filepath.Join(root, "home/alice"))
			if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{".ssh is a link", func(t *testing.T, root, outside string) {
			mustSymlink(t, outside, filepath.Join(root, "home/alice/.ssh"))
		}, ".ssh is a symbolic link"},
		{"authorized_keys is a link", func(t *testing.T, root, outside string) {
			if err := os.MkdirAll(filepath.Join(root, "home/alice/.ssh"), 0o700); err != nil {
				t.Fatal(err)
			}
			mustSymlink(t, filepath.Join(outside, "authorized_keys"), filepath.Join(root, "home/alice/.ssh/authorized_keys"))
		}, "authorized_keys is a symbolic link"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newTestHost(t)
			withHome(t, h.Root)
			outside := t.TempDir()
			tt.plant(t, h.Root, outside)
			r := res("authorized_key", "alice@laptop", map[string]any{"user": "alice", "key": testPubKey(1)})
			p, err := (&AuthorizedKey{}).Check(context.Background(), h, &r)
			if err == nil {
				err = (&AuthorizedKey{}).Apply(context.Background(), h, p)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("Check/Apply = %v, want an error saying %q", err, tt.err)
				}
			} else if err != nil {
				t.Fatalf("Check/Apply: %v", err)
			} else if b, err := os.ReadFile(filepath.Join(h.Root, outside, ".ssh/authorized_keys")); err != nil || !strings.Contains(string(b), testPubKey(1)) {
				t.Errorf("the key did not land in the root's copy of the home: %q, %v", b, err)
			}
			entries, _ := os.ReadDir(outside)
			if len(entries) != 0 {
				t.Errorf("something was written outside the root: %v", entries)
			}
		})
	}
}

func mustSymlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

// TestAuthorizedKeyBadInput: a catalog's bad key, option or user is a
// clear error at Check.
func TestAuthorizedKeyBadInput(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	withHome(t, h.Root)
	for _, tt := range []struct {
		attrs map[string]any
		want  string
	}{
		{map[string]any{"user": "alice", "key": "ssh-ed25519 AAAA"}, "too short"},
		{map[string]any{"user": "alice", "key": "ssh-rsa " + strings.Fields(testPubKey(1))[1]}, "not a ssh-rsa key"},
		{map[string]any{"user": "alice", "key": "ssh-foo AAAA"}, "unknown key type"},
		{map[string]any{"user": "alice", "key": testPubKey(1) + "\nssh-rsa AAAA"}, `want "type base64" only`},
		{map[string]any{"user": "alice", "key": testPubKey(1), "options": []string{"no-pty\n" + testPubKey(2)}}, "options"},
		{map[string]any{"user": "nobody-here", "key": testPubKey(1)}, `user "nobody-here" is not in the root's etc/passwd`},
	} {
		r := res("authorized_key", "k", tt.attrs)
		if _, err := (&AuthorizedKey{}).Check(context.Background(), h, &r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%v) = %v, want an error saying %q", tt.attrs, err, tt.want)
		}
	}
}

// FuzzParseKeyLine: any line parses without panicking; a parsed key has
// a known type and base64, and what akEdit writes for a key keeps every
// line it does not own.
func FuzzParseKeyLine(f *testing.F) {
	for _, s := range []string{
		testPubKey(1) + " alice@laptop",
		`command="echo \"hi there\"",no-pty ` + testPubKey(2),
		"# a comment",
		"",
		`from="a b" ssh-rsa AAAAB3NzaC1yc2E=`,
		"\t" + testPubKey(3) + "\t\tcomment with  spaces",
		`"unterminated ssh-ed25519 AAAA`,
		"ssh-ed25519",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		k, ok := ParseKeyLine(line)
		if !ok {
			return
		}
		if !catalogs.KnownKeyType(k.Type) || !isBase64(k.Blob) {
			t.Fatalf("ParseKeyLine(%q) = %+v: unknown type or bad base64", line, k)
		}
		if strings.ContainsAny(line, "\n") {
			return
		}
		w := akWant{typ: "ssh-ed25519", blob: "AAAAfuzz", line: "ssh-ed25519 AAAAfuzz x"}
		content := line + "\n"
		out, _ := akEdit(content, w)
		if k.Type+" "+k.Blob != "ssh-ed25519 AAAAfuzz" && !strings.HasPrefix(out, content) {
			t.Fatalf("akEdit(%q) = %q: another key's line was not kept", content, out)
		}
	})
}

// TestAuthorizedKeyAbsentLeavesTheFile: a key that is absent already is in
// sync, whatever the file's mode (it is no longer this resource's).
func TestAuthorizedKeyAbsentLeavesTheFile(t *testing.T) {
	t.Parallel()
	h, _ := newTestHost(t)
	withHome(t, h.Root)
	writeKeys(t, h.Root, testPubKey(9)+" bob\n")
	if err := os.Chmod(filepath.Join(h.Root, "home/alice/.ssh/authorized_keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := res("authorized_key", "alice@laptop", map[string]any{"user": "alice", "key": testPubKey(1), "ensure": "absent"})
	if p, err := (&AuthorizedKey{}).Check(context.Background(), h, &r); err != nil || !p.InSync() {
		t.Errorf("Check = %+v, %v; want in sync", p, err)
	}
}
