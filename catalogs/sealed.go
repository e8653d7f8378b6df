package catalogs

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Sealed is a sensitive attribute value as a catalog carries it: encrypted
// to the owning node's own key, so that the server's store, the admin API,
// reports and diffs only ever hold ciphertext, and only that node's agent
// can read the value back.
//
// Sealing is deterministic: the same server key, node key and value give
// the same bytes, so a catalog keeps one canonical encoding and one digest
// for the same inputs. The construction is an ECIES over X25519 whose
// ephemeral key is derived from the value (an HMAC under the server's seal
// key), with AES-256-GCM under a key used for this one message:
//
//	e     = HMAC-SHA256(seal key, "herd-seal-v1" 0 || node public key || plain)
//	E     = X25519(e, basepoint)
//	k     = HKDF-SHA256(X25519(e, node public key), salt E || node public key, "herd-seal-v1")
//	box   = E || AES-256-GCM(k, nonce 0, plain, "herd-seal-v1")
//
// Because e depends on the value, two different values never share a key
// (so the fixed nonce is safe), and equal values sealed to the same node
// give equal boxes: a reader learns whether a node's value changed, which
// is what diffs need, and nothing else. Without the seal key nobody can
// test a guessed value against a box or a digest.
//
// The plain value is the canonical JSON of the attribute's value (a
// string, a table of strings, …), so that any attribute kind can be
// sealed whole.
type Sealed struct {
	// Box is base64 (standard, padded) of E || ciphertext.
	Box string `json:"box"`
	// Digest is "hmac-sha256:<hex>" of the plain value under the server's
	// digest key: the same value gives the same digest on every node, so
	// an operator can tell that a rotated secret reached the whole fleet,
	// and nobody without the key can test a guess against it.
	Digest string `json:"digest"`
}

// sealedJSON is how a Sealed value sits in a catalog's attrs: an object
// whose only member is "sealed". A table of strings can never hold an
// object, so the two shapes cannot be confused on decode.
type sealedJSON struct {
	Sealed struct {
		Box    string `json:"box"`
		Digest string `json:"digest"`
	} `json:"sealed"`
}

// MarshalJSON encodes s as {"sealed":{"box":…,"digest":…}}.
func (s Sealed) MarshalJSON() ([]byte, error) {
	var j sealedJSON
	j.Sealed.Box, j.Sealed.Digest = s.Box, s.Digest
	return json.Marshal(j)
}

// String never shows the value, whatever prints it.
func (s Sealed) String() string { return "(sensitive)" }

// SensitiveText is what every view shows in place of a sensitive value.
const SensitiveText = "(sensitive)"

// SealKey is the server's key for sealing values into catalogs: 32 bytes
// for the ephemeral keys and 32 for the digests, derived from the server's
// secrets key so that every server holding that key seals alike.
type SealKey struct {
	seal   [32]byte
	digest [32]byte
}

// NewSealKey derives a SealKey from the server's secret key material
// (at least 32 bytes of it).
func NewSealKey(secret []byte) (*SealKey, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("deriving the seal key: need at least 32 bytes of key material, have %d", len(secret))
	}
	var k SealKey
	for _, part := range []struct {
		info string
		out  *[32]byte
	}{{"herd-seal-v1 ephemeral", &k.seal}, {"herd-seal-v1 digest", &k.digest}} {
		b, err := hkdf.Key(sha256.New, secret, nil, part.info, 32)
		if err != nil {
			return nil, fmt.Errorf("deriving the seal key: %w", err)
		}
		copy(part.out[:], b)
	}
	return &k, nil
}

const sealLabel = "herd-seal-v1"

// Digest returns the keyed digest of a plain value as Sealed.Digest holds
// it.
func (k *SealKey) Digest(v any) (string, error) {
	plain, err := sealedPlain(v)
	if err != nil {
		return "", err
	}
	return k.digestOf(plain), nil
}

