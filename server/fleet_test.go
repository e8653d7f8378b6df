package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestFleet is the pull loop end to end with real parts: a server and three
// agents over mutual TLS on 127.0.0.1. They enroll, converge and report; a
// site change reaches them through Watch; with the server stopped they keep
// their catalogs and spool their reports; after its restart every spooled
// report arrives exactly once. It runs on each store: sqlite, and
// PostgreSQL (testkit.Postgres).
func TestFleet(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			store := ""
			if kind == "postgres" {
				store = testkit.Postgres(t)
			}
			testFleet(t, store)
		})
	}
}

func testFleet(t *testing.T, store string) {
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml": "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml": `
[[file]]
path = "/etc/motd"
content = "{{ .node }}: {{ .params.greeting }}\n"

[[file]]
path = "/etc/banner"
source = "banner.txt"
`,
		"data/common.toml": "greeting = \"hello\"\n",
		"files/banner.txt": "welcome\n",
	})
	// Short timers: with the server stopped an agent gives up on the
	// connection at once (on 127.0.0.1 a refused connection is immediate),
	// and after the restart the agents check in (and send their spools)
	// within milliseconds, not after the production 3-second connection
	// wait and 10-second backoff.
	f := fleet.NewFleetWith(t, site, 3, fleet.Options{Retry: 50 * time.Millisecond, ConnectWait: 200 * time.Millisecond, Store: store})
	first := f.AwaitConverged(30*time.Second, nil)
	for _, a := range f.Agents {
		fleet.AssertFile(t, a.Root, "etc/motd", a.Name+": hello")
		fleet.AssertFile(t, a.Root, "etc/banner", "welcome")
	}

	// A site change reaches every agent through Watch: their check-in
	// interval is an hour, so nothing else would run them.
	start := time.Now()
	f.WriteSite(map[string]string{"data/common.toml": "greeting = \"good morning\"\n"})
	second := f.AwaitConverged(30*time.Second, first)
	t.Logf("site change → fleet converged in %s", time.Since(start).Round(time.Millisecond))
	for _, a := range f.Agents {
		if second[a.Name] == first[a.Name] {
			t.Errorf("%s still runs its first catalog", a.Name)
		}
		fleet.AssertFile(t, a.Root, "etc/motd", a.Name+": good morning")
	}

	// The server goes away: agents apply their cached catalogs (a hand
	// edit is put back) and spool their reports.
	f.StopServer()
	ctx := context.Background()
	for _, a := range f.Agents {
		if err := os.WriteFile(filepath.Join(a.Root, "etc/motd"), []byte("edited\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		a.Daemon.Trigger(agent.TriggerManual)
	}
	for _, a := range f.Agents {
		awaitFile(t, filepath.Join(a.Root, "etc/motd"), a.Name+": good morning", 30*time.Second)
		awaitSpooled(t, a, 30*time.Second)
	}

	// Back: every spooled report arrives, and exactly once.
	f.StartServer()
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range f.Agents {
		for {
			// The agent may run again after the restart: compare with its
			// history as it stands each time.
			runs := runIDs(t, a)
			resp, err := f.Admin.ListReports(ctx, &herdv1.ListReportsRequest{Node: a.Name, Limit: 1000})
			stored := map[string]int{}
			if err == nil {
				for _, r := range resp.Reports {
					stored[r.Report.RunId]++
				}
			}
			missing := 0
			for _, id := range runs {
				if stored[id] == 0 {
					missing++
				}
			}
			// Stored exactly once each, and nothing the agent did not run.
			if err == nil && missing == 0 && len(stored) == len(runs) {
				for id, n := range stored {
					if n != 1 {
						t.Errorf("%s: report %s stored %d times", a.Name, id, n)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d reports never arrived, %d stored (err %v)", a.Name, missing, len(runs), len(stored), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func awaitFile(t *testing.T, path, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q", path, b, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func awaitSpooled(t *testing.T, a *fleet.Agent, timeout time.Duration) {
	t.Helper()
	st, err := agent.OpenState(agent.DefaultStateDir(a.Root).String())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(timeout)
	for {
		sp, err := st.SpooledReports(context.Background())
		if err == nil && len(sp) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s spooled no report while the server was down (%v)", a.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runIDs lists the runs the agent made (its history), by id.
func runIDs(t *testing.T, a *fleet.Agent) []string {
	t.Helper()
	return runIDsAt(t, a.Root)
}

// runIDsAt lists the runs in the history of the agent whose root is
// root, by id.
func runIDsAt(t *testing.T, root string) []string {
	t.Helper()
	st, err := agent.OpenState(agent.DefaultStateDir(root).String())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, err := st.Runs(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}
