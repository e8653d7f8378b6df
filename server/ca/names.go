package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/herdcm/herd/catalogs"
)

// The organizational units that mark what an issued certificate is for.
// Only the CA sets a subject (a request's subject is ignored), so a
// verified certificate carries one of them only when this CA put it there.
// The server's TLS certificate carries neither.
const (
	nodeOU  = "herd-node"
	adminOU = "herd-admin"
)

// maxLabel is the longest DNS label; the name is a certificate's DNS SAN.
const maxLabel = 63

// CheckName reports whether name may be a node's or an admin's name: it
// must pass catalogs.ValidNodeName and also be lowercase (certificate DNS
// names compare without case, so "Web-01" and "web-01" would be one
// identity to TLS but two to Herd), have labels of at most 63 bytes that
// neither start nor end with '-', and not read as an IP address. The error
// wraps ErrInvalidName.
//
// No name is reserved: being an admin is a mark in the certificate, never
// something a name implies.
func CheckName(name string) error {
	if err := catalogs.ValidNodeName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidName, err)
	}
	if strings.ToLower(name) != name {
		return fmt.Errorf("%w: name %q has uppercase letters; names are lowercase", ErrInvalidName, name)
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) > maxLabel {
			return fmt.Errorf("%w: name %q has a label longer than %d bytes", ErrInvalidName, name, maxLabel)
		}
		if strings.HasSuffix(label, "-") {
			return fmt.Errorf("%w: name %q has a label ending with '-'", ErrInvalidName, name)
		}
	}
	if net.ParseIP(name) != nil {
		return fmt.Errorf("%w: name %q is an IP address", ErrInvalidName, name)
	}
	return nil
}

// NodeName returns the node name a client certificate identifies. It is
// for a leaf that TLS has already verified against Pool: it checks the
// marks this CA gives node certificates (organizational unit, common name
// equal to the only SAN, a valid name), not the signature. An admin
// certificate is not a node's.
func NodeName(cert *x509.Certificate) (string, error) {
	return identity(cert, nodeOU)
}

// AdminName returns the operator name an admin certificate identifies,
// with the same checks as NodeName; a node certificate is not an admin's.
func AdminName(cert *x509.Certificate) (string, error) {
	return identity(cert, adminOU)
}

// IsAdmin reports whether a verified client certificate is an admin
// certificate, one made by IssueAdmin. Admin certificates carry the
// organizational unit "herd-admin" in their subject; node certificates
// carry "herd-node".
func IsAdmin(cert *x509.Certificate) bool {
	_, err := identity(cert, adminOU)
	return err == nil
}

// Identify returns the name a verified client certificate identifies and
// whether it is an admin's: NodeName or AdminName, whichever applies. The
// server's interceptor calls it once per call.
func Identify(cert *x509.Certificate) (name string, admin bool, err error) {
	if name, err := identity(cert, adminOU); err == nil {
		return name, true, nil
	}
	name, err = identity(cert, nodeOU)
	return name, false, err
}

// identity checks that cert is of the kind ou marks and returns its name.
func identity(cert *x509.Certificate, ou string) (string, error) {
	if cert == nil {
		return "", errors.New("no certificate")
	}
	if !slices.Equal(cert.Subject.OrganizationalUnit, []string{ou}) {
		return "", fmt.Errorf("certificate of %q is not a %s certificate", cert.Subject.CommonName, ou)
	}
	name := cert.Subject.CommonName
	if !slices.Equal(cert.DNSNames, []string{name}) || len(cert.IPAddresses) > 0 || len(cert.EmailAddresses) > 0 || len(cert.URIs) > 0 {
		return "", fmt.Errorf("certificate of %q: its names do not match its common name", name)
	}
	if err := CheckName(name); err != nil {
		return "", fmt.Errorf("certificate names %q: %w", name, err)
	}
	return name, nil
}

// SerialHex formats a certificate's serial number as the CA records it:
// lowercase hex without leading zeros. IsRevoked takes this form.
func SerialHex(cert *x509.Certificate) string {
	return cert.SerialNumber.Text(16)
}
