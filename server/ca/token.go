package ca

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path"
	"time"
)

// NewToken makes a join token: a secret that lets nodes whose names match
// pattern (a path.Match glob such as "web-*"; "" is any name) enroll
// without an operator signing their requests, until ttl has passed, and
// once only when singleUse. The secret is 32 random bytes in unpadded
// base64url; only its sha256 is stored, so it is shown this once.
func (c *CA) NewToken(ctx context.Context, pattern string, ttl time.Duration, singleUse bool) (secret string, expires time.Time, err error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return "", time.Time{}, fmt.Errorf("making join token: name pattern %q: %w: %w", pattern, ErrInvalid, err)
	}
	// A token that never expires is a standing credential; it must be asked
	// for with a long ttl, never got by leaving it out.
	if ttl <= 0 {
		return "", time.Time{}, fmt.Errorf("making join token: %w: ttl %s, want more than 0", ErrInvalid, ttl)
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
// now; when not, reason says why. A single-use token is spent even when
// its pattern does not match name, because the store finds and spends it
// in one step: whoever holds a token could spend it with a matching name
// anyway, so this gives nothing away.
func (c *CA) useToken(ctx context.Context, name, secret string) (ok bool, reason string, err error) {
	now := c.now()
	t, found, err := c.st.UseToken(ctx, hashToken(secret), now)
	if err != nil {
		return false, "", fmt.Errorf("checking join token: %w", err)
	}
	switch {
	case !found:
		return false, "join token unknown or already used", nil
	case !t.Expires.IsZero() && !now.Before(t.Expires):
		return false, "join token expired", nil
	case t.NamePattern != "":
		m, err := path.Match(t.NamePattern, name)
		if err != nil || !m {
			return false, fmt.Sprintf("join token is for names matching %q", t.NamePattern), nil
		}
	}
	return true, "", nil
}

// hashToken is how a join token's secret is stored and looked up.
func hashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
