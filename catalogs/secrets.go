package catalogs

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// SecretPrefix starts a site value that is encrypted to the server's
// secrets key: "age:" and the base64 of a binary age file, or "age:" and an
// ASCII-armored age file (in a TOML multi-line string).
const SecretPrefix = "age:"

// maxSecretBytes bounds one secret's ciphertext and plain value: a secret
// is a password, a key or a certificate, never a data set.
const maxSecretBytes = 256 << 10

// secretRef is one encrypted value of the site as Load found it: in a data
// file, in a role's or rule's params, in an attribute, or a file under
// secrets/. It never holds the plain value; compile opens it.
type secretRef struct {
	ct  []byte // the binary age file
	pos Pos    // where it is written
	key string // the param's dotted key or "secrets/NAME.age", for messages
}

// String never shows the value: herd lookup and errors print this.
func (r *secretRef) String() string { return SensitiveText }

// MarshalJSON shows a secret in JSON output (herd lookup --json) as
// "(sensitive)".
func (r *secretRef) MarshalJSON() ([]byte, error) { return json.Marshal(SensitiveText) }

// ParseSecretValue decodes what follows "age:" in a site value: the base64
// (standard, padded) of a binary age file, or an armored age file. It
// returns the binary age file; it does not decrypt.
func ParseSecretValue(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty secret: want age: and the output of herd secret encrypt")
	}
	if len(s) > 2*maxSecretBytes {
		return nil, fmt.Errorf("secret is %d bytes long, more than a secret may be", len(s))
	}
	var ct []byte
	if strings.HasPrefix(s, armor.Header) {
		b, err := io.ReadAll(io.LimitReader(armor.NewReader(strings.NewReader(s)), maxSecretBytes+1))
		if err != nil {
			return nil, fmt.Errorf("secret: reading its armor: %w", err)
		}
		ct = b
	} else {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("secret: want base64 after age: (the output of herd secret encrypt): %w", err)
		}
		ct = b
	}
	if !bytes.HasPrefix(ct, []byte("age-encryption.org/v1\n")) {
		return nil, errors.New("secret: not an age-encrypted value (no age-encryption.org/v1 header)")
	}
	if len(ct) > maxSecretBytes {
		return nil, fmt.Errorf("secret: more than %d bytes", maxSecretBytes)
	}
	return ct, nil
}

// parseSecretFile decodes a secrets/NAME.age file: binary or armored.
func parseSecretFile(b []byte) ([]byte, error) {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte(armor.Header)) {
		return ParseSecretValue(string(b))
	}
	if !bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
		return nil, errors.New("not an age-encrypted file (write it with herd secret encrypt --name)")
	}
	if len(b) > maxSecretBytes {
		return nil, fmt.Errorf("more than %d bytes", maxSecretBytes)
	}
	return b, nil
}

// SecretKeys is the server's secrets key: the age identities that open a
// site's secrets (the current one first, then those a rotation keeps until
// the site is re-encrypted) and the SealKey derived from the current one.
// It caches what it opened, by ciphertext, so that recompiling a fleet
// decrypts each secret once; the cache lives as long as the keys, in the
// server's memory only.
type SecretKeys struct {
	ids  []*age.X25519Identity
	seal *SealKey

	mu    sync.Mutex
	plain map[[32]byte]string
	// sealed caches what seal gave, by node key and value: sealing is
	// deterministic, and two X25519 operations per value are most of what
	// a recompile with secrets costs.
	sealed map[[32]byte]Sealed
}

// maxSealed bounds the cache of sealed values (some 250 bytes each).
const maxSealed = 1 << 16

// sealTo seals v to node with the keys' SealKey, from the cache when it
// sealed the same value to the same node before.
func (k *SecretKeys) sealTo(node *ecdh.PublicKey, v any) (Sealed, error) {
	plain, err := sealedPlain(v)
	if err != nil {
		return Sealed{}, err
	}
	h := sha256.New()
	h.Write(node.Bytes())
	h.Write(plain)
	var key [32]byte
	h.Sum(key[:0])
	k.mu.Lock()
	sv, ok := k.sealed[key]
	k.mu.Unlock()
	if ok {
		return sv, nil
	}
	if sv, err = k.seal.Seal(node, v); err != nil {
		return Sealed{}, err
	}
	k.mu.Lock()
	if k.sealed == nil || len(k.sealed) >= maxSealed {
		k.sealed = map[[32]byte]Sealed{}
	}
	k.sealed[key] = sv
	k.mu.Unlock()
	return sv, nil
}

