package catalogs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func res(id, source string, attrs map[string]any, require ...string) Resource {
	typ, name, _ := SplitID(id)
	return Resource{ID: id, Type: typ, Name: name, Source: source, Attrs: attrs, Require: require}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	long1 := strings.Repeat("line one\n", 30)
	long2 := strings.Replace(long1, "line one\n", "line two\n", 1)
	files := map[string][]byte{
		"sha256:old": []byte("a\nb\nc\n"),
		"sha256:new": []byte("a\nB\nc\n"),
		"sha256:bin": []byte("a\x00b"),
	}
	content := func(d string) ([]byte, bool) { b, ok := files[d]; return b, ok }
	prev := &Catalog{Node: "web-01", Resources: []Resource{
		res("file:/etc/app", "roles/web.toml:3", map[string]any{"path": "/etc/app", "digest": "sha256:old", "source": "files/app"}),
		res("file:/etc/bin", "roles/web.toml:4", map[string]any{"path": "/etc/bin", "digest": "sha256:old"}),
		res("file:/etc/long", "roles/web.toml:5", map[string]any{"path": "/etc/long", "content": long1}),
		res("file:/etc/motd", "roles/web.toml:7", map[string]any{"path": "/etc/motd", "content": "hello\n", "mode": "0644"}),
		res("package:nginx", "roles/web.toml:1", map[string]any{"name": "nginx", "ensure": "1.24"}),
		res("service:old", "roles/web.toml:9", map[string]any{"name": "old"}, "package:nginx"),
		res("service:web", "roles/web.toml:11", map[string]any{"name": "web", "run": []string{"/bin/web"}}, "package:nginx"),
	}}
	next := &Catalog{Node: "web-01", Resources: []Resource{
		res("file:/etc/app", "roles/web.toml:3", map[string]any{"path": "/etc/app", "digest": "sha256:new", "source": "files/app"}),
		res("file:/etc/bin", "roles/web.toml:4", map[string]any{"path": "/etc/bin", "digest": "sha256:bin"}),
		res("file:/etc/long", "roles/web.toml:5", map[string]any{"path": "/etc/long", "content": long2}),
		// Moved in the role: its source changes, nothing else.
		res("file:/etc/motd", "roles/web.toml:70", map[string]any{"path": "/etc/motd", "content": "hello\n", "mode": "0644"}),
		res("file:/etc/new", "roles/web.toml:2", map[string]any{"path": "/etc/new", "content": long1}),
		res("package:nginx", "roles/web.toml:1", map[string]any{"name": "nginx", "ensure": "1.26"}),
		res("service:web", "roles/web.toml:11", map[string]any{"name": "web", "run": []string{"/bin/web", "-v"}}, "file:/etc/app", "package:nginx"),
	}}
	next.Resources[6].Notify = []string{"exec:x"}
	want := Change{
		Added: []ResourceChange{{ID: "file:/etc/new", Type: "file", Name: "/etc/new", Attrs: []AttrChange{
			{Name: "content"}, // too long to keep
			{Name: "path", To: "/etc/new"},
		}}},
		Removed: []ResourceChange{{ID: "service:old", Type: "service", Name: "old", Attrs: []AttrChange{
			{Name: "name", From: "old"},
			{Name: "require", From: []string{"package:nginx"}},
		}}},
		Changed: []ResourceChange{
			{ID: "file:/etc/app", Type: "file", Name: "/etc/app", Attrs: []AttrChange{
				{Name: "digest", From: "sha256:old", To: "sha256:new", Diff: "--- a/etc/app\n+++ b/etc/app\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
			}},
			// Binary content: the digests only.
			{ID: "file:/etc/bin", Type: "file", Name: "/etc/bin", Attrs: []AttrChange{
				{Name: "digest", From: "sha256:old", To: "sha256:bin"},
			}},
			{ID: "file:/etc/long", Type: "file", Name: "/etc/long", Attrs: []AttrChange{
				{Name: "content", Diff: "--- a/etc/long\n+++ b/etc/long\n@@ -1,4 +1,4 @@\n-line one\n+line two\n line one\n line one\n line one\n"},
			}},
			{ID: "package:nginx", Type: "package", Name: "nginx", Attrs: []AttrChange{
				{Name: "ensure", From: "1.24", To: "1.26"},
			}},
			{ID: "service:web", Type: "service", Name: "web", Attrs: []AttrChange{
				{Name: "notify", To: []string{"exec:x"}},
				{Name: "require", From: []string{"package:nginx"}, To: []string{"file:/etc/app", "package:nginx"}},
				{Name: "run", From: []string{"/bin/web"}, To: []string{"/bin/web", "-v"}},
			}},
		},
	}
	got := Diff(prev, next, content)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
	if got.Count() != 7 || got.Empty() {
		t.Errorf("Count() = %d, Empty() = %v; want 7, false", got.Count(), got.Empty())
	}

	// Without file contents: the digests, no diff.
	noContent := Diff(prev, next, nil)
	if d := noContent.Changed[0].Attrs[0]; d.Diff != "" || d.From != "sha256:old" {
		t.Errorf("Diff without contents: %+v, want digests only", d)
	}

	// Short inline content keeps its values beside its diff.
	a := &Catalog{Resources: []Resource{res("file:/m", "r:1", map[string]any{"content": "a\n"})}}
	b := &Catalog{Resources: []Resource{res("file:/m", "r:2", map[string]any{"content": "b\n"})}}
	if got, want := Diff(a, b, nil).Changed[0].Attrs[0], (AttrChange{Name: "content", From: "a\n", To: "b\n", Diff: "--- a/m\n+++ b/m\n@@ -1 +1 @@\n-a\n+b\n"}); !cmp.Equal(got, want) {
		t.Errorf("short content change (-want +got):\n%s", cmp.Diff(want, got))
	}

	// DiffBrief: the same changes without the text: short values kept,
	// long ones, content's and every unified diff left out.
	brief := DiffBrief(prev, next)
	if len(brief.Changed) != len(want.Changed) || len(brief.Added) != len(want.Added) || len(brief.Removed) != len(want.Removed) {
		t.Errorf("DiffBrief = %+v; want the changes of Diff", brief)
	}
	for _, rc := range brief.Changed {
		for _, ac := range rc.Attrs {
			if ac.Diff != "" {
				t.Errorf("DiffBrief %s %s has a diff: %q", rc.ID, ac.Name, ac.Diff)
			}
			if s, ok := ac.To.(string); ok && len(s) > maxShortValue {
				t.Errorf("DiffBrief %s %s keeps a long value", rc.ID, ac.Name)
			}
		}
	}
	if got, want := DiffBrief(a, b).Changed[0].Attrs[0], (AttrChange{Name: "content"}); !cmp.Equal(got, want) {
		t.Errorf("brief short content change (-want +got):\n%s", cmp.Diff(want, got))
	}
	if got := DiffBrief(nil, b).Added[0].Attrs[0]; got != (AttrChange{Name: "content"}) {
		t.Errorf("brief added content = %+v, want its name alone", got)
	}
	if got := Diff(nil, b, nil).Added[0].Attrs[0]; got != (AttrChange{Name: "content", To: "b\n"}) {
		t.Errorf("added short content = %+v, want its value", got)
	}

	// Source alone: no change. The same catalog: no change.
	if ch := Diff(prev, prev, content); !ch.Empty() {
		t.Errorf("Diff(prev, prev) = %+v, want empty", ch)
	}
	// Nothing before: everything added, sorted by id.
	all := Diff(nil, next, nil)
	if len(all.Added) != len(next.Resources) || len(all.Removed)+len(all.Changed) != 0 {
		t.Errorf("Diff(nil, next) = %+v, want %d added", all, len(next.Resources))
	}
	for i := 1; i < len(all.Added); i++ {
		if all.Added[i-1].ID >= all.Added[i].ID {
			t.Errorf("Diff(nil, next) not sorted: %s before %s", all.Added[i-1].ID, all.Added[i].ID)
		}
	}
}

// TestDiffUnsorted: a catalog decoded from elsewhere may list resources out
// of order or twice; Diff sorts and keeps the first.
func TestDiffUnsorted(t *testing.T) {
	t.Parallel()
	a := &Catalog{Resources: []Resource{
		res("package:b", "", map[string]any{"ensure": "1"}),
		res("package:a", "", map[string]any{"ensure": "1"}),
	}}
	b := &Catalog{Resources: []Resource{
		res("package:a", "", map[string]any{"ensure": "1"}),
		res("package:b", "", map[string]any{"ensure": "2"}),
		res("package:b", "", map[string]any{"ensure": "3"}),
	}}
	got := Diff(a, b, nil)
	want := Change{Changed: []ResourceChange{{ID: "package:b", Type: "package", Name: "b", Attrs: []AttrChange{{Name: "ensure", From: "1", To: "2"}}}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
}
