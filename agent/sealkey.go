package agent

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/herdcm/herd/catalogs"
)

// sealKeyFile is the node's X25519 key in its certificate directory, 0600:
// the server seals the catalog's sensitive values to its public half, and
// only this node opens them. A node enrolled again (its certificate
// directory made anew) gets a new one, and the server seals to that.
const sealKeyFile = "seal.key"

// LoadSealKey returns the node's sealing key from its certificate
// directory (STATE/tls), creating it (0600) when there is none: at
// enrollment, or on the first start of an agent enrolled before secrets
// existed. A key file that is a symbolic link, not a regular file, or
// readable by others is refused.
func LoadSealKey(certDir string) (*ecdh.PrivateKey, error) {
	p := filepath.Join(certDir, sealKeyFile)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createSealKey(p)
	case err != nil:
		return nil, fmt.Errorf("reading the sealing key: %w", err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("reading the sealing key: %s is not a regular file", p)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("reading the sealing key: %s is readable by others (mode %04o): chmod 600 it", p, fi.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading the sealing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("reading the sealing key: %s: no PRIVATE KEY block", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("reading the sealing key: %s: %w", p, err)
	}
	ek, ok := k.(*ecdh.PrivateKey)
	if !ok || ek.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("reading the sealing key: %s holds a %T, want an X25519 key", p, k)
	}
	return ek, nil
}

func createSealKey(p string) (*ecdh.PrivateKey, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("creating the sealing key: %w", err)
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("creating the sealing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("creating the sealing key: %w", err)
	}
	if err := writeFileAtomic(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("creating the sealing key: %w", err)
	}
	return k, nil
}

// compileOptions are a masterless compile's: the site's secrets are
// opened with the secrets key file when one is given, and sensitive values
// are sealed to a key made for this run alone, which only this process
// holds (returned for the engine to open them).
func (src *siteSource) compileOptions() (catalogs.CompileOptions, *ecdh.PrivateKey, error) {
	node, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return catalogs.CompileOptions{}, nil, fmt.Errorf("making this run's sealing key: %w", err)
	}
	opts := catalogs.CompileOptions{NodeKey: node.PublicKey()}
	if src.secretsKey != "" {
		fi, err := os.Stat(src.secretsKey)
		if err != nil {
			return opts, nil, fmt.Errorf("reading the secrets key: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return opts, nil, fmt.Errorf("reading the secrets key: %s is readable by others (mode %04o): chmod 600 it", src.secretsKey, fi.Mode().Perm())
		}
		b, err := os.ReadFile(src.secretsKey)
		if err != nil {
			return opts, nil, fmt.Errorf("reading the secrets key: %w", err)
		}
		if opts.Secrets, err = catalogs.ParseSecretKeys(b); err != nil {
			return opts, nil, fmt.Errorf("%s: %w", src.secretsKey, err)
		}
		return opts, node, nil
	}
	// No secrets to open; values sensitive by nature are still sealed.
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return opts, nil, err
	}
	if opts.Seal, err = catalogs.NewSealKey(seed[:]); err != nil {
		return opts, nil, err
	}
	return opts, node, nil
}