// maxOpened bounds the cache of opened secrets; past it the cache starts
// over.
const maxOpened = 4096

// GenerateSecretKey returns a new age X25519 identity in the text form a
// key file holds ("AGE-SECRET-KEY-1…").
func GenerateSecretKey() (string, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("generating a secrets key: %w", err)
	}
	return id.String(), nil
}

// ParseSecretKeys reads a key file: age X25519 identities, one a line, the
// current one first; blank lines and # comments are allowed.
func ParseSecretKeys(text []byte) (*SecretKeys, error) {
	k := &SecretKeys{plain: map[[32]byte]string{}}
	for i, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, fmt.Errorf("reading the secrets key: line %d: not an age X25519 identity (AGE-SECRET-KEY-1…)", i+1)
		}
		k.ids = append(k.ids, id)
	}
	if len(k.ids) == 0 {
		return nil, errors.New("reading the secrets key: the file holds no age identity")
	}
	// The seal key follows the current identity, so that a rotation that
	// answers a leaked key also changes every box and digest.
	seal, err := NewSealKey([]byte("herd-secrets-key-v1\x00" + k.ids[0].String()))
	if err != nil {
		return nil, err
	}
	k.seal = seal
	return k, nil
}

// Recipient returns the age recipient (age1…) that site secrets are
// encrypted to: the current identity's.
func (k *SecretKeys) Recipient() string { return k.ids[0].Recipient().String() }

// Recipients returns the recipients of every identity held, current first.
func (k *SecretKeys) Recipients() []string {
	out := make([]string, len(k.ids))
	for i, id := range k.ids {
		out[i] = id.Recipient().String()
	}
	return out
}

// SealKey returns the key that seals values into catalogs.
func (k *SecretKeys) SealKey() *SealKey { return k.seal }

// Open decrypts a binary age file with any identity held.
func (k *SecretKeys) Open(ct []byte) (string, error) {
	sum := sha256.Sum256(ct)
	k.mu.Lock()
	p, ok := k.plain[sum]
	k.mu.Unlock()
	if ok {
		return p, nil
	}
	ids := make([]age.Identity, len(k.ids))
	for i, id := range k.ids {
		ids[i] = id
	}
	r, err := age.Decrypt(bytes.NewReader(ct), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return "", fmt.Errorf("it is not encrypted to the server's secrets key (recipient %s): encrypt it again with herd secret encrypt, or restore the key it was encrypted to", k.Recipient())
		}
		return "", fmt.Errorf("decrypting it: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("decrypting it: %w", err)
	}
	if len(b) > maxSecretBytes {
		return "", fmt.Errorf("its value is more than %d bytes", maxSecretBytes)
	}
	k.mu.Lock()
	if len(k.plain) >= maxOpened {
		clear(k.plain)
	}
	k.plain[sum] = string(b)
	k.mu.Unlock()
	return string(b), nil
}

// EncryptSecret encrypts plain to an age recipient (age1…) as a site value:
// "age:" and base64, one line to paste into TOML.
func EncryptSecret(recipient string, plain []byte) (string, error) {
	ct, err := encryptAge(recipient, plain)
	if err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(ct), nil
}

// EncryptSecretFile encrypts plain to recipient as an armored age file,
// the form of secrets/NAME.age.
func EncryptSecretFile(recipient string, plain []byte) ([]byte, error) {
	ct, err := encryptAge(recipient, plain)
	if err != nil {
		return nil, err
	}
	return armorAge(ct)
}

