package fleet_test

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/catalogs"
	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/testkit"
	"github.com/herdcm/herd/testkit/fleet"
)

// TestSealedToAnotherKey: a node whose sealing key changed (enrolled
// again) while the server is away applies its cached catalog: the
// resource with a sealed value fails, saying so, and nothing else does;
// once the server is back it re-seals to the new key and the node
// converges.
func TestSealedToAnotherKey(t *testing.T) {
	t.Parallel()
	const canary = "CanaryRekeyed42"
	site := testkit.WriteSite(t, map[string]string{
		"nodes.toml":      "[[node]]\nroles = [\"base\"]\n",
		"roles/base.toml": "[[file]]\npath = \"/etc/motd\"\ncontent = \"hello\\n\"\n",
	})
	f := fleet.NewFleetWith(t, site, 1, fleet.Options{Retry: 50 * time.Millisecond, ConnectWait: 200 * time.Millisecond})
	before := f.AwaitConverged(await, nil)
	keys, _, err := server.LoadSecretKeys(f.Dir)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := catalogs.EncryptSecret(keys.Recipient(), []byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteSite(map[string]string{"roles/base.toml": "[[file]]\npath = \"/etc/motd\"\ncontent = \"hello again\\n\"\n\n" +
		"[[file]]\npath = \"/etc/db.conf\"\nmode = \"0600\"\ncontent = \"" + secret + "\"\n"})
	sealed := f.AwaitConverged(await, before)
	a := f.Agents[0]
	fleet.AssertFile(t, a.Root, "/etc/db.conf", canary)

	f.StopServer()
	a.Restart(t, func() {
		if err := os.Remove(filepath.Join(agent.DefaultStateDir(a.Root).TLS(), "seal.key")); err != nil {
			t.Fatal(err)
		}
		// The cached catalog's run must change something to say so.
		if err := os.WriteFile(filepath.Join(a.Root, "etc/motd"), []byte("edited\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	// The run of the cached catalog, with the server away.
	db, err := sql.Open("sqlite3", "file:"+agent.DefaultStateDir(a.Root).DB()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var r agent.Report
	deadline := time.Now().Add(await)
	for {
		var b string
		err := db.QueryRow(`SELECT report FROM runs WHERE catalog_digest = ? ORDER BY started DESC LIMIT 1`, sealed[a.Name]).Scan(&b)
		if err == nil {
			r = agent.Report{}
			if err := json.Unmarshal([]byte(b), &r); err != nil {
				t.Fatal(err)
			}
			if r.Summary.Failed > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run of the cached catalog failed: %v %+v", err, r.Summary)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, e := range r.Events {
		switch e.ID {
		case "file:/etc/db.conf":
			if e.Status != agent.Failed || !strings.Contains(e.Error, "sealed to another key: re-enroll or wait for the server to re-seal") {
				t.Errorf("the sealed file: %s %q, want failed, sealed to another key", e.Status, e.Error)
			}
		case "file:/etc/motd":
			if e.Status != agent.Changed {
				t.Errorf("the plain file: %s %q, want changed: nothing else fails", e.Status, e.Error)
			}
		}
	}
	fleet.AssertFile(t, a.Root, "/etc/db.conf", canary) // left as it was

	// The server back: the check-in carries the new key, the node's
	// secrets are sealed to it, and it converges.
	f.StartServer()
	f.AwaitConverged(await, sealed)
	fleet.AssertFile(t, a.Root, "/etc/db.conf", canary)
}
