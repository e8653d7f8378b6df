package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// The argon2id parameters of new password hashes: OWASP's smallest
// recommended setting (19 MiB, 2 passes, 1 lane). Each sign-in costs one
// such hash; the limiter and webHashSlots keep a flood of them from
// taking the server's memory and cores.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
	// MinPasswordLen is the shortest password `herd ca admin --login`
	// accepts from stdin.
	MinPasswordLen = 12
	maxPasswordLen = 1024
)

// loginName is what a login may be called: it appears in logs and pages.
var loginName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// CheckLoginName says why name cannot be a login, or nil.
func CheckLoginName(name string) error {
	if !loginName.MatchString(name) {
		return fmt.Errorf("login name %q: want 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	return nil
}

// GeneratePassword returns a random password of 24 URL-safe characters
// (144 bits).
func GeneratePassword() string {
	b := make([]byte, 18)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashPassword returns the argon2id hash of password as a PHC string
// ($argon2id$v=19$m=…,t=…,p=…$salt$key), the form the store keeps.
func HashPassword(password string) (string, error) {
	if len(password) < MinPasswordLen {
		return "", fmt.Errorf("the password is %d characters, fewer than %d", len(password), MinPasswordLen)
	}
	if len(password) > maxPasswordLen {
		return "", fmt.Errorf("the password is longer than %d bytes", maxPasswordLen)
	}
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// phc is a parsed argon2id hash.
type phc struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parsePHC reads a hash HashPassword made. Its bounds keep a hash from a
// tampered store (or the local socket) from asking for gigabytes.
func parsePHC(s string) (phc, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return phc{}, errors.New("not an argon2id hash ($argon2id$v=19$m=…,t=…,p=…$salt$key)")
	}
	var p phc
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return phc{}, fmt.Errorf("argon2id parameter %q: %v", kv, err)
		}
		switch k {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n > 255 {
				return phc{}, fmt.Errorf("argon2id parameter %q: more than 255 lanes", kv)
			}
			p.threads = uint8(n)
		default:
			return phc{}, fmt.Errorf("argon2id parameter %q: unknown", kv)
		}
	}
	switch {
	case p.memory < 8*1024 || p.memory > 256*1024:
		return phc{}, fmt.Errorf("argon2id memory %d KiB: want 8 MiB to 256 MiB", p.memory)
	case p.time < 1 || p.time > 16:
		return phc{}, fmt.Errorf("argon2id passes %d: want 1 to 16", p.time)
	case p.threads < 1 || p.threads > 8:
		return phc{}, fmt.Errorf("argon2id lanes %d: want 1 to 8", p.threads)
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 || len(p.salt) > 64 {
		return phc{}, errors.New("argon2id salt: want 8 to 64 bytes of unpadded base64")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return phc{}, errors.New("argon2id key: want 16 to 64 bytes of unpadded base64")
	}
	return p, nil
}

// checkPassword says whether password matches hash, in time that does
// not depend on where they differ.
func checkPassword(hash, password string) (bool, error) {
	p, err := parsePHC(hash)
	if err != nil {
		return false, err
	}
	if len(password) > maxPasswordLen {
		return false, nil
	}
	key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}
