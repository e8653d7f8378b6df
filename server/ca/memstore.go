package ca

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// MemStore is a Store in memory, for tests of this package and of the
// server. The zero value is not usable; call NewMemStore.
type MemStore struct {
	mu       sync.Mutex
	certs    map[string][]Cert // newest first
	pendings map[string]Pending
	tokens   map[string]Token // by hash
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{certs: map[string][]Cert{}, pendings: map[string]Pending{}, tokens: map[string]Token{}}
}

// PutCert implements Store.
func (m *MemStore) PutCert(_ context.Context, c Cert) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.certs[c.Name]
	if c.Supersedes != "" {
		i := slices.IndexFunc(old, func(o Cert) bool { return o.Serial == c.Supersedes })
		if i < 0 || !old[i].RevokedAt.IsZero() || old[i].SupersededBy != "" {
			return fmt.Errorf("storing certificate of %q: no current certificate with serial %s: %w", c.Name, c.Supersedes, ErrNotFound)
		}
		old[i].SupersededBy = c.Serial
	}
	for _, o := range old {
		if o.RevokedAt.IsZero() && o.SupersededBy == "" {
			return fmt.Errorf("storing certificate of %q: %w", c.Name, ErrExists)
		}
	}
	c.DER = bytes.Clone(c.DER)
	m.certs[c.Name] = append([]Cert{c}, m.certs[c.Name]...)
	return nil
}

// Cert implements Store.
func (m *MemStore) Cert(_ context.Context, name string) (Cert, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cs := m.certs[name]; len(cs) > 0 {
		return cloneCert(cs[0]), true, nil
	}
	return Cert{}, false, nil
}

// Certs implements Store.
func (m *MemStore) Certs(context.Context) ([]Cert, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Cert
	for _, name := range slices.Sorted(maps.Keys(m.certs)) {
		for _, c := range m.certs[name] {
			out = append(out, cloneCert(c))
		}
	}
	return out, nil
}

// Revoke implements Store. It fails with ErrNotFound when name has no
// unrevoked certificate.
func (m *MemStore) Revoke(_ context.Context, name string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for i, c := range m.certs[name] {
		if c.RevokedAt.IsZero() {
			m.certs[name][i].RevokedAt = at
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("revoking %q: no unrevoked certificate: %w", name, ErrNotFound)
	}
	return nil
}

// Revoked implements Store.
func (m *MemStore) Revoked(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, cs := range m.certs {
		for _, c := range cs {
			if !c.RevokedAt.IsZero() {
				out = append(out, c.Serial)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// PutPending implements Store.
func (m *MemStore) PutPending(_ context.Context, p Pending) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.CSR = bytes.Clone(p.CSR)
	m.pendings[p.Name] = p
	return nil
}

// Pending implements Store.
func (m *MemStore) Pending(_ context.Context, name string) (Pending, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pendings[name]
	p.CSR = bytes.Clone(p.CSR)
	return p, ok, nil
}

// DeletePending implements Store; deleting what is not there is no error.
func (m *MemStore) DeletePending(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pendings, name)
	return nil
}

// Pendings implements Store.
func (m *MemStore) Pendings(context.Context) ([]Pending, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Pending, 0, len(m.pendings))
	for _, p := range m.pendings {
		p.CSR = bytes.Clone(p.CSR)
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Pending) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Tokens implements Store.
func (m *MemStore) Tokens(context.Context) ([]Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Collect(maps.Values(m.tokens))
	slices.SortFunc(out, func(a, b Token) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// DeleteToken implements Store.
func (m *MemStore) DeleteToken(_ context.Context, hash string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, hash)
	return nil
}

// CountPending implements Store.
func (m *MemStore) CountPending(context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pendings), nil
}

// PrunePending implements Store.
func (m *MemStore) PrunePending(_ context.Context, before time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for name, p := range m.pendings {
		if p.Requested.Before(before) {
			delete(m.pendings, name)
			n++
		}
	}
	return n, nil
}

// CertBySerial implements Store.
func (m *MemStore) CertBySerial(_ context.Context, serial string) (Cert, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, cs := range m.certs {
		for _, c := range cs {
			if c.Serial == serial {
				return cloneCert(c), true, nil
			}
		}
	}
	return Cert{}, false, nil
}

// PutToken implements Store.
func (m *MemStore) PutToken(_ context.Context, t Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[t.Hash] = t
	return nil
}

// UseToken implements Store.
func (m *MemStore) UseToken(_ context.Context, hash string, at time.Time, accept func(Token) bool) (Token, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[hash]
	if !ok || t.SingleUse && !t.UsedAt.IsZero() || !accept(t) {
		return Token{}, false, nil
	}
	if t.SingleUse {
		t.UsedAt = at
		m.tokens[hash] = t
	}
	return t, true, nil
}

// cloneCert copies c so that callers cannot change the stored record.
func cloneCert(c Cert) Cert {
	c.DER = bytes.Clone(c.DER)
	return c
}
