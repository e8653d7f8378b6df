package ca

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
	"time"
)

// NewToken makes a join token: a secret that lets nodes whose names match
// pattern (see MatchName; "" is any name) enroll without an operator
// signing their requests, until ttl has passed, and once only when
// singleUse. ttl must be more than 0 and at most Options.MaxTokenTTL. The
// secret is 32 random bytes in unpadded base64url; only its sha256 is
// stored, so it is shown this once.
func (c *CA) NewToken(ctx context.Context, pattern string, ttl time.Duration, singleUse bool) (secret string, expires time.Time, err error) {
	if err := checkPattern(pattern); err != nil {
		return "", time.Time{}, fmt.Errorf("making join token: %w", err)
	}
	// A token that never expires is a standing credential; it must be asked
	// for with a long ttl, never got by leaving it out. A limit keeps a
	// leaked token from enrolling nodes for years.
	if ttl <= 0 || ttl > c.opts.MaxTokenTTL {
		return "", time.Time{}, fmt.Errorf("making join token: %w: ttl %s, want more than 0 and at most %s", ErrInvalid, ttl, c.opts.MaxTokenTTL)
	}
	now := c.now()
	secret = base64.RawURLEncoding.EncodeToString(randomBytes(32))
	t := Token{
		Hash:        hashToken(secret),
		NamePattern: pattern,
		Expires:     now.Add(ttl),
		SingleUse:   singleUse,
		Created:     now,
	}
	if err := c.st.PutToken(ctx, t); err != nil {
		return "", time.Time{}, fmt.Errorf("making join token: storing it: %w", err)
	}
	c.log.Info("made join token", "pattern", pattern, "expires", t.Expires, "single_use", singleUse)
	return secret, t.Expires, nil
}

// useToken spends secret for name. ok says whether it lets name enroll
// now; when not, reason says why. A single-use token is spent only when it
// lets name through: an expired token or one for other names stays as it
// was.
func (c *CA) useToken(ctx context.Context, name, secret string) (ok bool, reason string, err error) {
	now := c.now()
	reason = "join token unknown or already used"
	_, found, err := c.st.UseToken(ctx, hashToken(secret), now, func(t Token) bool {
		switch {
		case !t.Expires.IsZero() && !now.Before(t.Expires):
			reason = "join token expired"
			return false
		case !MatchName(t.NamePattern, name):
			reason = fmt.Sprintf("join token is for names matching %q", t.NamePattern)
			return false
		}
		return true
	})
	if err != nil {
		return false, "", fmt.Errorf("checking join token: %w", err)
	}
	if !found {
		return false, reason, nil
	}
	return true, "", nil
}

// MatchName reports whether name matches a join token's pattern. The
// pattern is matched label by label (labels are split at dots) with
// path.Match, so a '*' never crosses a dot: "web-*" matches "web-01" but
// not "web-01.evil.example", which only a pattern with as many labels
// ("web-*.*.*", "web-*.evil.example") matches. "" matches every name.
func MatchName(pattern, name string) bool {
	if pattern == "" {
		return true
	}
	pl, nl := strings.Split(pattern, "."), strings.Split(name, ".")
	if len(pl) != len(nl) {
		return false
	}
	for i := range pl {
		if ok, err := path.Match(pl[i], nl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

// checkPattern reports whether pattern is a usable join token pattern.
func checkPattern(pattern string) error {
	for label := range strings.SplitSeq(pattern, ".") {
		if _, err := path.Match(label, ""); err != nil {
			return fmt.Errorf("name pattern %q: %w: %w", pattern, ErrInvalid, err)
		}
	}
	return nil
}

// hashToken is how a join token's secret is stored and looked up.
func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenID names a join token for people and for RevokeToken without
// being its secret: the first 16 hex digits of the sha256 of the secret.
func TokenID(secret string) string { return hashToken(secret)[:tokenIDLen] }

// tokenIDLen is the length of a TokenID.
const tokenIDLen = 16

// ListedToken is one line of `herd ca tokens`.
type ListedToken struct {
	ID string
	Token
}

// Tokens returns every join token, newest first, with its id and never
// its secret (which the CA does not keep).
func (c *CA) Tokens(ctx context.Context) ([]ListedToken, error) {
	ts, err := c.st.Tokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	out := make([]ListedToken, len(ts))
	for i, t := range ts {
		out[i] = ListedToken{ID: t.Hash[:min(tokenIDLen, len(t.Hash))], Token: t}
	}
	return out, nil
}

// RevokeToken deletes the join token with this id, so that it enrolls
// nothing more. It fails with ErrNotFound when no token has it.
func (c *CA) RevokeToken(ctx context.Context, id string) error {
	id = strings.ToLower(strings.TrimSpace(id))
	if len(id) != tokenIDLen {
		return fmt.Errorf("revoking join token %q: %w: want the %d hex digits `herd ca tokens` shows", id, ErrInvalid, tokenIDLen)
	}
	ts, err := c.st.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("revoking join token %s: %w", id, err)
	}
	for _, t := range ts {
		if strings.HasPrefix(t.Hash, id) {
			if err := c.st.DeleteToken(ctx, t.Hash); err != nil {
				return fmt.Errorf("revoking join token %s: %w", id, err)
			}
			c.log.Info("revoked join token", "id", id, "pattern", t.NamePattern)
			return nil
		}
	}
	return fmt.Errorf("revoking join token %s: %w", id, ErrNotFound)
}