func (k *SealKey) digestOf(plain []byte) string {
	m := hmac.New(sha256.New, k.digest[:])
	m.Write(plain)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// Seal encrypts v (a value of one of the catalog's shapes) to a node's
// X25519 public key.
func (k *SealKey) Seal(node *ecdh.PublicKey, v any) (Sealed, error) {
	if node == nil || node.Curve() != ecdh.X25519() {
		return Sealed{}, errors.New("sealing a value: the node has no X25519 key")
	}
	plain, err := sealedPlain(v)
	if err != nil {
		return Sealed{}, err
	}
	m := hmac.New(sha256.New, k.seal[:])
	m.Write([]byte(sealLabel))
	m.Write([]byte{0})
	m.Write(node.Bytes())
	m.Write(plain)
	eph, err := ecdh.X25519().NewPrivateKey(m.Sum(nil))
	if err != nil {
		return Sealed{}, fmt.Errorf("sealing a value: %w", err)
	}
	aead, err := sealAEAD(eph, node, eph.PublicKey().Bytes(), node.Bytes())
	if err != nil {
		return Sealed{}, err
	}
	box := append([]byte(nil), eph.PublicKey().Bytes()...)
	box = aead.Seal(box, make([]byte, aead.NonceSize()), plain, []byte(sealLabel))
	return Sealed{Box: base64.StdEncoding.EncodeToString(box), Digest: k.digestOf(plain)}, nil
}

// Open decrypts s with the node's private key and returns the value in
// the shape compile produced it (string, int64, bool, []string,
// map[string]string).
func (s Sealed) Open(node *ecdh.PrivateKey) (any, error) {
	box, err := base64.StdEncoding.Strict().DecodeString(s.Box)
	if err != nil {
		return nil, fmt.Errorf("opening a sealed value: %w", err)
	}
	if len(box) < 32 {
		return nil, errors.New("opening a sealed value: box too short")
	}
	eph, err := ecdh.X25519().NewPublicKey(box[:32])
	if err != nil {
		return nil, fmt.Errorf("opening a sealed value: %w", err)
	}
	aead, err := sealAEAD(node, eph, box[:32], node.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), box[32:], []byte(sealLabel))
	if err != nil {
		return nil, errors.New("opening a sealed value: it was not sealed to this node's key (or was altered)")
	}
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("opening a sealed value: %w", err)
	}
	v, err = normalizeJSON(v)
	if err != nil {
		return nil, fmt.Errorf("opening a sealed value: %w", err)
	}
	if _, nested := v.(Sealed); nested {
		return nil, errors.New("opening a sealed value: it holds another sealed value")
	}
	return v, nil
}

// sealAEAD derives the one-message AEAD from an X25519 exchange between
// priv and pub (the ephemeral and the node's key, one on each side); the
// two public keys salt the derivation.
func sealAEAD(priv *ecdh.PrivateKey, pub *ecdh.PublicKey, ephPub, nodePub []byte) (cipher.AEAD, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("sealing: key exchange: %w", err)
	}
	salt := append(append([]byte(nil), ephPub...), nodePub...)
	key, err := hkdf.Key(sha256.New, shared, salt, sealLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("sealing: deriving the key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealedPlain is the canonical encoding of a value to seal.
func sealedPlain(v any) ([]byte, error) {
	if _, ok := v.(Sealed); ok {
		return nil, errors.New("sealing a value: it is sealed already")
	}
	b, err := appendValue(nil, v)
	if err != nil {
		return nil, fmt.Errorf("sealing a value: %w", err)
	}
	return b, nil
}

// sealedFromJSON recognizes the decoded shape of a Sealed value.
func sealedFromJSON(m map[string]any) (Sealed, bool, error) {
	inner, ok := m["sealed"]
	if !ok || len(m) != 1 {
		return Sealed{}, false, nil
	}
	im, ok := inner.(map[string]any)
	if !ok {
		return Sealed{}, false, nil
	}
	box, ok1 := im["box"].(string)
	digest, ok2 := im["digest"].(string)
	if !ok1 || !ok2 || len(im) != 2 {
		return Sealed{}, false, errors.New(`a sealed value is {"sealed":{"box":…,"digest":…}} and nothing else`)
	}
	return Sealed{Box: box, Digest: digest}, true, nil
}

// SensitiveView is how every view that is data (a diff's values, the
// policies' input, JSON answers) shows a sensitive value:
// {"sensitive": true, "digest": "hmac-sha256:…"} for a sealed one, so that
// a reader can still ask "is it set, did it change, is it the same on
// every node", and {"sensitive": true} for a value sensitive by nature
// (Attr.Sensitive) that is not sealed, which has no keyed digest. The box
// is left out: it differs per node for the same value, and a view has no
// use for it.
func SensitiveView(v any) map[string]any {
	if s, ok := v.(Sealed); ok {
		return map[string]any{"sensitive": true, "digest": s.Digest}
	}
	return map[string]any{"sensitive": true}
}

// IsSensitiveView reports whether v is a SensitiveView (as built, or as
// decoded from JSON), and its digest.
func IsSensitiveView(v any) (digest string, ok bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", false
	}
	if s, _ := m["sensitive"].(bool); !s {
		return "", false
	}
	digest, _ = m["digest"].(string)
	return digest, true
}

// IsSensitive reports whether an attribute value is sealed.
func IsSensitive(v any) bool {
	_, ok := v.(Sealed)
	return ok
}
