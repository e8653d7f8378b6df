package server

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/server/ca"
)

const (
	canaryDB = "canary-server-db-pw"
	canaryA  = "canary-only-node-a"
)

// secretsServer starts a real server whose state directory holds a
// secrets key made before it starts, and whose site uses secrets: the
// site's data (for every node), a node's own data (node a only) and a
// secrets/NAME.age file.
func secretsServer(t *testing.T) (*Server, *catalogs.SecretKeys, string, string) {
	t.Helper()
	dir := t.TempDir()
	if err := ensureSecretsKey(dir); err != nil {
		t.Fatal(err)
	}
	keys, _, err := LoadSecretKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v string) string {
		s, err := catalogs.EncryptSecret(keys.Recipient(), []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	file, err := catalogs.EncryptSecretFile(keys.Recipient(), []byte("canary-file-key"))
	if err != nil {
		t.Fatal(err)
	}
	site := t.TempDir()
	writeFiles(t, site, map[string]string{
		"nodes.toml":        "[[node]]\nroles = [\"r\"]\n",
		"data/common.toml":  "db_password = \"" + enc(canaryDB) + "\"\n",
		"data/nodes/a.toml": "only_a = \"" + enc(canaryA) + "\"\n",
		"secrets/tls.age":   string(file),
		"roles/r.toml": `
[params]
only_a = "none"

[[file]]
path = "/etc/db.conf"
content = "password={{ .params.db_password }}\n"

[[file]]
path = "/etc/a.conf"
content = "{{ .params.only_a }}"

[[file]]
path = "/etc/tls.key"
content = '{{ secret "tls" }}'

[[file]]
path = "/etc/motd"
content = "hello {{ .node }}\n"
`,
	})
	s, err := New(context.Background(), Options{
		Site: site, Dir: dir, Listen: "127.0.0.1:0", HTTPListen: "off",
		Log: slog.New(slog.NewTextHandler(testLog{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, keys, site, dir
}

func newSealKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// checkinWithKey checks in with facts and the node's sealing key (nil:
// none, as an agent from before secrets).
func checkinWithKey(t *testing.T, c herdv1.NodeClient, key *ecdh.PrivateKey, etag string) *herdv1.CheckinResponse {
	t.Helper()
	b, d := factsJSON(t, map[string]any{"os": map[string]any{"family": "debian"}})
	req := &herdv1.CheckinRequest{FactsDigest: d, FactsJson: b, CatalogEtag: etag}
	if key != nil {
		req.SealPublicKey = key.PublicKey().Bytes()
	}
	resp, err := c.Checkin(context.Background(), req)
	if err != nil {
		t.Fatalf("Checkin: %v", err)
	}
	return resp
}

// openAttr opens resource id's attribute with key, failing when it is not
// sealed.
func openAttr(t *testing.T, cat *catalogs.Catalog, id, attr string, key *ecdh.PrivateKey) (any, error) {
	t.Helper()
	r, ok := cat.Resource(id)
	if !ok {
		t.Fatalf("no %s in the catalog", id)
	}
	sv, ok := r.Attrs[attr].(catalogs.Sealed)
	if !ok {
		t.Fatalf("%s %s = %v, want it sealed", id, attr, r.Attrs[attr])
	}
	return sv.Open(key)
}

func TestSecretsReachOnlyTheirNode(t *testing.T) {
	t.Parallel()
	s, _, site, _ := secretsServer(t)
	keyA, keyB := newSealKey(t), newSealKey(t)
	certA, certB := enroll(t, s, "a"), enroll(t, s, "b")
	ca, cb := herdv1.NewNodeClient(dial(t, s, &certA)), herdv1.NewNodeClient(dial(t, s, &certB))

	respA := checkinWithKey(t, ca, keyA, "")
	respB := checkinWithKey(t, cb, keyB, "")
	if respA.Status != herdv1.CheckinResponse_NEW_CATALOG || respB.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Fatalf("check-ins = %v (%s), %v (%s); want NEW_CATALOG", respA.Status, respA.CompileError, respB.Status, respB.CompileError)
	}
	for _, b := range [][]byte{respA.Catalog, respB.Catalog} {
		for _, v := range []string{canaryDB, canaryA, "canary-file-key"} {
			if strings.Contains(string(b), v) {
				t.Errorf("a catalog carries the plain secret %q", v)
			}
		}
	}
	catA, _ := catalogs.Decode(respA.Catalog)
	catB, _ := catalogs.Decode(respB.Catalog)
	if v, err := openAttr(t, catA, "file:/etc/a.conf", "content", keyA); err != nil || v != canaryA {
		t.Errorf("a's own secret opens to %v, %v", v, err)
	}
	if v, err := openAttr(t, catA, "file:/etc/db.conf", "content", keyA); err != nil || v != "password="+canaryDB+"\n" {
		t.Errorf("a's db.conf opens to %v, %v", v, err)
	}
	if v, err := openAttr(t, catA, "file:/etc/tls.key", "content", keyA); err != nil || v != "canary-file-key" {
		t.Errorf("a's tls.key opens to %v, %v", v, err)
	}
	// b: its own copy of the shared secret, and nothing of a's.
	if r, _ := catB.Resource("file:/etc/a.conf"); r.Attrs["content"] != "none" {
		t.Errorf("b's a.conf = %v, want the role's default", r.Attrs["content"])
	}
	for _, r := range catB.Resources {
		for name, v := range r.Attrs {
			sv, ok := v.(catalogs.Sealed)
			if !ok {
				continue
			}
			got, err := sv.Open(keyB)
			if err != nil {
				t.Errorf("b cannot open its own %s %s: %v", r.ID, name, err)
			}
			if s, _ := got.(string); strings.Contains(s, canaryA) {
				t.Errorf("b's %s %s opens to a's secret", r.ID, name)
			}
			if _, err := sv.Open(keyA); err == nil {
				t.Errorf("a's key opens b's %s %s", r.ID, name)
			}
		}
	}
	// The secrets/ files are no file of any catalog: GetFile refuses
	// their digests, and the content store never had them.
	b, err := os.ReadFile(filepath.Join(site, "secrets/tls.age"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	for _, f := range catA.Files {
		if f.Digest == digest || strings.HasPrefix(f.Path, "secrets/") {
			t.Errorf("a's catalog ships %s", f.Path)
		}
	}
	stream, err := ca.GetFile(context.Background(), &herdv1.GetFileRequest{Digest: digest})
	if err == nil {
		_, err = stream.Recv()
	}
	if err == nil {
		t.Error("GetFile served a secrets/ file")
	}
	if _, err := os.Stat(filepath.Join(s.files, hex.EncodeToString(sum[:]))); err == nil {
		t.Error("the content store holds a secrets/ file")
	}
}

func TestSecretsNeedTheNodeKey(t *testing.T) {
	t.Parallel()
	s, _, _, _ := secretsServer(t)
	cert := enroll(t, s, "old")
	c := herdv1.NewNodeClient(dial(t, s, &cert))
	// An agent from before secrets sends no key: no catalog, and why.
	resp := checkinWithKey(t, c, nil, "")
	if resp.Status != herdv1.CheckinResponse_NO_CATALOG || !strings.Contains(resp.CompileError, "node old has no sealing key") {
		t.Fatalf("check-in without a key = %v %q; want NO_CATALOG saying the node has no sealing key", resp.Status, resp.CompileError)
	}
	// Its key arrives with the next check-in: compiled at once.
	key := newSealKey(t)
	resp = checkinWithKey(t, c, key, "")
	if resp.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Fatalf("check-in with a key = %v %q; want NEW_CATALOG", resp.Status, resp.CompileError)
	}
	cat, _ := catalogs.Decode(resp.Catalog)
	if v, err := openAttr(t, cat, "file:/etc/db.conf", "content", key); err != nil || v != "password="+canaryDB+"\n" {
		t.Errorf("db.conf opens to %v, %v", v, err)
	}
	// Enrolled again (a new identity, a new key): its secrets are sealed
	// to the new key, and the old one opens nothing.
	newKey := newSealKey(t)
	resp2 := checkinWithKey(t, c, newKey, resp.Etag)
	if resp2.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Fatalf("check-in with a new key = %v %q; want NEW_CATALOG", resp2.Status, resp2.CompileError)
	}
	cat2, _ := catalogs.Decode(resp2.Catalog)
	if v, err := openAttr(t, cat2, "file:/etc/db.conf", "content", newKey); err != nil || v != "password="+canaryDB+"\n" {
		t.Errorf("after the new key, db.conf opens to %v, %v", v, err)
	}
	if _, err := openAttr(t, cat2, "file:/etc/db.conf", "content", key); err == nil {
		t.Error("the old key still opens the node's secrets")
	}
	// A key of the wrong size is refused.
	b, d := factsJSON(t, map[string]any{"os": map[string]any{"family": "debian"}})
	if _, err := c.Checkin(context.Background(), &herdv1.CheckinRequest{FactsDigest: d, FactsJson: b, SealPublicKey: []byte("short")}); err == nil {
		t.Error("a 5-byte sealing key was accepted")
	}
}

// TestEnrollRecordsTheSealKey: the key sent with Enroll is recorded with
// the certificate, so the very first check-in is sealed to it.
func TestEnrollRecordsTheSealKey(t *testing.T) {
	t.Parallel()
	s, _, _, _ := secretsServer(t)
	ctx := context.Background()
	token, _, err := s.ca.NewToken(ctx, "", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csr, err := ca.NewKeyAndCSR("n")
	if err != nil {
		t.Fatal(err)
	}
	seal := newSealKey(t)
	resp, err := herdv1.NewEnrollClient(dial(t, s, nil)).Enroll(ctx, &herdv1.EnrollRequest{Name: "n", CsrDer: csr, JoinToken: token, SealPublicKey: seal.PublicKey().Bytes()})
	if err != nil || resp.Status != herdv1.EnrollResponse_ISSUED {
		t.Fatalf("Enroll = %v, %v", resp.GetStatus(), err)
	}
	cert, err := tls.X509KeyPair(ca.CertPEM(resp.CertificateDer), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := herdv1.NewNodeClient(dial(t, s, &cert))
	cr := checkinWithKey(t, c, nil, "")
	if cr.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Fatalf("check-in = %v %q", cr.Status, cr.CompileError)
	}
	cat, _ := catalogs.Decode(cr.Catalog)
	if _, err := openAttr(t, cat, "file:/etc/db.conf", "content", seal); err != nil {
		t.Errorf("the catalog is not sealed to the enrolled key: %v", err)
	}
	// The key survives a restart: it is in the store.
	keys, err := s.st.NodeKeys(ctx)
	if err != nil || string(keys["n"]) != string(seal.PublicKey().Bytes()) {
		t.Errorf("stored key = %x, %v", keys["n"], err)
	}
}

// TestLostSecretsKey: a site secret the server's key does not open is a
// compile error naming the secret and where it is written; the node keeps
// its last good catalog.
func TestLostSecretsKey(t *testing.T) {
	t.Parallel()
	s, _, site, _ := secretsServer(t)
	cert := enroll(t, s, "a")
	c := herdv1.NewNodeClient(dial(t, s, &cert))
	key := newSealKey(t)
	good := checkinWithKey(t, c, key, "")
	if good.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Fatalf("check-in = %v %q", good.Status, good.CompileError)
	}
	other, err := catalogs.GenerateSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	otherKeys, err := catalogs.ParseSecretKeys([]byte(other))
	if err != nil {
		t.Fatal(err)
	}
	v, err := catalogs.EncryptSecret(otherKeys.Recipient(), []byte("encrypted to another key"))
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, site, map[string]string{"data/common.toml": "\ndb_password = \"" + v + "\"\n"})
	if err := s.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp := checkinWithKey(t, c, key, good.Etag)
	if !strings.Contains(resp.CompileError, "data/common.toml:2") || !strings.Contains(resp.CompileError, "secret db_password") ||
		!strings.Contains(resp.CompileError, "not encrypted to the server's secrets key") {
		t.Errorf("compile error = %q; want it to name the secret and data/common.toml:2", resp.CompileError)
	}
	if resp.Status != herdv1.CheckinResponse_UNCHANGED || resp.Etag != good.Etag {
		t.Errorf("check-in = %v %s; want UNCHANGED at the last good catalog %s", resp.Status, resp.Etag, good.Etag)
	}
}

func TestSecretsKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := ensureSecretsKey(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(SecretsKeyPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key file: %v, mode %v; want 0600", err, fi.Mode())
	}
	first, _, err := LoadSecretKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Made once: a second start keeps it.
	if err := ensureSecretsKey(dir); err != nil {
		t.Fatal(err)
	}
	again, _, _ := LoadSecretKeys(dir)
	if again.Recipient() != first.Recipient() {
		t.Error("a second start replaced the secrets key")
	}
	// Rotation puts a new identity first and keeps the old to decrypt;
	// retiring drops it.
	v, _ := catalogs.EncryptSecret(first.Recipient(), []byte("x"))
	rotated, err := RotateSecretsKey(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Recipient() == first.Recipient() || len(rotated.Recipients()) != 2 {
		t.Fatalf("rotated recipients = %v", rotated.Recipients())
	}
	if got, err := catalogs.OpenSecretValue(rotated, []byte(v)); err != nil || got != "x" {
		t.Errorf("the rotated key does not open the old secret: %v", err)
	}
	retired, err := RotateSecretsKey(dir, true)
	if err != nil || len(retired.Recipients()) != 1 || retired.Recipient() != rotated.Recipient() {
		t.Fatalf("retired = %v, %v", retired.Recipients(), err)
	}
	if _, err := catalogs.OpenSecretValue(retired, []byte(v)); err == nil {
		t.Error("the retired key still opens the old secret")
	}
	// Readable by others: refused.
	if err := os.Chmod(SecretsKeyPath(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadSecretKeys(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a 0644 key loaded: %v", err)
	}
}

// TestStateInsideSiteRefused: the secrets key must not be reachable by
// whoever pushes to the site, and a site link to it does not load.
func TestStateInsideSiteRefused(t *testing.T) {
	t.Parallel()
	site := t.TempDir()
	writeFiles(t, site, map[string]string{"nodes.toml": "[[node]]\nroles = []\n"})
	_, err := New(context.Background(), Options{Site: site, Dir: filepath.Join(site, "state"), Listen: "127.0.0.1:0", HTTPListen: "off"})
	if err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("New with the state in the site = %v, want a refusal", err)
	}

	dir := t.TempDir()
	if err := ensureSecretsKey(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(site, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(SecretsKeyPath(dir), filepath.Join(site, "secrets/key.age")); err != nil {
		t.Fatal(err)
	}
	if _, err := catalogs.Load(context.Background(), site, catalogs.LoadOptions{Version: "x"}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a site linking to the secrets key loaded: %v", err)
	}
}
