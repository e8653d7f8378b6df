package ca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// crlFile is the certificate revocation list kept beside the CA, as
// Puppet keeps its CRL: revocations survive a store that was emptied or
// restored from a backup older than them.
const crlFile = "crl.pem"

// crlValidity is the NextUpdate of the CRL the CA writes; Herd itself
// reads the list whatever its age, the field is for other readers.
const crlValidity = 365 * 24 * time.Hour

// loadCRL returns the serials (as SerialHex gives them) in the CA's CRL
// and its number; none when there is no CRL yet. A CRL that does not
// verify against the CA is an error: starting without it would un-revoke.
func (c *CA) loadCRL() (serials []string, number *big.Int, err error) {
	path := filepath.Join(c.dir, crlFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, big.NewInt(0), nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading revocation list: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return nil, nil, fmt.Errorf("reading revocation list %s: no X509 CRL PEM block", path)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("reading revocation list %s: %w", path, err)
	}
	// The CA that issues signs the list; after a rotation the one
	// before it (retiring or retired) signed the last one written.
	if !slices.ContainsFunc(c.auth.Load().all(), func(ca *x509.Certificate) bool { return crl.CheckSignatureFrom(ca) == nil }) {
		return nil, nil, fmt.Errorf("reading revocation list %s: not signed by this CA", path)
	}
	for _, e := range crl.RevokedCertificateEntries {
		serials = append(serials, e.SerialNumber.Text(16))
	}
	number = crl.Number
	if number == nil {
		number = big.NewInt(0)
	}
	return serials, number, nil
}

// writeCRL writes the CRL with every serial in revoked, signed by the CA,
// numbered one past the last. The caller holds revokeMu.
func (c *CA) writeCRL(revoked map[string]struct{}) error {
	now := c.now()
	a := c.auth.Load()
	serials := make([]string, 0, len(revoked))
	for s := range revoked {
		serials = append(serials, s)
	}
	slices.Sort(serials)
	entries := make([]x509.RevocationListEntry, 0, len(serials))
	for _, s := range serials {
		n, ok := new(big.Int).SetString(s, 16)
		if !ok {
			return fmt.Errorf("writing revocation list: serial %q is not hex", s)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: now})
	}
	c.crlNumber = new(big.Int).Add(c.crlNumber, big.NewInt(1))
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    c.crlNumber,
		ThisUpdate:                now,
		NextUpdate:                now.Add(crlValidity),
		RevokedCertificateEntries: entries,
	}, a.cur, a.curKey)
	if err != nil {
		return fmt.Errorf("writing revocation list: %w", err)
	}
	if err := writeReplace(filepath.Join(c.dir, crlFile), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("writing revocation list: %w", err)
	}
	return nil
}