func armorAge(ct []byte) ([]byte, error) {
	var out bytes.Buffer
	w := armor.NewWriter(&out)
	if _, err := w.Write(ct); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func encryptAge(recipient string, plain []byte) ([]byte, error) {
	if len(plain) > maxSecretBytes {
		return nil, fmt.Errorf("encrypting a secret: it is %d bytes, more than %d", len(plain), maxSecretBytes)
	}
	rcpt, err := age.ParseX25519Recipient(strings.TrimSpace(recipient))
	if err != nil {
		return nil, fmt.Errorf("encrypting a secret: recipient %q: %w", recipient, err)
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, rcpt)
	if err != nil {
		return nil, fmt.Errorf("encrypting a secret: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypting a secret: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypting a secret: %w", err)
	}
	return out.Bytes(), nil
}

// OpenSecretValue decrypts a site value ("age:…") or the content of a
// secrets/NAME.age file with keys: herd secret show.
func OpenSecretValue(keys *SecretKeys, v []byte) (string, error) {
	var ct []byte
	var err error
	if s, ok := strings.CutPrefix(strings.TrimSpace(string(v)), SecretPrefix); ok {
		ct, err = ParseSecretValue(s)
	} else {
		ct, err = parseSecretFile(v)
	}
	if err != nil {
		return "", err
	}
	return keys.Open(ct)
}

// secretValueRE finds the secrets written in a TOML file: "age:" and base64,
// or "age:" and an armored file (in a multi-line string).
var secretValueRE = regexp.MustCompile(`age:(?:-----BEGIN AGE ENCRYPTED FILE-----[\s\S]*?-----END AGE ENCRYPTED FILE-----|[A-Za-z0-9+/]+=*)`)

// RotateSecrets re-encrypts every secret in a site file's text to
// recipient, opening each with keys, and keeps the rest of the text byte
// for byte. isSecretFile says text is a secrets/NAME.age file rather than
// TOML. It returns the new text and how many secrets it re-encrypted.
func RotateSecrets(keys *SecretKeys, recipient string, text []byte, isSecretFile bool) ([]byte, int, error) {
	if isSecretFile {
		ct, err := parseSecretFile(text)
		if err != nil {
			return nil, 0, err
		}
		plain, err := keys.Open(ct)
		if err != nil {
			return nil, 0, err
		}
		out, err := EncryptSecretFile(recipient, []byte(plain))
		return out, 1, err
	}
	var firstErr error
	n := 0
	out := secretValueRE.ReplaceAllFunc(text, func(m []byte) []byte {
		if firstErr != nil {
			return m
		}
		line := bytes.Count(text[:bytes.Index(text, m)], []byte("\n")) + 1
		s := string(m[len(SecretPrefix):])
		ct, err := ParseSecretValue(s)
		if err != nil {
			firstErr = fmt.Errorf("line %d: %w", line, err)
			return m
		}
		plain, err := keys.Open(ct)
		if err != nil {
			firstErr = fmt.Errorf("line %d: %w", line, err)
			return m
		}
		nct, err := encryptAge(recipient, []byte(plain))
		if err != nil {
			firstErr = err
			return m
		}
		n++
		if strings.HasPrefix(s, armor.Header) {
			a, err := armorAge(nct)
			if err != nil {
				firstErr = err
				return m
			}
			return append([]byte(SecretPrefix), bytes.TrimRight(a, "\n")...)
		}
		return []byte(SecretPrefix + base64.StdEncoding.EncodeToString(nct))
	})
	if firstErr != nil {
		return nil, 0, firstErr
	}
	return out, n, nil
}

// loadSecrets finds the site's secrets: files under secrets/, and "age:"
// values in data files and in the params of roles and classification
// rules, which it replaces with secretRefs in place. Attributes are found
// by loadAttr.
func (l *loader) loadSecrets() {
	s := l.site
	for _, rel := range l.filesUnder("secrets", "") {
		name, ok := strings.CutSuffix(strings.TrimPrefix(rel, "secrets/"), ".age")
		if !ok {
			l.diags.add(Pos{File: rel}, "secrets/ holds only NAME.age files written by herd secret encrypt --name")
			continue
		}
		ct, err := parseSecretFile(l.contents[rel])
		if err != nil {
			l.diags.add(Pos{File: rel}, "%v", err)
			continue
		}
		if s.secretFiles == nil {
			s.secretFiles = map[string]*secretRef{}
		}
		s.secretFiles[name] = &secretRef{ct: ct, pos: Pos{File: rel}, key: rel}
		s.hasSecrets = true
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range s.data {
			if !yield(k) {
				return
			}
		}
	}) {
		doc := s.data[name]
		l.findSecrets(doc, "", "", doc.data)
	}
	for _, ro := range s.roles {
		if ro.doc != nil {
			l.findSecrets(ro.doc, "params", "", ro.params)
		}
	}
	if s.nodes != nil {
		for _, ru := range s.rules {
			if ru.params != nil {
				l.findSecrets(s.nodes, ru.path+".params", "", ru.params)
			}
		}
	}
}

