package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// NewKeyAndCSR makes what a node enrolls with: an ECDSA P-256 private key
// (PKCS #8 PEM, to keep in a 0600 file) and a DER certificate request for
// name. The request names name only for people reading it; the CA takes
// nothing from it but the public key.
func NewKeyAndCSR(name string) (keyPEM, csrDER []byte, err error) {
	if err := CheckName(name); err != nil {
		return nil, nil, fmt.Errorf("making certificate request: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("making certificate request: generating key: %w", err)
	}
	keyPEM, err = marshalKeyPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("making certificate request: %w", err)
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: name},
		DNSNames: []string{name},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("making certificate request: %w", err)
	}
	return keyPEM, csrDER, nil
}

// CertPEM encodes a DER certificate as PEM, the form tls.X509KeyPair and
// certificate files take.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ParseCertPEM parses the first certificate in PEM data.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		return cert, nil
	}
}

// Fingerprint names a public key for people comparing keys:
// "sha256:" and the hex sha256 of its DER SubjectPublicKeyInfo. A node
// shows it while its request is pending; List shows it beside the request.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("fingerprinting key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
