package server

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

const canary = "CANARY-srv-5e0a"

func sealedCatalog(t *testing.T) (*catalogs.Catalog, catalogs.Sealed) {
	t.Helper()
	sk, err := catalogs.NewSealKey(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	node, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sk.Seal(node.PublicKey(), "password = "+canary)
	if err != nil {
		t.Fatal(err)
	}
	return &catalogs.Catalog{Node: "web1", Version: "v1", Resources: []catalogs.Resource{
		{ID: "file:/etc/app.conf", Type: "file", Name: "/etc/app.conf", Source: "roles/web.toml:3",
			Attrs: map[string]any{"path": "/etc/app.conf", "mode": "0640", "content": s}},
		{ID: "file:/etc/motd", Type: "file", Name: "/etc/motd", Attrs: map[string]any{"path": "/etc/motd", "content": "hello"}},
	}}, s
}

// TestSensitiveViews holds the API's catalog view and the dashboard's
// resource attributes to the sensitive view: the digest, never the box.
func TestSensitiveViews(t *testing.T) {
	t.Parallel()
	cat, s := sealedCatalog(t)
	b, err := cat.Encode()
	if err != nil {
		t.Fatal(err)
	}
	view, err := catalogView(b)
	if err != nil {
		t.Fatal(err)
	}
	var attrs []string
	for _, r := range cat.Resources {
		for _, f := range resourceAttrs(&r) {
			attrs = append(attrs, f.Path+"="+f.Value)
		}
	}
	dash := strings.Join(attrs, "\n")
	for what, out := range map[string]string{"api catalog": string(view), "dashboard attrs": dash} {
		if strings.Contains(out, s.Box) || strings.Contains(out, canary) {
			t.Errorf("the %s holds the box or the value:\n%s", what, out)
		}
		if !strings.Contains(out, s.Digest) || !strings.Contains(out, "hello") {
			t.Errorf("the %s lacks the digest or a plain value:\n%s", what, out)
		}
	}
	if !strings.Contains(string(view), `"content":{"digest":"`+s.Digest+`","sensitive":true}`) {
		t.Errorf("api catalog = %s, want content as the sensitive view", view)
	}
	if !strings.Contains(dash, "content=(sensitive) "+s.Digest) {
		t.Errorf("dashboard attrs = %s, want content=(sensitive) DIGEST", dash)
	}
	// The catalog given is left as it was.
	if _, ok := cat.Resources[0].Attrs["content"].(catalogs.Sealed); !ok {
		t.Error("viewAttrs changed the catalog's own attributes")
	}
}

// TestStoreReportClearsSensitive: a sensitive change's values are cleared
// at the server's door, whatever an agent sent.
func TestStoreReportClearsSensitive(t *testing.T) {
	t.Parallel()
	r := &herdv1.Report{RunId: "r1", Events: []*herdv1.Event{{Id: "file:/etc/app.conf", Type: "file", Status: "changed",
		Changes: []*herdv1.Change{
			{Attr: "content", From: "old " + canary, To: "new " + canary, Diff: "+" + canary, Action: "update", Sensitive: true},
			{Attr: "mode", From: "0600", To: "0640", Action: "update"},
		}}}}
	rec, err := storeReport("web1", r)
	if err != nil {
		t.Fatal(err)
	}
	got := string(rec.Events[0].ChangesJSON)
	if strings.Contains(got, canary) || !strings.Contains(got, `"sensitive":true`) || !strings.Contains(got, "0640") {
		t.Errorf("stored changes = %s, want the sensitive one without values and the mode change whole", got)
	}
}
