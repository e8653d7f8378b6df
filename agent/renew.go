package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/herdcm/herd/api/herdv1"
)

// renewDue reports whether a certificate valid from notBefore to notAfter
// should be renewed at now: from two thirds of its life on, which leaves a
// third of it (ten days of the default thirty) for a node that is offline
// or a server that is down to come back.
func renewDue(notBefore, notAfter, now time.Time) bool {
	life := notAfter.Sub(notBefore)
	return life > 0 && !now.Before(notBefore.Add(life*2/3))
}

// maybeRenew renews the node's certificate over its current mTLS identity
// when it is due, with no operator step. The new certificate is for the
// same key; it replaces cert.pem and is presented from the next
// connection on (the server closes the old one when its certificate
// expires). A failure is logged and tried again next run: the old
// certificate is still valid. The daemon calls it once per run.
func (d *Daemon) maybeRenew(ctx context.Context) {
	id := d.id
	cur, _ := id.clientCertificate(nil)
	leaf := cur.Leaf
	if leaf == nil || !renewDue(leaf.NotBefore, leaf.NotAfter, time.Now()) {
		return
	}
	newBundle, err := renewIdentity(ctx, d.conn, d.o.CertDir, id)
	if err != nil {
		d.log.Warn("renewing this node's certificate: "+serverTrouble(d.o.Server, revoked(err))+"; the current one is valid until "+
			leaf.NotAfter.UTC().Format(time.RFC3339)+", and the next check-in tries again", "server", d.o.Server)
		return
	}
	now, _ := id.clientCertificate(nil)
	d.log.Info("renewed this node's certificate", "not_after", now.Leaf.NotAfter.UTC().Format(time.RFC3339), "issuer", now.Leaf.Issuer.CommonName)
	if newBundle {
		// A CA rotation began (the bundle gained the new CA) or ended
		// (it lost the retired one).
		d.log.Info("the server's CA bundle changed; this node now trusts it", "file", filepath.Join(d.o.CertDir, caFile))
	}
}

// renewIdentity asks the server for a new certificate over conn, checks
// it (this node's name and key, chaining to the CA bundle for client
// authentication), writes it to dir's cert.pem and makes it id's current
// certificate. A new CA bundle in the answer (a CA rotation) is written to
// ca.pem first and trusted from the next handshake on; newBundle says so.
func renewIdentity(ctx context.Context, conn grpc.ClientConnInterface, dir string, id *Identity) (newBundle bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	seal, err := LoadSealKey(dir)
	if err != nil {
		return false, fmt.Errorf("renewing: %w", err)
	}
	resp, err := herdv1.NewEnrollClient(conn).Renew(ctx, &herdv1.RenewRequest{SealPublicKey: seal.PublicKey().Bytes()})
	if err != nil {
		return false, fmt.Errorf("renewing: %w", err)
	}
	if resp.Status != herdv1.EnrollResponse_ISSUED {
		return false, fmt.Errorf("renewing: unexpected answer %v", resp.Status)
	}
	cert, err := x509.ParseCertificate(resp.CertificateDer)
	if err != nil {
		return false, fmt.Errorf("renewing: refusing the answer: the certificate: %w", err)
	}
	pub, ok := id.Certificate.PrivateKey.(crypto.Signer)
	if !ok || !keysEqual(pub.Public(), cert.PublicKey) {
		return false, fmt.Errorf("renewing: refusing the answer: the certificate is not for this node's key")
	}
	if cert.Subject.CommonName != id.Node {
		return false, fmt.Errorf("renewing: refusing the answer: the certificate names %q, not %q", cert.Subject.CommonName, id.Node)
	}
	roots := id.roots()
	bundle, changed, err := renewedBundle(resp.CaCertificateDer, roots)
	if err != nil {
		return false, fmt.Errorf("renewing: refusing the answer: %w", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: bundle.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return false, fmt.Errorf("renewing: refusing the answer: the certificate does not verify with the CA bundle: %w", err)
	}
	// The bundle before the certificate: a certificate from a new CA must
	// never sit beside a bundle that lacks it.
	if changed {
		if err := writeFileAtomic(filepath.Join(dir, caFile), bundle.pem, 0o644); err != nil {
			return false, fmt.Errorf("renewing: %w", err)
		}
		id.trust.Store(bundle.pool)
	}
	if err := writeFileAtomic(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return false, fmt.Errorf("renewing: %w", err)
	}
	next := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: id.Certificate.PrivateKey, Leaf: cert}
	id.current.Store(&next)
	return changed, nil
}

// caBundle is a CA bundle as the agent keeps it.
type caBundle struct {
	pool *x509.CertPool
	pem  []byte // ca.pem
}

// renewedBundle reads the CA bundle of a Renew answer. The server sends
// its bundle in every answer: during a CA rotation it holds the new CA
// beside the old, and after the old one retires, the new one alone. The
// answer came over a connection verified with the bundle in force
// (roots), from the server that is the CA; still, a new bundle must keep
// a CA the node trusts now, so that a renewal can add a CA or drop a
// retired one, never swap the node's trust wholesale. An answer without
// a bundle (an older server) changes nothing; changed says whether the
// bundle differs from roots.
func renewedBundle(der []byte, roots *x509.CertPool) (caBundle, bool, error) {
	if len(der) == 0 {
		return caBundle{pool: roots}, false, nil
	}
	cas, err := x509.ParseCertificates(der)
	if err != nil || len(cas) == 0 {
		return caBundle{}, false, fmt.Errorf("the CA bundle: %v", err)
	}
	b := caBundle{pool: x509.NewCertPool()}
	kept := false
	for _, c := range cas {
		if !c.IsCA || !c.BasicConstraintsValid {
			return caBundle{}, false, fmt.Errorf("the CA bundle holds %q, which is not a CA", c.Subject.CommonName)
		}
		b.pool.AddCert(c)
		b.pem = append(b.pem, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		// A self-signed CA verifies against a pool exactly when the
		// pool holds it.
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			kept = true
		}
	}
	if b.pool.Equal(roots) {
		return caBundle{pool: roots}, false, nil
	}
	if !kept {
		return caBundle{}, false, errors.New("the new CA bundle keeps none of the CAs this node trusts")
	}
	return b, true, nil
}

// keysEqual reports whether two public keys are the same key.
func keysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
