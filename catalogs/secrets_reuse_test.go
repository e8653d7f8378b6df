package catalogs

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The plain values of the secrets reuseSecretSite adds to secretSite's.
const (
	alicePass = "canary-alice-pw"
	bobPass   = "canary-bob-pw"
	litPass   = "canary-literal-use"
	eachPass  = "canary-literal-each"
	defPass   = "canary-default-param"
)

// reuseSecretSite is secretSite with a role that carries secrets through
// for_each (over data holding secrets, and over a literal holding one)
// and through definitions (a param rendered from a secret, one written
// "age:…" at the use, and a secret default), plus the new types that
// may hold a secret.
func reuseSecretSite(t *testing.T, recipient string, extra map[string]string) string {
	t.Helper()
	files := map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"app\", \"reuse\"]\n",
		"roles/reuse.toml": `
[params]
users = { alice = { password = "` + mustEncrypt(t, recipient, alicePass) + `", shell = "/bin/bash" }, bob = { password = "` + mustEncrypt(t, recipient, bobPass) + `", shell = "/bin/sh" } }

[[file]]
for_each = "params.users"
path = "/etc/users/{{ .each.key }}"
content = "shell={{ .each.value.shell }} password={{ .each.value.password }}\n"
mode = "0600"

[[file]]
for_each = "params.users"
path = "/etc/shells/{{ .each.key }}"
content = "{{ .each.value.shell }}\n"

[[file]]
for_each = ["` + mustEncrypt(t, recipient, eachPass) + `", "plain"]
path = "/etc/lit/{{ .each.key }}"
content = "{{ .each.value }}"

[[dbuser]]
name = "app"
password = "{{ .params.db.password }}"

[[dbuser]]
name = "lit"
password = "` + mustEncrypt(t, recipient, litPass) + `"

[[dbuser]]
for_each = "params.users"
name = "u-{{ .each.key }}"
password = "{{ .each.value.password }}"

[[wrapper]]
name = "w"
pw = "{{ .params.db.password }}"

[[sysctl]]
name = "net.core.somaxconn"
value = "{{ len .params.db.password }}"

[[ini]]
path = "/etc/app.ini"
section = "db"
setting = "password"
value = "{{ .params.db.password }}"

[[user]]
name = "carol"
password = "$6$salt$hash"
`,
		"defines/wrapper.toml": `
[params]
pw = { type = "string" }

[[dbuser]]
name = "nested-{{ .params.name }}"
password = "{{ .params.pw }}"
`,
		"defines/dbuser.toml": `
[params]
password = { type = "string" }
fallback = "` + mustEncrypt(t, recipient, defPass) + `"

[[file]]
path = "/etc/db/{{ .params.name }}.conf"
content = "name={{ .params.name }} password={{ .params.password }}\n"
mode = "0600"

[[file]]
path = "/etc/db/{{ .params.name }}.name"
content = "{{ .params.name }}"

[[file]]
path = "/etc/db/{{ .params.name }}.fallback"
content = "{{ .params.fallback }}"
`,
	}
	for k, v := range extra {
		files[k] = v
	}
	return secretSite(t, recipient, files)
}

// assertNoReusePlain fails when a secret of reuseSecretSite appears in b.
func assertNoReusePlain(t *testing.T, what string, b []byte) {
	t.Helper()
	assertNoPlain(t, what, b)
	for _, v := range []string{alicePass, bobPass, litPass, eachPass, defPass} {
		if strings.Contains(string(b), v) {
			t.Errorf("%s carries the plain secret %q", what, v)
		}
	}
}

