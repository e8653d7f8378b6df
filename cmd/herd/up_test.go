package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUp runs the README's main command in process: a server and an agent
// converge a sandbox from the example site with no failure; an edit to the
// site reaches the agent through Watch; cancelling (Ctrl-C) stops
// everything, the sandbox's service included.
func TestUp(t *testing.T) {
	testkit.NeedTools(t, "dpkg", "useradd")
	testkit.NeedRoot(t, "herd up converges packages and accounts in its sandbox")
	site := t.TempDir()
	if err := os.CopyFS(site, os.DirFS(exampleSite)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- up(ctx, &out, slog.New(slog.NewTextHandler(io.Discard, nil)), site, dir, "sandbox", time.Minute)
	}()
	await := func(what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("herd up never printed %q:\n%s", what, out.String())
			}
			select {
			case err := <-done:
				t.Fatalf("herd up ended: %v\n%s", err, out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	await("Look around")
	if !strings.Contains(out.String(), "0 failed, 0 skipped") {
		t.Fatalf("the first run had failures:\n%s", out.String())
	}
	root := filepath.Join(dir, "sandbox")
	conf := filepath.Join(root, "etc/herd-demo-web/app.conf")
	if b, err := os.ReadFile(conf); err != nil || !strings.Contains(string(b), "workers = 4") {
		t.Fatalf("app.conf = %q, %v", b, err)
	}
	// An edit converges again, by Watch.
	nodes := filepath.Join(site, "nodes.toml")
	b, _ := os.ReadFile(nodes)
	if err := os.WriteFile(nodes, []byte(strings.Replace(string(b), "workers = 4", "workers = 6", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(conf)
		if strings.Contains(string(b), "workers = 6") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edit did not converge; app.conf holds:\n%s\noutput:\n%s", b, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("herd up: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("herd up did not stop")
	}
	st, err := agent.OpenState(filepath.Join(root, "var/lib/herd"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := agent.NewServices(context.Background(), st, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if left := svc.Supervisor().List(); len(left) != 0 {
		t.Errorf("services left after herd up stopped: %+v", left)
	}
}
