package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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
	if err := renewIdentity(ctx, d.conn, d.o.CertDir, id); err != nil {
		d.log.Warn("renewing this node's certificate; the current one is valid until "+leaf.NotAfter.UTC().Format(time.RFC3339), "err", revoked(err))
		return
	}
	now, _ := id.clientCertificate(nil)
	d.log.Info("renewed this node's certificate", "not_after", now.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// renewIdentity asks the server for a new certificate over conn, checks
// it (this node's name and key, chaining to the pinned CA bundle for
// client authentication), writes it to dir's cert.pem and makes it id's
// current certificate.
func renewIdentity(ctx context.Context, conn grpc.ClientConnInterface, dir string, id *Identity) error {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := herdv1.NewEnrollClient(conn).Renew(ctx, &herdv1.RenewRequest{})
	if err != nil {
		return fmt.Errorf("renewing: %w", err)
	}
	if resp.Status != herdv1.EnrollResponse_ISSUED {
		return fmt.Errorf("renewing: unexpected answer %v", resp.Status)
	}
	cert, err := x509.ParseCertificate(resp.CertificateDer)
	if err != nil {
		return fmt.Errorf("renewing: refusing the answer: the certificate: %w", err)
	}
	pub, ok := id.Certificate.PrivateKey.(crypto.Signer)
	if !ok || !keysEqual(pub.Public(), cert.PublicKey) {
		return fmt.Errorf("renewing: refusing the answer: the certificate is not for this node's key")
	}
	if cert.Subject.CommonName != id.Node {
		return fmt.Errorf("renewing: refusing the answer: the certificate names %q, not %q", cert.Subject.CommonName, id.Node)
	}
	// The pinned bundle, never the one in the answer: renewal must not be
	// a way to change whom the node trusts.
	if _, err := cert.Verify(x509.VerifyOptions{Roots: id.CAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("renewing: refusing the answer: the certificate does not verify with the pinned CA: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return fmt.Errorf("renewing: %w", err)
	}
	next := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: id.Certificate.PrivateKey, Leaf: cert}
	id.current.Store(&next)
	return nil
}

// keysEqual reports whether two public keys are the same key.
func keysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
