package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
)

// TestEnrollIssued: with a join token the node gets its certificate at
// once; the identity is written (the key private) and loaded with the
// name from the certificate; a second Enroll makes no call.
func TestEnrollIssued(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	dir := filepath.Join(t.TempDir(), "tls")
	id, err := Enroll(context.Background(), EnrollOptions{Server: fs.addr, Name: "web-01", JoinToken: fs.token, Dir: dir, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if id.Node != "web-01" || len(id.SigningKey) == 0 || id.NotAfter.Before(time.Now()) {
		t.Errorf("identity = %+v", id)
	}
	for name, mode := range map[string]os.FileMode{keyFile: 0o600, certFile: 0o644, caFile: 0o644, signingFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if got, want := string(id.SigningKey), string(fs.signKey.Public().(ed25519.PublicKey)); got != want {
		t.Error("the pinned signing key is not the server's")
	}
	fs.mu.Lock()
	calls := fs.enrollCalls
	fs.mu.Unlock()
	again, err := Enroll(context.Background(), EnrollOptions{Server: "127.0.0.1:1", Name: "web-01", Dir: dir})
	if err != nil || again.Node != "web-01" {
		t.Fatalf("second Enroll = %v, %v; want the stored identity", again, err)
	}
	if _, err := Enroll(context.Background(), EnrollOptions{Server: fs.addr, Name: "db-01", Dir: dir}); err == nil || !strings.Contains(err.Error(), "already enrolled as web-01") {
		t.Errorf("Enroll under another name = %v, want already enrolled", err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.enrollCalls != calls {
		t.Errorf("an enrolled node called Enroll again (%d calls, then %d)", calls, fs.enrollCalls)
	}
}

// TestEnrollPendingThenIssued: without a token the node waits, asking
// again with the same key, until an operator signs.
func TestEnrollPendingThenIssued(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	dir := filepath.Join(t.TempDir(), "tls")
	type result struct {
		id  *Identity
		err error
	}
	done := make(chan result, 1)
	// Waiting hears of every pending answer, with the key's fingerprint
	// and when the node asks next (herd agent's status line).
	var (
		waitMu sync.Mutex
		fps    []string
		nexts  []time.Duration
	)
	waiting := func(fp string, next, _ time.Duration) {
		waitMu.Lock()
		defer waitMu.Unlock()
		fps, nexts = append(fps, fp), append(nexts, next)
	}
	go func() {
		id, err := Enroll(context.Background(), EnrollOptions{Server: fs.addr, Name: "web-02", Dir: dir, Log: testLog(t), Waiting: waiting})
		done <- result{id, err}
	}()
	waitFor(t, "two pending answers", func() bool {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return fs.pending >= 2
	})
	if _, err := os.Stat(filepath.Join(dir, certFile)); err == nil {
		t.Fatal("a pending node has a certificate")
	}
	fs.mu.Lock()
	fs.approved["web-02"] = true // herd ca sign web-02
	fs.mu.Unlock()
	r := <-done
	if r.err != nil || r.id.Node != "web-02" {
		t.Fatalf("Enroll = %+v, %v", r.id, r.err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, k := range fs.csrKeys {
		if k != fs.csrKeys[0] {
			t.Errorf("request %d used another key", i)
		}
	}
	waitMu.Lock()
	defer waitMu.Unlock()
	if len(fps) < 2 {
		t.Fatalf("Waiting was called %d times, want once per pending answer (2 at least)", len(fps))
	}
	want := keyFingerprint(r.id.Certificate.PrivateKey.(*ecdsa.PrivateKey))
	for i := range fps {
		if fps[i] != want || nexts[i] <= 0 {
			t.Errorf("Waiting(%q, %v), want the key's fingerprint %q and a positive wait", fps[i], nexts[i], want)
		}
	}
}

// TestEnrollPendingEndsWithContext: a request nobody signs waits until the
// caller gives up.
func TestEnrollPendingEndsWithContext(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Enroll(ctx, EnrollOptions{Server: fs.addr, Name: "web-03", Dir: t.TempDir()})
		done <- err
	}()
	waitFor(t, "a pending answer", func() bool {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return fs.pending >= 1
	})
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("Enroll = %v, want it to end with the context", err)
	}
}

// TestEnrollTrust: the bootstrap of trust. A pinned CA (file or
// fingerprint) must match before the token is sent; without a pin, the CA
// the server returns must vouch for the server that was talked to.
func TestEnrollTrust(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	other := newTestCA(t)
	otherPEM := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(otherPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	goodPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(goodPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fs.ca.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	wrongFP := "sha256:" + sha256Sum(other.cert.Raw)
	enroll := func(name string, mod func(*EnrollOptions)) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o := EnrollOptions{Server: fs.addr, Name: name, JoinToken: fs.token, Dir: t.TempDir(), Log: testLog(t)}
		mod(&o)
		_, err := Enroll(ctx, o)
		return err
	}
	calls := func() int {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return fs.enrollCalls
	}

	// Refused in the handshake: the server never sees the token.
	before := calls()
	if err := enroll("n1", func(o *EnrollOptions) { o.CAFingerprint = wrongFP }); err == nil || !strings.Contains(err.Error(), "did not present the CA") {
		t.Errorf("Enroll with a wrong fingerprint = %v", err)
	}
	if err := enroll("n2", func(o *EnrollOptions) { o.CAFile = otherPEM }); err == nil {
		t.Error("Enroll with a CA file that does not match the server succeeded")
	}
	if calls() != before {
		t.Errorf("the server got %d Enroll calls from agents that could not verify it", calls()-before)
	}

	for name, mod := range map[string]func(*EnrollOptions){
		"fingerprint":     func(o *EnrollOptions) { o.CAFingerprint = fs.caFingerprint() },
		"fingerprint hex": func(o *EnrollOptions) { o.CAFingerprint = strings.ToUpper(sha256Sum(fs.ca.cert.Raw)) },
		"ca file":         func(o *EnrollOptions) { o.CAFile = goodPEM },
		"first use":       func(*EnrollOptions) {},
	} {
		if err := enroll("ok-"+strings.ReplaceAll(name, " ", "-"), mod); err != nil {
			t.Errorf("Enroll pinned by %s: %v", name, err)
		}
	}

	// A server that returns a CA other than the one behind its own
	// certificate is refused, and nothing is written but the key.
	fs.mu.Lock()
	fs.returnCA = other
	fs.mu.Unlock()
	dir := t.TempDir()
	err := enroll("n3", func(o *EnrollOptions) { o.Dir = dir })
	if err == nil || !strings.Contains(err.Error(), "does not verify the server") {
		t.Errorf("Enroll given a foreign CA = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, certFile)); err == nil {
		t.Error("a refused enrollment wrote a certificate")
	}
}

// TestIdentityPinsCA: after enrollment the agent trusts only the CA it got:
// a server with another CA is refused.
func TestIdentityPinsCA(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	a := newTestAgent(t, fs)
	impostor := newFakeServer(t)
	impostor.publish(testCatalog("web-01", "v1", fileRes("/etc/motd", "impostor\n")), nil, false)
	a.d.conn.Close()
	conn, err := dialNode(a.d.id, impostor.addr, "", testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	a.d.conn = conn
	a.d.node = herdv1.NewNodeClient(conn)
	_, out := a.d.cycle(context.Background(), TriggerManual)
	if out.checkinErr == nil || !strings.Contains(out.checkinErr.Error(), "certificate") {
		t.Errorf("check-in with an impostor = %v, want a certificate error", out.checkinErr)
	}
	if len(impostor.checkinLog()) != 0 {
		t.Error("the impostor got a check-in")
	}
}
