package ca

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Revoke revokes name's certificate, node's or admin's: the server refuses
// it from its next call on, OnRevoke's callbacks run, and the name may
// enroll again. It fails with ErrNotFound when name has no unrevoked
// certificate.
func (c *CA) Revoke(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("revoking %q: %w", name, err)
	}
	unlock := c.lock(name)
	cert, ok, err := c.unrevoked(ctx, name)
	if err == nil && !ok {
		err = fmt.Errorf("no unrevoked certificate: %w", ErrNotFound)
	}
	if err == nil {
		err = c.st.Revoke(ctx, name, c.now())
	}
	unlock()
	if err != nil {
		return fmt.Errorf("revoking %q: %w", name, err)
	}

	// The certificates the current one renewed may still be valid: they
	// are revoked with it.
	serials := []string{cert.Serial}
	for prev, hops := cert.Supersedes, 0; prev != "" && hops < 16; hops++ {
		rec, ok, err := c.st.CertBySerial(ctx, prev)
		if err != nil || !ok {
			break
		}
		serials = append(serials, rec.Serial)
		prev = rec.Supersedes
	}

	c.revokeMu.Lock()
	old := *c.revoked.Load()
	set := make(map[string]struct{}, len(old)+len(serials))
	maps.Copy(set, old)
	for _, s := range serials {
		set[s] = struct{}{}
	}
	c.revoked.Store(&set)
	var crlErr error
	if !c.noCRL {
		crlErr = c.writeCRL(set)
	}
	subs := slices.Collect(maps.Values(c.subs))
	c.revokeMu.Unlock()

	c.log.Info("revoked certificate", "name", name, "serial", cert.Serial, "admin", cert.Admin)
	for _, f := range subs {
		f(name, cert.Serial)
	}
	if c.opts.Announce != nil {
		c.opts.Announce(name, serials)
	}
	if crlErr != nil {
		// Revoked in the store and in memory; only the copy beside the
		// CA is behind, and the next revocation or start rewrites it.
		return fmt.Errorf("revoked %q, but: %w", name, crlErr)
	}
	return nil
}

// IsRevoked reports whether the certificate with this serial (as
// SerialHex formats it) was revoked. It is a map lookup without locks,
// for the server to call on every RPC. It knows the revocations made
// through this CA and those in the store when it was opened.
func (c *CA) IsRevoked(serialHex string) bool {
	_, ok := (*c.revoked.Load())[serialHex]
	return ok
}

// OnRevoke registers f to be called, after each revocation, with the
// revoked name and serial, so that the server can close the streams a
// revoked node holds open. f runs on Revoke's goroutine and must not
// block or call Revoke. The returned stop unregisters f.
func (c *CA) OnRevoke(f func(name, serial string)) (stop func()) {
	c.revokeMu.Lock()
	defer c.revokeMu.Unlock()
	id := c.nextSub
	c.nextSub++
	c.subs[id] = f
	return func() {
		c.revokeMu.Lock()
		defer c.revokeMu.Unlock()
		delete(c.subs, id)
	}
}

// Learn adds to this CA's view the revocations other servers sharing
// its store made: serials is those they announced, or nil to re-read
// every revoked serial from the store (after a gap in the announcements,
// and periodically as the fallback). OnRevoke's callbacks run for each
// one new to this CA.
func (c *CA) Learn(ctx context.Context, serials []string) error {
	if serials == nil {
		all, err := c.st.Revoked(ctx)
		if err != nil {
			return fmt.Errorf("learning revocations: %w", err)
		}
		serials = all
	}
	known := *c.revoked.Load()
	fresh := map[string]string{}
	for _, s := range serials {
		if _, ok := known[s]; ok {
			continue
		}
		rec, ok, err := c.st.CertBySerial(ctx, s)
		if err != nil {
			return fmt.Errorf("learning revocations: %w", err)
		}
		if !ok || rec.RevokedAt.IsZero() {
			// Not (or not yet) revoked in the store: an announcement
			// is a hint, the store decides.
			continue
		}
		fresh[s] = rec.Name
	}
	c.learn(fresh)
	return nil
}

// learn adds revoked serials (serial → name) to the in-memory view and
// the CRL, and runs OnRevoke's callbacks for those new to it.
func (c *CA) learn(revoked map[string]string) {
	if len(revoked) == 0 {
		return
	}
	c.revokeMu.Lock()
	old := *c.revoked.Load()
	set := make(map[string]struct{}, len(old)+len(revoked))
	maps.Copy(set, old)
	var added []string
	for s := range revoked {
		if _, ok := set[s]; !ok {
			set[s] = struct{}{}
			added = append(added, s)
		}
	}
	if len(added) == 0 {
		c.revokeMu.Unlock()
		return
	}
	c.revoked.Store(&set)
	if !c.noCRL {
		if err := c.writeCRL(set); err != nil {
			c.log.Warn("writing the revocation list after learning another server's revocation", "err", err)
		}
	}
	subs := slices.Collect(maps.Values(c.subs))
	c.revokeMu.Unlock()
	for _, s := range added {
		c.log.Info("learned a revocation another server made", "name", revoked[s], "serial", s)
		for _, f := range subs {
			f(revoked[s], s)
		}
	}
}

