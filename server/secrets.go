package server

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/herdcm/herd/catalogs"
)

// SecretsKeyFile is the server's secrets key in its state directory: age
// X25519 identities, the current one first, then those a rotation keeps
// until the site is re-encrypted. Whoever holds it reads every secret of
// the site: it is 0600 in the 0700 state directory, never in the site.
const SecretsKeyFile = "secrets.key"

const secretsKeyHeader = "# Herd's secrets key: it opens every secret of the site. Back it up with the CA;\n" +
	"# the first identity is current (herd secret recipient), the others only decrypt.\n"

// SecretsKeyPath is where the server in dir keeps its secrets key.
func SecretsKeyPath(dir string) string { return filepath.Join(dir, SecretsKeyFile) }

// LoadSecretKeys reads the secrets key of the server state in dir. It
// refuses a key that is a symbolic link, not a regular file, or readable
// by anyone but its owner.
func LoadSecretKeys(dir string) (*catalogs.SecretKeys, []byte, error) {
	p := SecretsKeyPath(dir)
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the secrets key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("reading the secrets key: %s is not a regular file", p)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, fmt.Errorf("reading the secrets key: %s is readable by others (mode %04o): chmod 600 it", p, fi.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the secrets key: %w", err)
	}
	k, err := catalogs.ParseSecretKeys(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p, err)
	}
	return k, b, nil
}

// ensureSecretsKey creates the secrets key in dir when it has none.
func ensureSecretsKey(dir string) error {
	text, err := catalogs.GenerateSecretKey()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(SecretsKeyPath(dir), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating the secrets key: %w", err)
	}
	if _, err := f.WriteString(secretsKeyHeader + text + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("creating the secrets key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("creating the secrets key: %w", err)
	}
	return f.Close()
}

// RotateSecretsKey puts a new identity first in the secrets key of the
// server state in dir, keeping the others to decrypt what the site still
// holds encrypted to them; with retire, it drops every identity but the
// current one instead (once the site is re-encrypted). It returns the
// keys as they now are.
func RotateSecretsKey(dir string, retire bool) (*catalogs.SecretKeys, error) {
	_, raw, err := LoadSecretKeys(dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, line := range strings.Split(string(raw), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			ids = append(ids, line)
		}
	}
	if retire {
		ids = ids[:1]
	} else {
		text, err := catalogs.GenerateSecretKey()
		if err != nil {
			return nil, err
		}
		ids = append([]string{text}, ids...)
	}
	body := []byte(secretsKeyHeader + strings.Join(ids, "\n") + "\n")
	if _, err := catalogs.ParseSecretKeys(body); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".secrets-key-*")
	if err != nil {
		return nil, fmt.Errorf("rotating the secrets key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("rotating the secrets key: %w", err)
	}
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("rotating the secrets key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("rotating the secrets key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("rotating the secrets key: %w", err)
	}
	if err := os.Rename(tmp.Name(), SecretsKeyPath(dir)); err != nil {
		return nil, fmt.Errorf("rotating the secrets key: %w", err)
	}
	k, _, err := LoadSecretKeys(dir)
	return k, err
}

// checkStateOutsideSite refuses a state directory inside the site (or the
// site inside it): whoever can push to the site could otherwise reach the
// secrets key and the CA's.
func checkStateOutsideSite(dir, site string) error {
	d, err1 := filepath.EvalSymlinks(dir)
	s, err2 := filepath.EvalSymlinks(site)
	if err1 != nil || err2 != nil {
		return nil // the load of either names the problem
	}
	for _, pair := range [][2]string{{s, d}, {d, s}} {
		if rel, err := filepath.Rel(pair[0], pair[1]); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return fmt.Errorf("the server's state directory %s and the site %s overlap: the secrets key and the CA must live outside the site", dir, site)
		}
	}
	return nil
}

// secretsState is the server's secrets key as last read, and the nodes'
// sealing keys.
type secretsState struct {
	mu   sync.RWMutex
	keys *catalogs.SecretKeys
	raw  []byte
	node map[string]*ecdh.PublicKey
}

// initSecrets creates the secrets key if need be and loads it and the
// nodes' keys.
func (s *Server) initSecrets(ctx context.Context) error {
	if err := ensureSecretsKey(s.opts.Dir); err != nil {
		return err
	}
	k, raw, err := LoadSecretKeys(s.opts.Dir)
	if err != nil {
		return err
	}
	keys, err := s.st.NodeKeys(ctx)
	if err != nil {
		return err
	}
	s.secrets.keys, s.secrets.raw = k, raw
	s.secrets.node = make(map[string]*ecdh.PublicKey, len(keys))
	for name, b := range keys {
		if pk, err := ecdh.X25519().NewPublicKey(b); err == nil {
			s.secrets.node[name] = pk
		}
	}
	return nil
}

// reloadSecretsKey reads the secrets key again, for a site version that
// may be encrypted to a rotated key. A key that no longer reads keeps the
// one before.
func (s *Server) reloadSecretsKey() {
	k, raw, err := LoadSecretKeys(s.opts.Dir)
	if err != nil {
		s.log.Error("the secrets key does not read; compiling with the one read before", "err", err)
		return
	}
	s.secrets.mu.Lock()
	defer s.secrets.mu.Unlock()
	if !bytes.Equal(raw, s.secrets.raw) {
		s.secrets.keys, s.secrets.raw = k, raw
		s.log.Info("the secrets key changed", "recipient", k.Recipient())
	}
}

// compileOptions are node's compile options: the secrets key and the
// node's sealing key.
func (s *Server) compileOptions(node string) catalogs.CompileOptions {
	s.secrets.mu.RLock()
	defer s.secrets.mu.RUnlock()
	return catalogs.CompileOptions{Secrets: s.secrets.keys, NodeKey: s.secrets.node[node]}
}

// recordNodeKey records node's sealing key from an enrollment, a renewal
// or a check-in; changed says it differs from the one before, whose
// sealed values the node can no longer open.
func (s *Server) recordNodeKey(ctx context.Context, node string, key []byte) (changed bool, err error) {
	if len(key) == 0 {
		return false, nil
	}
	s.secrets.mu.RLock()
	cur := s.secrets.node[node]
	s.secrets.mu.RUnlock()
	// Every check-in carries the key: the one known is compared as bytes,
	// without parsing the key sent (an allocation a check-in).
	if cur != nil && bytes.Equal(cur.Bytes(), key) {
		return false, nil
	}
	pk, err := ecdh.X25519().NewPublicKey(key)
	if err != nil {
		return false, fmt.Errorf("the sealing key: want 32 bytes of X25519 public key, got %d bytes", len(key))
	}
	if _, err := s.st.PutNodeKey(ctx, node, key, time.Now()); err != nil {
		return false, err
	}
	s.secrets.mu.Lock()
	s.secrets.node[node] = pk
	s.secrets.mu.Unlock()
	s.log.Info("recorded the node's sealing key", "node", node)
	return true, nil
}

// sealKeyArrived records the sealing key an enrollment or a renewal
// brought and, when it changed (a node enrolled again), recompiles the
// node so that its secrets are sealed to the new key. A failure is only
// logged: the node sends its key again on every check-in.
func (s *Server) sealKeyArrived(ctx context.Context, node string, key []byte) {
	changed, err := s.recordNodeKey(ctx, node, key)
	if err != nil {
		s.log.Warn("recording a node's sealing key; it is sent again at the next check-in", "node", node, "err", err)
		return
	}
	if changed {
		s.compileNode(ctx, node)
	}
}
