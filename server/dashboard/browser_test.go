package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herdcm/herd/server/dashboard"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// browser is the one headless Chromium the package's tests share (a
// browser takes a second or two to start); nil when there is none.
var (
	browser    context.Context
	browserErr error
)

// TestMain starts Chromium once for the browser tests, when the machine
// has it.
func TestMain(m *testing.M) {
	var cancel func()
	browser, cancel, browserErr = startBrowser()
	code := m.Run()
	if cancel != nil {
		cancel()
	}
	os.Exit(code)
}

func startBrowser() (context.Context, func(), error) {
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return nil, nil, errors.New("no chromium on PATH (Debian: apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// Tests run as root, where Chromium's sandbox does not start.
		chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	// Starting the browser now: a failure is the browser's, not a test's.
	if err := chromedp.Do(ctx); err != nil {
		cancelCtx()
		cancelAlloc()
		return nil, nil, fmt.Errorf("starting %s: %w", path, err)
	}
	return ctx, func() { cancelCtx(); cancelAlloc() }, nil
}

// needBrowser returns a new tab of the shared browser. Without Chromium
// the test skips, except under CI (CI=true), where it fails: CI installs
// it.
func needBrowser(t *testing.T) context.Context {
	t.Helper()
	if browserErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test under CI: %v", browserErr)
		}
		t.Skipf("browser test: %v", browserErr)
	}
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	// Open the tab now, on the tab's own context: a tab opened by a
	// step's shorter-lived context would close when that step ends.
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("opening a browser tab: %v", err)
	}
	return tab
}

// artifacts is where screenshots go: $HERD_TEST_ARTIFACTS/<test> when
// set, so that CI keeps them, else the test's temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	base := os.Getenv("HERD_TEST_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the whole page as name.png.
func screenshot(t *testing.T, tab context.Context, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG; less is JPEG
	if err != nil {
		t.Fatalf("screenshot of %s: %v", name, err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// TestBrowserPages runs a real fleet (a real server, two real agents over
// real TLS) and walks the dashboard in headless Chromium as an operator
// would: the overview lists the nodes, a node's link opens its page with
// its facts and catalog, a run's link its run with the changes made, the
// filter narrows the list, and the site and rollout pages show the
// served version. Each page is kept as a screenshot.
func TestBrowserPages(t *testing.T) {
	t.Parallel()
	tab := needBrowser(t)
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "hello {{ .node }}\n"
`,
	})
	f := fleet.NewFleet(t, site, 2)
	f.AwaitConverged(60*time.Second, nil)
	srv := httptest.NewServer(dashboard.New(f.Server.Dashboard(), dashboard.Options{}))
	t.Cleanup(srv.Close)
	dir := artifacts(t)

	do(t, tab, "overview", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(css(`#nodes`)))
	nodes := get(t, tab, chromedp.Text(css(`#nodes tbody`)))
	for _, want := range []string{"node-1", "node-2", "changed"} {
		if !strings.Contains(nodes, want) {
			t.Errorf("overview lacks %q:\n%s", want, nodes)
		}
	}
	// The stylesheet loads under the page's CSP.
	if header := get(t, tab, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("header")).backgroundColor`)); header != "rgb(32, 48, 63)" {
		t.Errorf("header background = %q, want the stylesheet's rgb(32, 48, 63)", header)
	}
	screenshot(t, tab, dir, "overview")

	do(t, tab, "overview → node", chromedp.Click(css(`a.node[href="/nodes/node-1"]`)), chromedp.WaitVisible(css(`#facts`)))
	if title := get(t, tab, chromedp.Text(css(`h1`))); title != "node-1" {
		t.Errorf("node page title = %q, want node-1", title)
	}
	if facts := get(t, tab, chromedp.Text(css(`#facts`))); !strings.Contains(facts, "os.") {
		t.Errorf("node page facts lack os.*:\n%s", facts)
	}
	if catalog := get(t, tab, chromedp.Text(css(`#catalog`))); !strings.Contains(catalog, "file:/etc/motd") || !strings.Contains(catalog, "hello node-1") {
		t.Errorf("node page catalog lacks file:/etc/motd with its content:\n%s", catalog)
	}
	if reports := get(t, tab, chromedp.Text(css(`#reports`))); !strings.Contains(reports, "apply") || !strings.Contains(reports, "file:/etc/motd") {
		t.Errorf("node page reports lack the applying run:\n%s", reports)
	}
	screenshot(t, tab, dir, "node")

	do(t, tab, "node → run", chromedp.Click(css(`a.run`)), chromedp.WaitVisible(css(`#summary`)))
	if summary := get(t, tab, chromedp.Text(css(`#summary`))); !strings.Contains(summary, "apply") || !strings.Contains(summary, "1 changed") {
		t.Errorf("run page summary = %q, want an apply with 1 changed", summary)
	}
	if events := get(t, tab, chromedp.Text(css(`main`))); !strings.Contains(events, "file:/etc/motd") {
		t.Errorf("run page lacks the motd's event:\n%s", events)
	}
	if back := get(t, tab, chromedp.AttributeValue(css(`h1 a`), "href")); back.Value != "/nodes/node-1" {
		t.Errorf("run page links back to %q, want /nodes/node-1", back.Value)
	}
	screenshot(t, tab, dir, "run")

	do(t, tab, "filter",
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(css(`#where`)),
		chromedp.SetValue(css(`#where`), `name == "node-2"`),
		chromedp.Click(css(`#filter`)),
		// The form's answer is a new page: wait for it, not for the
		// count of the page that is still showing.
		chromedp.WaitVisible(chromedp.Search(`//p[@id="count" and contains(., " of 1")]`)),
	)
	count := get(t, tab, chromedp.Text(css(`#count`)))
	nodes = get(t, tab, chromedp.Text(css(`#nodes tbody`)))
	if count != "nodes 1–1 of 1" || !strings.Contains(nodes, "node-2") || strings.Contains(nodes, "node-1") {
		t.Errorf("filtered by name == \"node-2\": count %q, rows:\n%s", count, nodes)
	}
	screenshot(t, tab, dir, "overview-filtered")

	do(t, tab, "site", chromedp.Click(css(`header a[href="/site"]`)), chromedp.WaitVisible(css(`#served`)))
	served := get(t, tab, chromedp.Text(css(`#served`)))
	if want := f.Version(); served != want {
		t.Errorf("site page serves %q, want %q", served, want)
	}
	screenshot(t, tab, dir, "site")

	do(t, tab, "rollouts", chromedp.Click(css(`header a[href="/rollouts"]`)), chromedp.WaitVisible(css(`main h1`)))
	if rollouts := get(t, tab, chromedp.Text(css(`main`))); !strings.Contains(rollouts, "Rollouts") || !strings.Contains(rollouts, served) {
		t.Errorf("rollouts page lacks the served version's rollout:\n%s", rollouts)
	}
	screenshot(t, tab, dir, "rollouts")
}

// stepTimeout bounds each browser step, so that a page that never comes
// says which step waited for it.
const stepTimeout = 20 * time.Second

// css is a CSS selector (querySelector), as the tests write them.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// do runs browser steps, failing the test with what it was doing.
func do(t *testing.T, tab context.Context, doing string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", doing, err)
	}
}

// get runs one browser action and returns its value.
func get[T any](t *testing.T, tab context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return v
}
