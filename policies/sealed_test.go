package policies

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/herdcm/herd/catalogs"
)

// TestGateSeesSealedAsSensitive holds the policies' input to the
// sensitive view of a sealed value: a gate can ask whether it is set and
// whether it changed (by digest), never read the value or its box.
func TestGateSeesSealedAsSensitive(t *testing.T) {
	t.Parallel()
	sk, err := catalogs.NewSealKey(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	node, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(v string) catalogs.Sealed {
		s, err := sk.Seal(node.PublicKey(), v)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	oldV, newV := seal("CANARY-old-value"), seal("CANARY-new-value")
	in := testInput()
	in.Catalog.Resources[0].Attrs["content"] = newV
	in.Previous = &catalogs.Catalog{Node: "web-01", Version: "v1", Resources: []catalogs.Resource{in.Catalog.Resources[0]}}
	in.Previous.Resources[0].Attrs = map[string]any{"path": "/etc/motd", "mode": "0666", "content": oldV}
	in.Change = catalogs.Diff(in.Previous, in.Catalog, nil)
	g := mustPrepare(t, Options{}, "policies/gate.rego", `package herd.gate
warn contains json.marshal(r.attrs.content) if {
	some r in input.catalog.resources
	r.attrs.content.sensitive
}
warn contains sprintf("%s rotated", [c.id]) if {
	some c in input.change.changed
	some a in c.attrs
	a.to.sensitive
	a.from.digest != a.to.digest
}
warn contains json.marshal(input.previous) if true
`)
	d, err := g.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, m := range d.Warn {
		all.WriteString(m.Message + "\n")
	}
	want := `{"digest":"` + newV.Digest + `","sensitive":true}`
	for _, s := range []string{want, "file:/etc/motd rotated"} {
		if !strings.Contains(all.String(), s) {
			t.Errorf("warnings lack %q:\n%s", s, all.String())
		}
	}
	for _, leak := range []string{oldV.Box, newV.Box, "CANARY"} {
		if strings.Contains(all.String(), leak) {
			t.Errorf("warnings hold %q:\n%s", leak, all.String())
		}
	}
}