// TestSecretsThroughReuse: a secret that reaches a resource through a
// for_each element or a definition's parameter is sealed to the node like
// one read directly, and nothing else of those resources is.
func TestSecretsThroughReuse(t *testing.T) {
	t.Parallel()
	keys := testSecretKeys(t)
	s := loadDir(t, reuseSecretSite(t, keys.Recipient(), nil))
	node := testNodeKey(t)
	cat, err := s.CompileWith("a", nil, CompileOptions{Secrets: keys, NodeKey: node.PublicKey()})
	if err != nil {
		t.Fatalf("CompileWith: %v", err)
	}
	enc, err := cat.Encode()
	if err != nil {
		t.Fatal(err)
	}
	assertNoReusePlain(t, "the catalog", enc)
	for _, tc := range []struct {
		id, attr string
		sealed   bool
		want     any
	}{
		{"file:/etc/users/alice", "content", true, "shell=/bin/bash password=" + alicePass + "\n"},
		{"file:/etc/users/bob", "content", true, "shell=/bin/sh password=" + bobPass + "\n"},
		{"file:/etc/users/bob", "mode", false, "0600"},
		{"file:/etc/shells/alice", "content", false, "/bin/bash\n"},
		{"file:/etc/lit/0", "content", true, eachPass},
		{"file:/etc/lit/1", "content", false, "plain"},
		{"file:/etc/db/app.conf", "content", true, "name=app password=" + dbPass + "\n"},
		{"file:/etc/db/app.name", "content", false, "app"},
		{"file:/etc/db/app.fallback", "content", true, defPass},
		{"file:/etc/db/lit.conf", "content", true, "name=lit password=" + litPass + "\n"},
		{"file:/etc/db/lit.name", "content", false, "lit"},
		{"file:/etc/db/u-alice.conf", "content", true, "name=u-alice password=" + alicePass + "\n"},
		{"file:/etc/db/u-bob.name", "content", false, "u-bob"},
		{"file:/etc/db/nested-w.conf", "content", true, "name=nested-w password=" + dbPass + "\n"},
		{"file:/etc/db/nested-w.name", "content", false, "nested-w"},
		{"sysctl:net.core.somaxconn", "value", true, "14"},
		{"ini:/etc/app.ini: [db] password", "value", true, dbPass},
		{"ini:/etc/app.ini: [db] password", "setting", false, "password"},
		// Sensitive by nature: sealed though no secret made it.
		{"user:carol", "password", true, "$6$salt$hash"},
	} {
		r, ok := cat.Resource(tc.id)
		if !ok {
			t.Errorf("no resource %s", tc.id)
			continue
		}
		v := r.Attrs[tc.attr]
		sv, isSealed := v.(Sealed)
		if isSealed != tc.sealed {
			t.Errorf("%s %s: sealed %v, want %v (%v)", tc.id, tc.attr, isSealed, tc.sealed, v)
			continue
		}
		if isSealed {
			if v, err = sv.Open(node); err != nil {
				t.Errorf("%s %s: %v", tc.id, tc.attr, err)
				continue
			}
		}
		if diff := cmp.Diff(tc.want, v); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", tc.id, tc.attr, diff)
		}
	}
	again, err := s.CompileWith("a", nil, CompileOptions{Secrets: keys, NodeKey: node.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if enc2, _ := again.Encode(); string(enc2) != string(enc) {
		t.Error("two compiles of one node with secrets through reuse gave different bytes")
	}
}

// TestSecretReuseErrors: where a secret would show through a for_each or
// a definition (a command line, a name, the number or keys of a
// for_each's elements, an edge, a world-readable cron file), compile
// refuses it, naming the place, the definition and the use, and never the
// value.
func TestSecretReuseErrors(t *testing.T) {
	t.Parallel()
	keys := testSecretKeys(t)
	node := testNodeKey(t).PublicKey()
	runner := `
[params]
token = { type = "string" }

[[exec]]
name = "run-{{ .params.name }}"
command = ["/usr/bin/tool", "--token={{ .params.token }}"]
`
	named := `
[params]
token = { type = "string" }

[[file]]
path = "/etc/tok/{{ .params.token }}"
content = "x"
`
	plainDef := "[[file]]\npath = \"/etc/d/{{ .params.name }}\"\ncontent = \"x\"\n"
	for _, tc := range []struct {
		name  string
		extra map[string]string
		want  []string // substrings of the error
	}{
		{
			name: "definition param in a command line",
			extra: map[string]string{"defines/runner.toml": runner, "roles/cmd.toml": `
[[runner]]
name = "x"
token = "{{ .params.db.password }}"
`},
			want: []string{"defines/runner.toml:7", "command: a secret in a command line", "in the use at roles/cmd.toml:2"},
		},
		{
			name: "definition param in a name",
			extra: map[string]string{"defines/named.toml": named, "roles/cmd.toml": `
[[named]]
name = "x"
token = "{{ .params.db.password }}"
`},
			want: []string{"defines/named.toml:6", "path cannot come from a secret", "in the use at roles/cmd.toml:2"},
		},
		{
			name: "secret names the use",
			extra: map[string]string{"defines/named.toml": plainDef, "roles/cmd.toml": `
[[named]]
name = "{{ .params.db.password }}"
`},
			want: []string{"roles/cmd.toml:3", "named name cannot come from a secret"},
		},
		{
			name: "secret in a use's edge",
			extra: map[string]string{"defines/named.toml": plainDef, "roles/cmd.toml": `
[[named]]
name = "x"
require = ["file:/etc/{{ .params.db.password }}"]
`},
			want: []string{"roles/cmd.toml:4", "require cannot come from a secret"},
		},
		{
			name: "use's condition reads a secret",
			extra: map[string]string{"defines/named.toml": plainDef, "roles/cmd.toml": `
[[named]]
name = "x"
when = "params.db.password startsWith 'canary'"
`},
			want: []string{"roles/cmd.toml:4", "reads a secret"},
		},
		{
			name: "for_each over a secret list",
			extra: map[string]string{"roles/cmd.toml": `
[[file]]
for_each = "split(params.db.password, '-')"
path = "/etc/parts/{{ .each.key }}"
content = "{{ .each.value }}"
`},
			want: []string{"roles/cmd.toml:3", "for_each \"split(params.db.password, '-')\" reads a secret"},
		},
		{
			// Its error would quote the first character of the value.
			name: "for_each fails on a secret's value",
			extra: map[string]string{"roles/cmd.toml": `
[[file]]
for_each = "fromJSON(params.db.password)"
path = "/etc/parts/{{ .each.key }}"
content = "x"
`},
			want: []string{"roles/cmd.toml:3", "reads a secret"},
		},
		{
			name: "condition fails on a secret's value",
			extra: map[string]string{"roles/cmd.toml": `
[[file]]
path = "/etc/j"
content = "x"
when = "fromJSON(params.db.password) == 1"
`},
			want: []string{"roles/cmd.toml:5", "reads a secret"},
		},
		{
			name: "for_each keys decided by a secret",
			extra: map[string]string{"roles/cmd.toml": `
[[file]]
for_each = "params.db.password startsWith 'canary' ? {'a': 1} : {'b': 1}"
path = "/etc/parts/{{ .each.key }}"
content = "x"
`},
			want: []string{"roles/cmd.toml:3", "reads a secret", "keys"},
		},
		{
			name: "for_each element's secret in a name",
			extra: map[string]string{"roles/cmd.toml": `
[params]
users = { alice = { password = "` + mustEncrypt(t, keys.Recipient(), alicePass) + `" } }

[[file]]
for_each = "params.users"
path = "/etc/{{ .each.value.password }}"
content = "x"
`},
			want: []string{"roles/cmd.toml:7", "path cannot come from a secret", `for_each key "alice"`},
		},
		{
			name: "for_each element's condition reads a secret",
			extra: map[string]string{"roles/cmd.toml": `
[params]
users = { alice = { password = "` + mustEncrypt(t, keys.Recipient(), alicePass) + `" } }

[[file]]
for_each = "params.users"
when = "each.value.password startsWith 'canary'"
path = "/etc/u/{{ .each.key }}"
content = "x"
`},
			want: []string{"roles/cmd.toml:7", "reads a secret"},
		},
		{
			name: "secret in a resource's tags",
			extra: map[string]string{"roles/cmd.toml": `
[[file]]
path = "/etc/t"
content = "x"
tags = ["{{ .params.db.password }}"]
`},
			want: []string{"roles/cmd.toml:5", "tags cannot come from a secret"},
		},
		{
			name: "cron command",
			extra: map[string]string{"roles/cmd.toml": `
[[cron]]
name = "backup"
schedule = "@daily"
command = "/usr/bin/backup --password {{ .params.db.password }}"
`},
			want: []string{"roles/cmd.toml:5", "command: a secret here would be written to /etc/cron.d/NAME, mode 0644", "mode 0600"},
		},
		{
			name: "cron environment",
			extra: map[string]string{"roles/cmd.toml": `
[[cron]]
name = "backup"
schedule = "@daily"
command = "/usr/bin/backup"
environment = { PGPASSWORD = "{{ .params.db.password }}" }
`},
			want: []string{"roles/cmd.toml:6", "environment: a secret here would be written to /etc/cron.d/NAME"},
		},
		{
			name: "line named by its secret line",
			extra: map[string]string{"roles/cmd.toml": `
[[line]]
path = "/etc/app.conf"
line = "password={{ .params.db.password }}"
`},
			want: []string{"roles/cmd.toml:4", "line comes from a secret, so it cannot name the resource"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			extra := map[string]string{"nodes.toml": "[[node]]\nroles = [\"app\", \"cmd\"]\n"}
			for k, v := range tc.extra {
				extra[k] = v
			}
			s := loadDir(t, secretSite(t, keys.Recipient(), extra))
			_, err := s.CompileWith("a", nil, CompileOptions{Secrets: keys, NodeKey: node})
			if err == nil {
				t.Fatal("CompileWith succeeded, want an error")
			}
			var ds Diagnostics
			if !errors.As(err, &ds) {
				t.Fatalf("error %v is not Diagnostics", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			assertNoReusePlain(t, "the error", []byte(err.Error()))
			if strings.Contains(err.Error(), "invalid character") {
				t.Errorf("error %q quotes part of a secret", err)
			}
		})
	}
}

// TestUserPasswordSealedWithoutSecrets: a user's password (sensitive by
// nature) is sealed on a site that has no secret at all, from a
// definition too; without a key to seal it the compile says so, and the
// hash is in no message.
func TestUserPasswordSealedWithoutSecrets(t *testing.T) {
	t.Parallel()
	const hash = "$6$canarysalt$canaryhash"
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"nodes.toml":           "[[node]]\nroles = [\"r\"]\n",
		"roles/r.toml":         "[[account]]\nname = \"alice\"\nhash = \"" + hash + "\"\n",
		"defines/account.toml": "[params]\nhash = { type = \"string\" }\n\n[[user]]\nname = \"{{ .params.name }}\"\npassword = \"{{ .params.hash }}\"\n",
	})
	s := loadDir(t, dir)
	seal, err := NewSealKey([]byte("test seal key, at least 32 bytes long"))
	if err != nil {
		t.Fatal(err)
	}
	node := testNodeKey(t)
	cat, err := s.CompileWith("n1", nil, CompileOptions{Seal: seal, NodeKey: node.PublicKey()})
	if err != nil {
		t.Fatalf("CompileWith: %v", err)
	}
	r, _ := cat.Resource("user:alice")
	sv, ok := r.Attrs["password"].(Sealed)
	if !ok {
		t.Fatalf("password = %v, want it sealed", r.Attrs["password"])
	}
	if got, err := sv.Open(node); err != nil || got != hash {
		t.Errorf("Open = %v, %v, want the hash", got, err)
	}
	_, err = s.Compile("n1", nil)
	if err == nil || !strings.Contains(err.Error(), "password is sensitive and there is no key to seal it with") {
		t.Errorf("Compile = %v, want the error that there is no key to seal the password with", err)
	} else if strings.Contains(err.Error(), "canary") {
		t.Errorf("the error shows the hash: %v", err)
	}
}
