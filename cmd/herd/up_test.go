package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/testkit"
)

// TestUp runs the README's main command in process: a server and an agent
// converge a sandbox from the example site with no failure; an edit to the
// site reaches the agent through Watch; cancelling (Ctrl-C) stops
// everything, the sandbox's service included.
func TestUp(t *testing.T) {
	// apt-get and gpgv: the web role installs a package by name from the
	// site's own signed apt repository.
	testkit.NeedTools(t, "dpkg", "useradd", "apt-get", "gpgv")
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
	var out testkit.SyncBuffer
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
	// awaitRE is await for a pattern.
	awaitRE := func(re *regexp.Regexp) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !re.MatchString(out.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("herd up never printed a line matching %s:\n%s", re, out.String())
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
	// The first run is summed up as every later run is; the edit it
	// suggests is the one made here, and it converges again, by Watch.
	first := regexp.MustCompile(`(?m)^converged sandbox in \S+: \d+ resources, .*, 0 failed, 0 skipped`)
	said := out.String()
	if n := len(first.FindAllString(said[:strings.Index(said, "Look around")], -1)); n != 1 {
		t.Errorf("herd up printed %d summaries of its first run, want 1:\n%s", n, out.String())
	}
	if hint := upEdit.command(site); !strings.Contains(out.String(), "\n  "+hint+"\n") {
		t.Errorf("herd up does not suggest %q:\n%s", hint, out.String())
	}
	nodes := filepath.Join(site, upEdit.file)
	b, _ := os.ReadFile(nodes)
	if strings.Count(string(b), upEdit.from) != 1 {
		t.Fatalf("%s holds %q %d times, want once: the suggested sed would not make one edit", nodes, upEdit.from, strings.Count(string(b), upEdit.from))
	}
	if err := os.WriteFile(nodes, []byte(strings.Replace(string(b), upEdit.from, upEdit.to, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(conf)
		if strings.Contains(string(b), upEdit.to) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edit did not converge; app.conf holds:\n%s\noutput:\n%s", b, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The edit went out as a rollout, printed stage by stage.
	// The edit went out as a rollout of the example site's two stages,
	// printed stage by stage: a rollout from the first version (not from
	// nothing), its canary done, then the whole rollout done.
	header := regexp.MustCompile(`(?m)^rollout (\d+): site \S+ ← sha256:\S+, stages canary → rest$`)
	awaitRE(header)
	id := header.FindStringSubmatch(out.String())[1]
	awaitRE(regexp.MustCompile(`(?m)^rollout ` + id + `: done$`))
	awaitRE(regexp.MustCompile(`(?m)^converged sandbox in \S+: \d+ resources, \d+ in sync, [1-9]\d* changed, 0 failed`))
	if !strings.Contains(out.String(), "  stage canary: done: healthy 1") {
		t.Errorf("herd up did not print the canary stage done:\n%s", out.String())
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

// TestRolloutProgress: herd up prints a new rollout with its stages, each
// stage when its state or counts move (and nothing when nothing moved),
// and how the rollout ends; strings from the site are escaped.
func TestRolloutProgress(t *testing.T) {
	t.Parallel()
	v1, v2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	rollout := func(id int64, state string, stages ...*herdv1.RolloutStage) *herdv1.Rollout {
		return &herdv1.Rollout{Id: id, Version: v2, PreviousVersion: v1, State: state, Stages: stages}
	}
	stage := func(name, state string, nodes int32, counts map[string]int32) *herdv1.RolloutStage {
		return &herdv1.RolloutStage{Name: name, State: state, Nodes: nodes, Counts: counts, BakeNs: int64(2 * time.Second)}
	}
	pending := map[string]int32{"pending": 1}
	tests := []struct {
		name      string
		prev, cur *herdv1.Rollout
		want      []string
	}{
		{
			name: "a new rollout",
			cur:  rollout(3, "running", stage("canary", "releasing", 1, map[string]int32{"released": 1}), stage("rest", "pending", 0, nil)),
			want: []string{
				"rollout 3: site sha256:222222222222 ← sha256:111111111111, stages canary → rest",
				"  stage canary: releasing: released 1",
				"rollout 3: running",
			},
		},
		{
			name: "the first version's rollout",
			cur:  &herdv1.Rollout{Id: 1, Version: v1, State: "running", Stages: []*herdv1.RolloutStage{stage("canary", "baking", 0, nil)}},
		},
		{
			name: "nothing moved",
			prev: rollout(3, "running", stage("canary", "releasing", 1, pending)),
			cur:  rollout(3, "running", stage("canary", "releasing", 1, pending)),
		},
		{
			name: "a stage bakes, the next waits for approval",
			prev: rollout(3, "running", stage("canary", "releasing", 1, pending), stage("rest", "pending", 4, nil)),
			cur:  rollout(3, "awaiting-approval", stage("canary", "baking", 1, map[string]int32{"healthy": 1}), stage("rest", "awaiting-approval", 4, map[string]int32{"pending": 4})),
			want: []string{
				"  stage canary: baking 2s: healthy 1",
				"  stage rest: awaiting-approval (herd rollout approve 3): pending 4",
				"rollout 3: awaiting-approval",
			},
		},
		{
			name: "halted, with an escaped reason",
			prev: rollout(3, "running", stage("canary", "releasing", 1, pending)),
			cur: &herdv1.Rollout{Id: 3, Version: v2, PreviousVersion: v1, State: "halted", Reason: "web-01" + hostile,
				Stages: []*herdv1.RolloutStage{stage("canary", "halted", 1, map[string]int32{"failed": 1})}},
			want: []string{
				"  stage canary: halted: failed 1",
				`rollout 3: halted: "web-01\x1b]0;owned\a\x1b[2J\u009b31m\rfake line …" (herd rollout status 3)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, rolloutProgress(tt.prev, tt.cur)); diff != "" {
				t.Errorf("rolloutProgress (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRunBesideStopsWithTheServer: herd up exits with the server's error
// when the server stops, cancelling the agent; Ctrl-C is a clean stop.
func TestRunBesideStopsWithTheServer(t *testing.T) {
	t.Parallel()
	listenErr := errors.New("accept tcp 127.0.0.1:1: use of closed network connection")
	tests := []struct {
		name    string
		server  func(chan error) // what the server does
		cancel  bool             // Ctrl-C
		wantErr string           // "" is no error
	}{
		{name: "listener failed", server: func(c chan error) { c <- listenErr }, wantErr: "herd server stopped: accept tcp"},
		{name: "stopped on its own", server: func(c chan error) { close(c) }, wantErr: "herd server stopped"},
		{name: "ctrl-c", server: func(chan error) {}, cancel: true},
		// The server serves until the context ends, so Ctrl-C closes
		// its channel too, whichever runBeside hears first.
		{name: "ctrl-c stops the server too", server: func(c chan error) { close(c) }, cancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srvErr := make(chan error, 1)
			agentStopped := make(chan struct{})
			agentRunning := make(chan struct{})
			run := func(ctx context.Context) error {
				close(agentRunning)
				<-ctx.Done()
				close(agentStopped)
				return ctx.Err()
			}
			done := make(chan error, 1)
			go func() { done <- runBeside(ctx, srvErr, run) }()
			<-agentRunning
			if tt.cancel {
				cancel()
			}
			tt.server(srvErr)
			select {
			case err := <-done:
				switch {
				case tt.wantErr == "" && err != nil:
					t.Fatalf("runBeside = %v, want nil", err)
				case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
					t.Fatalf("runBeside = %v, want an error with %q", err, tt.wantErr)
				}
				if tt.wantErr != "" && strings.Contains(tt.wantErr, "accept") && !errors.Is(err, listenErr) {
					t.Errorf("runBeside = %v, want it to wrap the server's error", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("runBeside did not return after the server stopped")
			}
			select {
			case <-agentStopped:
			default:
				t.Error("runBeside returned with the agent still running")
			}
		})
	}
}

// TestHerdCommand: the lines herd up prints call this binary, except the
// temporary one go run built (gone when herd up exits): then go run.
func TestHerdCommand(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ self, want string }{
		{"/tmp/go-build1234567/b001/exe/herd", "go run ./cmd/herd"},
		{"/root/.cache/go-build/x/herd", "go run ./cmd/herd"},
		{"", "go run ./cmd/herd"},
		{"/usr/bin/herd", "/usr/bin/herd"},
		{"/home/ops/src/herd/herd", "/home/ops/src/herd/herd"},
	} {
		if got := herdCommand(tt.self); got != tt.want {
			t.Errorf("herdCommand(%q) = %q, want %q", tt.self, got, tt.want)
		}
	}
}