// Listed is one line of `herd ca list`: a certificate or a pending
// request.
type Listed struct {
	Name  string
	State State
	// Serial, NotAfter and Admin describe a certificate; they are empty
	// for a pending request.
	Serial   string
	NotAfter time.Time
	Admin    bool
	// Time is when the certificate was issued or revoked, or the request
	// made.
	Time time.Time
	// Fingerprint is the key's, as Fingerprint gives it, for the operator
	// to compare with the one the node shows before signing; empty when
	// the stored record does not parse.
	Fingerprint string
	// Source is the address a pending request came from.
	Source string
}

// List returns every certificate (issued and revoked) and pending
// request, by name; for one name, certificates newest first, then its
// pending request. Expired pending requests are dropped first.
func (c *CA) List(ctx context.Context) ([]Listed, error) {
	if _, err := c.PrunePending(ctx); err != nil {
		return nil, fmt.Errorf("listing certificates: %w", err)
	}
	certs, err := c.st.Certs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing certificates: %w", err)
	}
	pendings, err := c.st.Pendings(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing pending requests: %w", err)
	}
	out := make([]Listed, 0, len(certs)+len(pendings))
	for _, ct := range certs {
		l := Listed{Name: ct.Name, State: StateIssued, Serial: ct.Serial, NotAfter: ct.NotAfter, Admin: ct.Admin, Time: ct.Issued}
		switch {
		case !ct.RevokedAt.IsZero():
			l.State, l.Time = StateRevoked, ct.RevokedAt
		case ct.SupersededBy != "":
			l.State = StateSuperseded
		}
		if x, err := x509.ParseCertificate(ct.DER); err == nil {
			l.Fingerprint, _ = Fingerprint(x.PublicKey)
		}
		out = append(out, l)
	}
	for _, p := range pendings {
		l := Listed{Name: p.Name, State: StatePending, Time: p.Requested, Source: p.Source}
		if csr, err := x509.ParseCertificateRequest(p.CSR); err == nil {
			l.Fingerprint, _ = Fingerprint(csr.PublicKey)
		}
		out = append(out, l)
	}
	slices.SortStableFunc(out, func(a, b Listed) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// ListPage returns one page of what List returns: at most size entries
// from where token (the next token of the page before; "" for the first)
// says, and the token of the page after ("" when this one is the last).
// A token is the name of the page's last entry and how many entries of
// that name were listed, so that a name with many certificates may span
// pages. A token that does not parse fails with ErrInvalid.
func (c *CA) ListPage(ctx context.Context, token string, size int) ([]Listed, string, error) {
	if size <= 0 {
		return nil, "", fmt.Errorf("listing certificates: page size %d: %w", size, ErrInvalid)
	}
	after, skip, err := ParsePageToken(token)
	if err != nil {
		return nil, "", fmt.Errorf("listing certificates: %w", err)
	}
	all, err := c.List(ctx)
	if err != nil {
		return nil, "", err
	}
	start := len(all)
	if token == "" {
		start = 0
	} else {
		for i, l := range all {
			if l.Name > after {
				start = i
				break
			}
			if l.Name == after {
				if skip == 0 {
					start = i
					break
				}
				skip--
			}
		}
	}
	page := all[start:]
	if len(page) <= size {
		return page, "", nil
	}
	page = page[:size]
	last := page[size-1].Name
	n := 0
	for i := start + size - 1; i >= 0 && all[i].Name == last; i-- {
		n++
	}
	return page, pageToken(last, n), nil
}

// pageToken encodes where a page of ListPage ended: after the n-th entry
// of name.
func pageToken(name string, n int) string { return strconv.Itoa(n) + ":" + name }

// ParsePageToken reads a token of ListPage: the name of the last entry
// listed and how many entries of that name were. "" is the start. It is
// exported for the fuzz test; the token comes from clients.
func ParsePageToken(token string) (name string, n int, err error) {
	if token == "" {
		return "", 0, nil
	}
	num, name, ok := strings.Cut(token, ":")
	if !ok {
		return "", 0, fmt.Errorf("page token %q: %w", token, ErrInvalid)
	}
	n, err = strconv.Atoi(num)
	if err != nil || n <= 0 || num != strconv.Itoa(n) {
		return "", 0, fmt.Errorf("page token %q: want a count of entries: %w", token, ErrInvalid)
	}
	if err := CheckName(name); err != nil {
		return "", 0, fmt.Errorf("page token %q: %w", token, err)
	}
	return name, n, nil
}