// findSecrets replaces every "age:" string in m (at key path prefix of
// doc; dotted is the param's name) with a secretRef.
func (l *loader) findSecrets(doc *tomlDoc, prefix, dotted string, m map[string]any) {
	for k, v := range m {
		kp, dk := joinKey(prefix, k), k
		if dotted != "" {
			dk = dotted + "." + k
		}
		if r, ok := l.secretIn(doc, kp, dk, v); ok {
			if r != nil {
				m[k] = r
			}
			continue
		}
		switch v := v.(type) {
		case map[string]any:
			l.findSecrets(doc, kp, dk, v)
		case []any:
			for i, e := range v {
				ep := fmt.Sprintf("%s[%d]", kp, i)
				if r, ok := l.secretIn(doc, ep, fmt.Sprintf("%s[%d]", dk, i), e); ok {
					if r != nil {
						v[i] = r
					}
				} else if em, isMap := e.(map[string]any); isMap {
					l.findSecrets(doc, ep, fmt.Sprintf("%s[%d]", dk, i), em)
				}
			}
		}
	}
}

// secretIn reports whether v is an "age:" string; the ref is nil when it
// does not parse (the mistake is recorded).
func (l *loader) secretIn(doc *tomlDoc, kp, dotted string, v any) (*secretRef, bool) {
	str, ok := v.(string)
	if !ok {
		return nil, false
	}
	rest, ok := strings.CutPrefix(str, SecretPrefix)
	if !ok {
		return nil, false
	}
	pos := doc.posOf(kp)
	ct, err := ParseSecretValue(rest)
	if err != nil {
		l.diags.add(pos, "%s: %v", dotted, err)
		return nil, true
	}
	l.site.hasSecrets = true
	return &secretRef{ct: ct, pos: pos, key: dotted}, true
}

// newValue reads one string of an attribute: an "age:" secret, a template
// or a literal.
func (l *loader) newValue(s string, pos Pos, name string) (tstring, error) {
	if rest, ok := strings.CutPrefix(s, SecretPrefix); ok {
		ct, err := ParseSecretValue(rest)
		if err != nil {
			return tstring{}, Diagnostic{Pos: pos, Msg: name + ": " + err.Error()}
		}
		l.site.hasSecrets = true
		return tstring{secret: &secretRef{ct: ct, pos: pos, key: name}}, nil
	}
	return l.newTString(s, pos)
}

// Current returns keys holding only the current identity: what the server
// keeps once a rotation is finished.
func (k *SecretKeys) Current() *SecretKeys {
	return &SecretKeys{ids: k.ids[:1], seal: k.seal, plain: map[[32]byte]string{}}
}

// CheckSecrets opens every secret in a site file's text with keys (see
// RotateSecrets) and returns how many there are, or the first that does
// not open, by line.
func CheckSecrets(keys *SecretKeys, text []byte, isSecretFile bool) (int, error) {
	if isSecretFile {
		ct, err := parseSecretFile(text)
		if err == nil {
			_, err = keys.Open(ct)
		}
		if err != nil {
			return 0, err
		}
		return 1, nil
	}
	locs := secretValueRE.FindAllIndex(text, -1)
	for _, loc := range locs {
		line := bytes.Count(text[:loc[0]], []byte("\n")) + 1
		ct, err := ParseSecretValue(string(text[loc[0]+len(SecretPrefix) : loc[1]]))
		if err == nil {
			_, err = keys.Open(ct)
		}
		if err != nil {
			return 0, fmt.Errorf("line %d: %w", line, err)
		}
	}
	return len(locs), nil
}
