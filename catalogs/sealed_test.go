package catalogs

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"
)

func testSealKey(t testing.TB, seed byte) *SealKey {
	t.Helper()
	k, err := NewSealKey(bytes.Repeat([]byte{seed}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testNodeKey(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := testSealKey(t, 1)
	node, other := testNodeKey(t), testNodeKey(t)
	for _, v := range []any{
		"hunter2", "", int64(42), true,
		[]string{"a", "b"}, map[string]string{"DB_PASSWORD": "s3cret", "X": "y"},
		strings.Repeat("long\n", 10000),
	} {
		s, err := k.Seal(node.PublicKey(), v)
		if err != nil {
			t.Fatalf("Seal(%#v): %v", v, err)
		}
		again, err := k.Seal(node.PublicKey(), v)
		if err != nil {
			t.Fatal(err)
		}
		if s != again {
			t.Errorf("Seal(%#v) is not deterministic", v)
		}
		got, err := s.Open(node)
		if err != nil {
			t.Fatalf("Open(Seal(%#v)): %v", v, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("Open(Seal(%#v)) = %#v", v, got)
		}
		if _, err := s.Open(other); err == nil {
			t.Errorf("another node opened the value sealed for %#v", v)
		}
		if str, ok := v.(string); ok && len(str) > 3 && strings.Contains(s.Box+s.Digest, str) {
			t.Errorf("the sealed form carries the plain value %q", str)
		}
		// The digest is the node's business no more than the value's: the same
		// value has the same digest for every node, and another value another.
		o, err := k.Seal(other.PublicKey(), v)
		if err != nil {
			t.Fatal(err)
		}
		if o.Digest != s.Digest || o.Box == s.Box {
			t.Errorf("sealing %#v for two nodes: digests %s/%s, boxes equal %v", v, s.Digest, o.Digest, o.Box == s.Box)
		}
	}
	a, _ := k.Seal(node.PublicKey(), "one")
	b, _ := k.Seal(node.PublicKey(), "two")
	if a.Digest == b.Digest || a.Box == b.Box {
		t.Error("two values sealed alike")
	}
	// Another server key gives other digests: nobody without the key can
	// test a guess against one.
	c, _ := testSealKey(t, 2).Seal(node.PublicKey(), "one")
	if c.Digest == a.Digest {
		t.Error("the digest does not depend on the server's key")
	}
}

func TestSealedTampered(t *testing.T) {
	k := testSealKey(t, 1)
	node := testNodeKey(t)
	s, err := k.Seal(node.PublicKey(), "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	box, _ := base64.StdEncoding.DecodeString(s.Box)
	for i := range box {
		b := bytes.Clone(box)
		b[i] ^= 1
		if _, err := (Sealed{Box: base64.StdEncoding.EncodeToString(b)}).Open(node); err == nil {
			t.Fatalf("a box altered at byte %d opened", i)
		}
	}
	if _, err := k.Seal(node.PublicKey(), s); err == nil {
		t.Error("a sealed value was sealed again")
	}
	if _, err := k.Seal(nil, "x"); err == nil {
		t.Error("sealed to no key")
	}
	if _, err := NewSealKey([]byte("short")); err == nil {
		t.Error("a short key was accepted")
	}
}

func TestSealedInCatalog(t *testing.T) {
	k := testSealKey(t, 1)
	node := testNodeKey(t)
	s, err := k.Seal(node.PublicKey(), "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	c := &Catalog{Node: "web-01", Version: "v1", Resources: []Resource{{
		ID: "file:/etc/app.conf", Type: "file", Name: "/etc/app.conf", Source: "roles/web.toml:3",
		Attrs: map[string]any{"content": s, "mode": "0600", "environment": map[string]string{"sealed": "not a sealed value"}},
	}}}
	enc, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(enc, []byte("hunter2")) {
		t.Fatal("the encoded catalog carries the plain value")
	}
	dec, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := dec.Resources[0].Attrs["content"].(Sealed)
	if !ok || got != s {
		t.Fatalf("decoded content = %#v, want %#v", dec.Resources[0].Attrs["content"], s)
	}
	if !IsSensitive(got) || IsSensitive(dec.Resources[0].Attrs["mode"]) {
		t.Error("IsSensitive is wrong")
	}
	if _, ok := dec.Resources[0].Attrs["environment"].(map[string]string); !ok {
		t.Errorf("a table with a key named sealed decoded as %T", dec.Resources[0].Attrs["environment"])
	}
	again, err := dec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, again) {
		t.Errorf("encode(decode(x)) != x:\n%s\n%s", enc, again)
	}
	for _, bad := range []string{
		`{"sealed":{"box":"x"}}`,
		`{"sealed":{"box":"x","digest":"y","z":"w"}}`,
		`{"sealed":{"box":1,"digest":"y"}}`,
	} {
		in := strings.Replace(string(enc), `{"sealed":{"box":"`+s.Box+`","digest":"`+s.Digest+`"}}`, bad, 1)
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode accepted a malformed sealed value %s", bad)
		}
	}
	if got := s.String(); got != SensitiveText {
		t.Errorf("String() = %q", got)
	}
}

func FuzzSealedOpen(f *testing.F) {
	k := testSealKey(f, 1)
	node := testNodeKey(f)
	s, err := k.Seal(node.PublicKey(), map[string]string{"a": "b"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Box)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, box string) {
		v, err := Sealed{Box: box}.Open(node)
		if err == nil && box != s.Box {
			t.Fatalf("an unsealed box %q opened to %#v", box, v)
		}
	})
}
