package agent

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/catalogs"
)

// canary is the plain secret of these tests: it must appear in no event,
// report, log line or error, only in what the type was handed.
const canary = "CANARY-s3cr3t-7d1f"

// leakyType is a hostile resource type: it puts the plain values it is
// handed everywhere it can (change values under its own names, diffs,
// output, logs at every level, errors, panics) and never marks a change
// sensitive. The engine must redact it all by construction.
type leakyType struct {
	mu   sync.Mutex
	saw  map[string]string // resource id → the content it was handed
	host map[string]string
}

func (l *leakyType) Check(_ context.Context, h *resources.Host, r *catalogs.Resource) (*resources.Plan, error) {
	content := r.String("content")
	l.mu.Lock()
	defer l.mu.Unlock()
	l.saw[r.ID] = content
	h.Log.Debug("checking with "+content, "resource", r.ID, "content", content, "output", "x", "env", []string{content})
	h.Log.Info("checking", slog.Group("g", slog.String("v", "before "+content+" after")))
	switch r.String("mode") {
	case "fail":
		return nil, fmt.Errorf("cannot write %q", content)
	case "panic":
		panic("value " + content)
	}
	if l.host[r.ID] == content {
		return &resources.Plan{Resource: r}, nil
	}
	return &resources.Plan{Resource: r, Changes: []resources.Change{
		{Attr: "mode", From: "0600", To: r.String("mode"), Action: resources.Update},
		{Attr: "content", From: l.host[r.ID], To: content, Diff: "-old\n+" + content, Action: resources.Update},
		{Attr: "unit", Diff: "Environment=X=" + content, Action: resources.Update},
		{Attr: "owner", From: "root", To: "x" + content, Action: resources.Update},
	}}, nil
}

func (l *leakyType) Apply(_ context.Context, h *resources.Host, p *resources.Plan) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	h.Log.Warn("applied", "resource", p.Resource.ID, "output", p.Resource.String("content"))
	p.Output = "echo: " + p.Resource.String("content")
	l.host[p.Resource.ID] = p.Resource.String("content")
	return nil
}

func newNodeKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSealKey(t *testing.T) *catalogs.SealKey {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	k, err := catalogs.NewSealKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seal(t *testing.T, k *catalogs.SealKey, node *ecdh.PrivateKey, v any) catalogs.Sealed {
	t.Helper()
	s, err := k.Seal(node.PublicKey(), v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConvergeSealed(t *testing.T) {
	t.Parallel()
	sk := newSealKey(t)
	key, other := newNodeKey(t), newNodeKey(t)
	res := func(id, mode string, content any) catalogs.Resource {
		return catalogs.Resource{ID: "file:" + id, Type: "file", Name: id, Attrs: map[string]any{"path": id, "mode": mode, "content": content}}
	}
	for _, tc := range []struct {
		name     string
		noop     bool
		key      *ecdh.PrivateKey
		r        catalogs.Resource
		status   Status
		errHas   string
		plainSaw bool // the type was handed the plain value
	}{
		{name: "apply", key: key, r: res("/a", "0644", seal(t, sk, key, canary)), status: Changed, plainSaw: true},
		{name: "noop", noop: true, key: key, r: res("/a", "0644", seal(t, sk, key, canary)), status: Changed, plainSaw: true},
		{name: "check error quotes the value", key: key, r: res("/a", "fail", seal(t, sk, key, canary)), status: Failed, errHas: "cannot write \"(sensitive)\"", plainSaw: true},
		{name: "panic quotes the value", key: key, r: res("/a", "panic", seal(t, sk, key, canary)), status: Failed, errHas: "panic: value (sensitive)", plainSaw: true},
		{name: "sealed to another node", key: key, r: res("/a", "0644", seal(t, sk, other, canary)), status: Failed, errHas: "opening sealed attribute content: sealed to another key: re-enroll or wait for the server to re-seal"},
		{name: "no node key", r: res("/a", "0644", seal(t, sk, key, canary)), status: Failed, errHas: "this agent has no node key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaky := &leakyType{saw: map[string]string{}, host: map[string]string{}}
			cat := &catalogs.Catalog{Node: "n", Resources: []catalogs.Resource{
				tc.r,
				{ID: "file:/plain", Type: "file", Name: "/plain", Attrs: map[string]any{"path": "/plain", "mode": "0644", "content": "hello world"}},
			}}
			before, err := cat.Encode()
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			var emitted []Event
			events := Converge(context.Background(), &resources.Host{Root: t.TempDir(), Log: log}, cat, ConvergeOptions{
				Noop: tc.noop, NodeKey: tc.key, Types: map[string]resources.Type{"file": leaky},
				Emit: func(e Event) { emitted = append(emitted, e) },
			})
			ev := events[0]
			if ev.Status != tc.status || !strings.Contains(ev.Error, tc.errHas) {
				t.Errorf("event = %s %q, want %s with %q", ev.Status, ev.Error, tc.status, tc.errHas)
			}
			if got := events[1].Status; got != Changed {
				t.Errorf("the plain resource: %s, want changed (a sealed value fails its own resource only)", got)
			}
			if got := leaky.saw[tc.r.ID] == canary; got != tc.plainSaw {
				t.Errorf("the type was handed the plain value: %v, want %v (saw %q)", got, tc.plainSaw, leaky.saw[tc.r.ID])
			}
			after, err := cat.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("the catalog changed: the opened values must live in a copy")
			}
			if tc.status == Changed {
				// mode is a plain attribute: it shows; content, the
				// derived unit and a change holding the value do not.
				want := map[string]bool{"mode": false, "content": true, "unit": true, "owner": true}
				for _, c := range ev.Changes {
					if c.Sensitive != want[c.Attr] {
						t.Errorf("change %s: sensitive %v, want %v", c.Attr, c.Sensitive, want[c.Attr])
					}
				}
				if !tc.noop && !strings.Contains(ev.Output, catalogs.SensitiveText) {
					t.Errorf("output = %q, want it hidden", ev.Output)
				}
			}
			r := &Report{Events: events}
			for _, e := range events {
				r.Summary.add(e)
			}
			report, _ := json.Marshal(r)
			emits, _ := json.Marshal(emitted)
			spooled, err := json.Marshal(r.Proto())
			if err != nil {
				t.Fatal(err)
			}
			for what, text := range map[string]string{"report": string(report), "emitted events": string(emits), "wire report": string(spooled), "logs": logs.String()} {
				if strings.Contains(text, canary) {
					t.Errorf("the %s hold the canary:\n%s", what, text)
				}
			}
			if tc.plainSaw && !strings.Contains(logs.String(), catalogs.SensitiveText) {
				t.Errorf("logs do not say (sensitive):\n%s", logs.String())
			}
		})
	}
}

// TestConvergeSealedRealTypes runs the real file and exec types with
// sealed values: the file gets the plain content, the exec its sealed
// environment; neither shows in the events.
func TestConvergeSealedRealTypes(t *testing.T) {
	t.Parallel()
	sk := newSealKey(t)
	key := newNodeKey(t)
	root := t.TempDir()
	cat := &catalogs.Catalog{Node: "n", Resources: []catalogs.Resource{
		{ID: "exec:echo", Type: "exec", Name: "echo", Attrs: map[string]any{
			"command": []string{"/usr/bin/env"},
			"env":     seal(t, sk, key, map[string]string{"PASSWORD": canary}),
		}},
		{ID: "file:/app.conf", Type: "file", Name: "/app.conf", Attrs: map[string]any{
			"path": "/app.conf", "mode": "0640",
			"content": seal(t, sk, key, "password = "+canary+"\n"),
		}},
	}}
	stateDir := filepath.Join(t.TempDir(), "state")
	st, err := OpenState(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := newRunHost(root, st, nil, cat, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	run := func() []Event {
		return Converge(context.Background(), h, cat, ConvergeOptions{NodeKey: key})
	}
	events := run()
	for _, e := range events {
		if e.Status != Changed {
			t.Fatalf("%s: %s %s", e.ID, e.Status, e.Error)
		}
	}
	if !strings.HasPrefix(events[0].Output, catalogs.SensitiveText) {
		t.Errorf("the exec's output = %q, want it hidden (env prints the sealed environment)", events[0].Output)
	}
	gotb, err := os.ReadFile(filepath.Join(root, "app.conf"))
	got := string(gotb)
	if err != nil || got != "password = "+canary+"\n" {
		t.Fatalf("the managed file = %q, %v; want the plain content", got, err)
	}
	// A changed secret (rotation): the diff of the file is never shown.
	cat.Resources[1].Attrs["content"] = seal(t, sk, key, "password = "+canary+"-new\n")
	events = append(events, run()...)
	b, _ := json.Marshal(events)
	if strings.Contains(string(b), canary) {
		t.Fatalf("events hold the canary:\n%s", b)
	}
	// The old content was backed up, 0600 although the file was 0640,
	// and the backup is the only copy outside the managed file.
	backups, err := st.Backups(context.Background(), "/app.conf")
	if err != nil || len(backups) != 1 {
		t.Fatalf("backups = %v, %v; want the replaced content", backups, err)
	}
	fi, err := os.Stat(filepath.Join(StateDir(stateDir).Content(), strings.TrimPrefix(backups[0].Digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the backup's mode = %v, want 0600", fi.Mode().Perm())
	}
	var sawContent bool
	for _, e := range events {
		for _, c := range e.Changes {
			if c.Attr == "content" {
				sawContent = true
				if !c.Sensitive {
					t.Errorf("%s content change not sensitive: %+v", e.ID, c)
				}
			}
		}
	}
	if !sawContent {
		t.Errorf("no content change in %s", b)
	}
}

func TestOpenSealedNothingSensitive(t *testing.T) {
	// Not parallel: AllocsPerRun refuses to run beside other tests.
	r := &catalogs.Resource{ID: "file:/a", Type: "file", Attrs: map[string]any{"path": "/a", "content": "x"}}
	got, sc, err := openSealed(r, nil)
	if got != r || sc != nil || err != nil {
		t.Errorf("openSealed(plain) = %p, %v, %v; want the same resource, no secrets", got, sc, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = openSealed(r, nil) }); n != 0 {
		t.Errorf("openSealed of a plain resource allocates %v times, want 0", n)
	}
}

func TestRedactHealth(t *testing.T) {
	t.Parallel()
	sk := newSealKey(t)
	key := newNodeKey(t)
	cat := &catalogs.Catalog{Resources: []catalogs.Resource{
		{ID: "service:api", Type: "service", Name: "api", Attrs: map[string]any{"name": "api", "env": seal(t, sk, key, map[string]string{"TOKEN": canary})}},
		{ID: "service:web", Type: "service", Name: "web", Attrs: map[string]any{"name": "web"}},
	}}
	hs := []ServiceHealth{
		{Name: "api", Health: "unhealthy", Detail: "exited 1; log: bad token " + canary},
		{Name: "web", Health: "unhealthy", Detail: "exited 1; log: CANARY-s3cr3t-7d1f is not a token"},
	}
	redactHealth(hs, cat, key)
	if want := "exited 1; log: bad token (sensitive)"; hs[0].Detail != want {
		t.Errorf("sensitive service's detail = %q, want %q", hs[0].Detail, want)
	}
	if !strings.Contains(hs[1].Detail, canary) {
		t.Errorf("a plain service's detail was changed: %q", hs[1].Detail)
	}
}

// TestTrimBackups: the oldest backups of a path beyond the kept number go,
// with their contents, unless a kept backup shares the content.
func TestTrimBackups(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	st, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	save := func(path, content string) string {
		t.Helper()
		d, err := st.Save(ctx, path, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	shared := save("/a", "shared") // the oldest of /a, and also kept for /b
	var olds []string
	for i := range 3 {
		olds = append(olds, save("/a", fmt.Sprintf("old secret %d", i)))
	}
	for i := range 3 {
		save("/a", fmt.Sprintf("kept %d", i))
	}
	save("/b", "shared")
	if err := st.TrimBackups(ctx, 3); err != nil {
		t.Fatal(err)
	}
	a, _ := st.Backups(ctx, "/a")
	b, _ := st.Backups(ctx, "/b")
	if len(a) != 3 || len(b) != 1 {
		t.Errorf("kept %d backups of /a and %d of /b, want 3 and 1", len(a), len(b))
	}
	exists := func(d string) bool {
		_, err := os.Stat(filepath.Join(StateDir(dir).Content(), strings.TrimPrefix(d, "sha256:")))
		return err == nil
	}
	for _, d := range olds {
		if exists(d) {
			t.Errorf("the content of a trimmed backup %s is still there", d)
		}
	}
	if !exists(shared) {
		t.Error("a content a kept backup names was deleted")
	}
}

// FuzzScrub: whatever the secret and the text around it, no scrubbed
// text holds the secret, unless the secret is part of the replacement
// itself.
func FuzzScrub(f *testing.F) {
	for _, seed := range [][2]string{
		{"hunter22", "password=hunter22 and hunter22"},
		{"e)ab", "x e)abab"},
		{"sens", "sensitive data"},
		{"line two\nline three", "diff:\n+line two\n+line three\n"},
		{"abcabc", "abcabcabcabc"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, secret, text string) {
		sc := &secrets{}
		sc.add(secret)
		got := sc.scrub(text)
		for _, p := range sc.plains {
			if strings.Contains(got, p) && !strings.Contains(catalogs.SensitiveText, p) && len(text) < 1<<12 {
				t.Errorf("scrub(%q) with secret %q = %q: still holds %q", text, secret, got, p)
			}
		}
	})
}
