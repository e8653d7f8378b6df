package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herdcm/herd/testkit"
)

// TestMain is also the child server: the cluster mode starts this
// program (here, the test binary) with -serve.
func TestMain(m *testing.M) {
	if slices.Contains(os.Args[1:], "-serve") {
		main()
		os.Exit(0)
	}
	code := m.Run()
	testkit.StopPostgres()
	os.Exit(code)
}

// TestCheckCluster: the settings the cluster mode cannot act on are
// refused, each with the reason.
func TestCheckCluster(t *testing.T) {
	// Not parallel: storeBase is the program's -store, a global.
	for _, tc := range []struct {
		name    string
		c       config
		store   string
		want    map[string]bool
		wantErr string
	}{
		{"one server, no store", config{servers: 1, mode: "inproc"}, "", nil, ""},
		{"none", config{servers: 0, mode: "child"}, "postgres://h/db", nil, "want 1 or more"},
		{"no store", config{servers: 3, mode: "child"}, "", nil, "give -store postgres://"},
		{"in process", config{servers: 3, mode: "inproc"}, "postgres://h/db", nil, "add -server child"},
		{"memprofile", config{servers: 2, mode: "child", memprofile: "m"}, "postgres://h/db", nil, "-memprofile"},
		{"storm", config{servers: 2, mode: "child"}, "postgres://h/db", map[string]bool{"storm": true}, "scenario storm"},
		{"rollout", config{servers: 2, mode: "child"}, "postgres://h/db", map[string]bool{"converge": true, "rollout": true}, "scenario rollout"},
		{"fine", config{servers: 3, mode: "child"}, "postgres://h/db", map[string]bool{"converge": true, "rss": true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storeBase = tc.store
			defer func() { storeBase = "" }()
			err := checkCluster(tc.c, tc.want)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("checkCluster(%+v) = %v, want an error with %q", tc.c, err, tc.wantErr)
			}
		})
	}
}

// TestClusterScenarios runs the cluster mode for real: two child servers
// on one PostgreSQL schema, agents spread over them. Each server holds
// its share of the Watch streams, both carry check-ins, and after the
// commit every sampled node was checked in with the other server.
func TestClusterScenarios(t *testing.T) {
	// Not parallel: TMPDIR and -store (storeBase) are the process's.
	storeBase = testkit.Postgres(t)
	defer func() { storeBase = "" }()
	t.Setenv("TMPDIR", t.TempDir())
	c := config{
		servers: 2, mode: "child", scenarios: "checkin,rss,converge",
		agents: 6, conc: 4, duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond, count: 1, max: 1000,
		batch: 1, watchers: 10, timeout: 10 * time.Second,
		site: testkit.SyntheticOptions{Roles: 4, RolesPerNode: 2, PerRole: 3},
	}
	var out bytes.Buffer
	if err := run(context.Background(), c, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	table := out.String()
	t.Log(table)
	for _, want := range []string{
		"| unchanged check-ins/s (mTLS, loopback) | 2 servers, 6 agents",
		"median run per server 0: ",
		", 1: ",
		"| server 0 RSS with Watch streams held | 10 agents over 2 servers |",
		"| server 1 RSS with Watch streams held | 10 agents over 2 servers |",
		"| commit → fleet converged (every server's site copy) | 10 agents over 2 servers |",
		"10 nodes checked in with the next server",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("the table has no %q", want)
		}
	}
	// agent i is server i mod 2's: five streams each.
	if n := strings.Count(table, fmt.Sprintf("| %d streams;", 5)); n != 2 {
		t.Errorf("%d servers held 5 streams, want 2", n)
	}
}
