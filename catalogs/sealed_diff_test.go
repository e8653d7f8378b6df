package catalogs

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"strings"
	"testing"
)

// TestDiffSealed holds diffs, their grouping and their text to the
// digests of sealed values: "(sensitive) changed", never a value, a box
// or a unified diff of one.
func TestDiffSealed(t *testing.T) {
	t.Parallel()
	const old, new = "CANARY-old-4b1e", "CANARY-new-93ac"
	k := testSealKey(t, 7)
	web1, web2 := testNodeKey(t), testNodeKey(t)
	reenrolled := testNodeKey(t)
	seal := func(node *ecdh.PublicKey, v string) Sealed {
		t.Helper()
		s, err := k.Seal(node, v)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cat := func(node string, content any) *Catalog {
		return &Catalog{Node: node, Resources: []Resource{{ID: "file:/etc/app.conf", Type: "file", Name: "/etc/app.conf",
			Attrs: map[string]any{"path": "/etc/app.conf", "content": content, "mode": "0640"}}}}
	}
	for _, tc := range []struct {
		name       string
		prev, next *Catalog
		want       string // in the text of the change
	}{
		{name: "rotated", prev: cat("web1", seal(web1.PublicKey(), old)), next: cat("web1", seal(web1.PublicKey(), new)), want: "content: (sensitive) changed"},
		{name: "re-sealed to a new node key", prev: cat("web1", seal(web1.PublicKey(), old)), next: cat("web1", seal(reenrolled.PublicKey(), old)), want: "content: (sensitive) re-sealed, value unchanged"},
		{name: "plain to sealed", prev: cat("web1", "password = "+old+"\n"), next: cat("web1", seal(web1.PublicKey(), new)), want: "content: (sensitive) changed"},
		{name: "added", prev: &Catalog{Node: "web1"}, next: cat("web1", seal(web1.PublicKey(), new)), want: "+ file:/etc/app.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, brief := range []bool{false, true} {
				var ch Change
				if brief {
					ch = DiffBrief(tc.prev, tc.next)
				} else {
					ch = Diff(tc.prev, tc.next, nil)
				}
				if ch.Empty() {
					t.Fatal("no change")
				}
				var text bytes.Buffer
				if err := WriteChanges(&text, GroupChanges(map[string]Change{"web1": ch}), WriteOptions{}); err != nil {
					t.Fatal(err)
				}
				js, err := json.Marshal(ch)
				if err != nil {
					t.Fatal(err)
				}
				// A stored change read back shows the same.
				var back Change
				if err := json.Unmarshal(js, &back); err != nil {
					t.Fatal(err)
				}
				var again bytes.Buffer
				if err := WriteChanges(&again, GroupChanges(map[string]Change{"web1": back}), WriteOptions{}); err != nil {
					t.Fatal(err)
				}
				box := ""
				if s, ok := tc.next.Resources[0].Attrs["content"].(Sealed); ok {
					box = s.Box
				}
				for what, out := range map[string]string{"text": text.String(), "json": string(js), "text from json": again.String()} {
					// "password = " is the plain side's: a plain value
					// becoming sealed is sensitive on both sides.
					for _, leak := range []string{old, new, box} {
						if strings.Contains(out, leak) {
							t.Errorf("brief=%v %s holds %q:\n%s", brief, what, leak, out)
						}
					}
				}
				for what, out := range map[string]string{"text": text.String(), "text from json": again.String()} {
					if !strings.Contains(out, tc.want) {
						t.Errorf("brief=%v %s = %q, want %q", brief, what, out, tc.want)
					}
				}
				if !strings.Contains(string(js), `"sensitive":true`) {
					t.Errorf("brief=%v json = %s, want the sensitive view", brief, js)
				}
			}
		})
	}

	// Nodes sharing a secret make one group: the view is the digest, not
	// the per-node box.
	ch1 := Diff(cat("web1", seal(web1.PublicKey(), old)), cat("web1", seal(web1.PublicKey(), new)), nil)
	ch2 := Diff(cat("web2", seal(web2.PublicKey(), old)), cat("web2", seal(web2.PublicKey(), new)), nil)
	if g := GroupChanges(map[string]Change{"web1": ch1, "web2": ch2}); len(g) != 1 {
		t.Errorf("GroupChanges of one rotated secret on two nodes = %d groups, want 1", len(g))
	}
}
