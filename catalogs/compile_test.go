package catalogs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/tools/txtar"

	"github.com/herdcm/herd/facts"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

const exampleSite = "../examples/site"

// loadExample loads the example site with a pinned version, so that golden
// catalogs do not change with every commit.
func loadExample(t testing.TB) *Site {
	t.Helper()
	s, err := Load(context.Background(), exampleSite, LoadOptions{Version: "golden"})
	if err != nil {
		t.Fatalf("Load(%s): %v", exampleSite, err)
	}
	return s
}

func readFactsFile(t testing.TB, path string) facts.Facts {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := facts.FromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestGoldenCatalogs compiles the example site's nodes and compares the
// canonical catalogs with testdata/golden (refresh with -update).
func TestGoldenCatalogs(t *testing.T) {
	t.Parallel()
	s := loadExample(t)
	f := readFactsFile(t, exampleSite+"/tests/facts/debian12.json")
	for _, node := range []string{"web-01", "web-02", "db-01", "sandbox"} {
		t.Run(node, func(t *testing.T) {
			t.Parallel()
			cat, err := s.Compile(node, f)
			if err != nil {
				t.Fatalf("Compile(%q): %v", node, err)
			}
			b, err := cat.Encode()
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := json.Indent(&got, b, "", "  "); err != nil {
				t.Fatal(err)
			}
			got.WriteByte('\n')
			golden(t, filepath.Join("testdata", "golden", node+".json"), got.Bytes())
		})
	}
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./catalogs -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); run go test ./catalogs -update if the change is intended:\n%s", path, diff)
	}
}

// TestCompileDeterministic compiles the same node many times, concurrently,
// and expects byte-identical catalogs: map iteration order, goroutine
// scheduling and template caching must not leak into the output.
func TestCompileDeterministic(t *testing.T) {
	t.Parallel()
	s := loadExample(t)
	f := readFactsFile(t, exampleSite+"/tests/facts/debian12.json")
	first, err := s.Compile("web-01", f)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := first.Encode()
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 8 {
		wg.Go(func() {
			for range 25 {
				cat, err := s.Compile("web-01", f)
				if err != nil {
					errs <- err.Error()
					return
				}
				got, _ := cat.Encode()
				if !bytes.Equal(got, want) {
					errs <- "catalog bytes differ between compiles"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	// A second load of the same tree must give the same bytes too.
	again, err := loadExample(t).Compile("web-01", f)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Encode(); !bytes.Equal(got, want) {
		t.Error("catalog bytes differ between two loads of the same site")
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	s := loadExample(t)
	cat, err := s.Compile("db-01", readFactsFile(t, exampleSite+"/tests/facts/debian12.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := cat.Encode()
	back, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if diff := cmp.Diff(cat, back); diff != "" {
		t.Errorf("Decode(Encode(c)) differs (-want +got):\n%s", diff)
	}
	b2, _ := back.Encode()
	if !bytes.Equal(b, b2) {
		t.Error("Encode(Decode(b)) != b")
	}
	if Digest(b) != Digest(b2) {
		t.Error("digest changed over a round trip")
	}
	r, ok := back.Resource("user:demo-db")
	if !ok || !r.Bool("system") || r.String("shell") != "/usr/sbin/nologin" {
		t.Errorf("Resource(user:demo-db) = %+v, want the system account", r)
	}
}

// TestSiteTests runs the example site's own tests/.
func TestSiteTests(t *testing.T) {
	t.Parallel()
	s := loadExample(t)
	results := s.RunTests(nil)
	if len(results) == 0 {
		t.Fatal("the example site has no tests")
	}
	for _, r := range results {
		if !r.Passed() {
			t.Errorf("site test %q failed: %v", r.Test.Name, r.Failures)
		}
	}
}

// TestErrors loads each testdata/errors/*.txtar site, compiles the node its
// comment names (if any), and compares the complete error text, which names
// file:line:col for each mistake, with the archive's "want" file.
func TestErrors(t *testing.T) {
	t.Parallel()
	paths, _ := filepath.Glob("testdata/errors/*.txtar")
	if len(paths) == 0 {
		t.Fatal("no testdata/errors/*.txtar cases")
	}
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".txtar")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ar, err := txtar.ParseFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var want []byte
			for _, f := range ar.Files {
				if f.Name == "want" {
					want = f.Data
					continue
				}
				full := filepath.Join(dir, f.Name)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			node, factsJSON := "web-01", `{"os": {"family": "debian"}}`
			for _, line := range strings.Split(string(ar.Comment), "\n") {
				if v, ok := strings.CutPrefix(line, "node: "); ok {
					node = v
				}
				if v, ok := strings.CutPrefix(line, "facts: "); ok {
					factsJSON = v
				}
			}
			f, err := facts.FromJSON([]byte(factsJSON))
			if err != nil {
				t.Fatal(err)
			}
			var got error
			s, err := Load(context.Background(), dir, LoadOptions{Version: "test"})
			if err != nil {
				got = err
			} else {
				_, got = s.Compile(node, f)
			}
			if got == nil {
				t.Fatalf("site %s loaded and compiled %s without error, want:\n%s", name, node, want)
			}
			var ds Diagnostics
			if !errors.As(got, &ds) {
				t.Fatalf("error %v is %T, want Diagnostics", got, got)
			}
			gotText := got.Error() + "\n"
			if *update {
				for i := range ar.Files {
					if ar.Files[i].Name == "want" {
						ar.Files[i].Data = []byte(gotText)
					}
				}
				if err := os.WriteFile(p, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(string(want), gotText); diff != "" {
				t.Errorf("errors differ (-want +got):\n%s", diff)
			}
		})
	}
}
