package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/herdcm/herd/api/herdv1"
)

// The cluster mode (-servers N, N > 1): N servers, each in a child
// process of its own, on one schema of the -store PostgreSQL database, as
// docs/operations.md "Several servers" sets them up: the first server's
// CA directory copied into each other's before its first start, and each
// with its own copy of the site. Agent i enrolls with and talks to server
// i mod N only; what crosses between the servers goes through the store
// and its notifications, which is what the scenarios measure.

// settleWait is how long the converge scenario keeps listening after the
// last report, for a node being handed a second catalog of the same
// commit by another server's late announcement.
const settleWait = 5 * time.Second

// crossCheckSample is how many nodes the converge scenario checks in with
// another server than their own, to see that it would answer the same
// catalog.
const crossCheckSample = 1000

// cluster is the running servers and their site copies.
type cluster struct {
	ts    []*target
	sites []string
}

// checkCluster refuses the settings the cluster mode cannot act on.
func checkCluster(c config, want map[string]bool) error {
	switch {
	case c.servers < 1:
		return fmt.Errorf("-servers %d: want 1 or more", c.servers)
	case c.servers == 1:
		return nil
	case storeBase == "":
		return fmt.Errorf("-servers %d: several servers share one PostgreSQL store: give -store postgres://…", c.servers)
	case c.mode != "child":
		return fmt.Errorf("-servers %d runs each server in a child process of its own: add -server child", c.servers)
	case c.memprofile != "":
		return fmt.Errorf("-servers %d: -memprofile is for one server", c.servers)
	}
	for _, s := range []string{"storm", "rollout"} {
		if want[s] {
			return fmt.Errorf("-servers %d: scenario %s runs against one server only (-servers 1)", c.servers, s)
		}
	}
	return nil
}

// startCluster starts c.servers child servers under dir, sharing one
// schema (named by dir) and the first server's CA, each on 127.0.0.1:0
// with its own copy of site. name tells the servers' CPU profiles apart
// from another cluster's: -cpuprofile's file.NAME.serverK.1.
func startCluster(ctx context.Context, c config, site, dir, name string) (*cluster, error) {
	cl := &cluster{}
	var caDir string
	for k := range c.servers {
		sdir, ssite := filepath.Join(dir, fmt.Sprintf("server-%d", k)), filepath.Join(dir, fmt.Sprintf("site-%d", k))
		if err := os.CopyFS(ssite, os.DirFS(site)); err != nil {
			cl.stop()
			return nil, fmt.Errorf("copying the site for server %d: %w", k, err)
		}
		if caDir != "" {
			if err := os.CopyFS(filepath.Join(sdir, "ca"), os.DirFS(caDir)); err != nil {
				cl.stop()
				return nil, fmt.Errorf("copying the CA for server %d: %w", k, err)
			}
		}
		prof := ""
		if c.cpuprofile != "" {
			prof = fmt.Sprintf("%s.%s.server%d", c.cpuprofile, name, k)
		}
		t, err := childWith(ctx, ssite, sdir, prof, c.compileWorkers, c.verbose, c.memLimit, []string{"-schema-dir", dir})
		if err != nil {
			cl.stop()
			return nil, fmt.Errorf("server %d: %w", k, err)
		}
		cl.ts, cl.sites = append(cl.ts, t), append(cl.sites, ssite)
		if caDir == "" {
			caDir = filepath.Join(sdir, "ca")
		}
	}
	progress("cluster: %d servers on one schema: %s", len(cl.ts), strings.Join(cl.addrs(), ", "))
	return cl, nil
}

func (cl *cluster) addrs() []string {
	a := make([]string, len(cl.ts))
	for k, t := range cl.ts {
		a[k] = t.addr
	}
	return a
}

// stop stops every server, the last started first.
func (cl *cluster) stop() error {
	var first error
	for k := len(cl.ts) - 1; k >= 0; k-- {
		if err := cl.ts[k].stop(); err != nil && first == nil {
			first = fmt.Errorf("server %d: %w", k, err)
		}
	}
	return first
}

// split returns the agents of each server: agent i is server i mod N's.
func (cl *cluster) split(agents []*sim) [][]*sim {
	per := make([][]*sim, len(cl.ts))
	for i, a := range agents {
		per[i%len(cl.ts)] = append(per[i%len(cl.ts)], a)
	}
	return per
}

// awaitStreams waits until the servers count want open Watch streams
// between them.
func (cl *cluster) awaitStreams(ctx context.Context, want int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		n, err := 0, error(nil)
		for _, t := range cl.ts {
			m, merr := t.watchStreams(ctx)
			n += m
			if merr != nil {
				err = merr
			}
		}
		if err == nil && n >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d Watch streams on %d servers: %d open after %s (%v)", want, len(cl.ts), n, limit, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clusterScenarios runs the scenarios asked for over c.servers servers.
// storage, which measures the store and not the servers, runs as it does
// with one server (in process, a schema of its own).
func clusterScenarios(ctx context.Context, c config, site, work string, want map[string]bool) ([]row, error) {
	var rows []row
	if want["checkin"] || want["fetch"] || want["report"] || want["report100"] || want["batch"] || want["batch100"] {
		r, err := clusterThroughput(ctx, c, site, filepath.Join(work, "cluster-throughput"), want)
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	if want["rss"] || want["converge"] {
		r, err := clusterFleet(ctx, c, site, filepath.Join(work, "cluster-fleet"), want)
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	if want["storage"] {
		r, err := storage(ctx, c, site, filepath.Join(work, "storage"))
		for i := range r {
			r[i].Size += ", one server"
		}
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// clusterThroughput runs the request-rate scenarios against every server
// at once: each server gets its agents' share of the calls in flight, and
// a run's rate is the sum of the servers'.
func clusterThroughput(ctx context.Context, c config, site, dir string, want map[string]bool) ([]row, error) {
	if c.batch < 1 || c.batch > 100 {
		return nil, fmt.Errorf("-batch %d: want 1 to 100", c.batch)
	}
	if c.agents < c.servers || c.conc < c.servers {
		return nil, fmt.Errorf("-agents %d, -concurrency %d: want at least one per server (%d)", c.agents, c.conc, c.servers)
	}
	cl, err := startCluster(ctx, c, site, dir, "throughput")
	if err != nil {
		return nil, err
	}
	defer cl.stop()
	start := time.Now()
	agents, err := enrollSpread(ctx, cl.ts, 0, c.agents, 64)
	if err != nil {
		return nil, err
	}
	defer closeAll(agents)
	progress("enrolled %d agents on %d servers in %s", len(agents), len(cl.ts), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := register(ctx, agents, 64); err != nil {
		return nil, err
	}
	progress("first check-ins of %d agents in %s", len(agents), time.Since(start).Round(time.Millisecond))
	per := cl.split(agents)
	// Server k's share of the calls in flight: as even as the division
	// allows.
	conc := make([]int, len(per))
	for k := range conc {
		conc[k] = c.conc / len(per)
		if k < c.conc%len(per) {
			conc[k]++
		}
	}
	all := throughputScenarios(c)
	// runAll is one run of fn on every server at once.
	runAll := func(d time.Duration, fn call) []result {
		rs := make([]result, len(per))
		var wg sync.WaitGroup
		for k := range per {
			wg.Go(func() { rs[k] = load(ctx, per[k], conc[k], d, c.max, fn) })
		}
		wg.Wait()
		return rs
	}
	sum := func(rs []result, mult int) float64 {
		var r float64
		for _, x := range rs {
			r += x.rate() * float64(mult)
		}
		return r
	}
	var rows []row
	for _, s := range all {
		if !want[s.name] {
			continue
		}
		runAll(c.warmup, s.fn)
		var runs [][]result
		for i := range c.count {
			rs := runAll(c.duration, s.fn)
			var line []string
			for k, r := range rs {
				if r.firstErr != nil {
					return rows, fmt.Errorf("%s on server %d: %w", s.name, k, r.firstErr)
				}
				line = append(line, fmt.Sprintf("%.0f/s p50 %s p99 %s (%d busy)", r.rate()*float64(s.per), ms(r.lat.p50), ms(r.lat.p99), r.overloaded))
			}
			progress("%s run %d: %.0f/s in all; per server %s", s.name, i+1, sum(rs, s.per), strings.Join(line, ", "))
			runs = append(runs, rs)
		}
		totals := make([]string, len(runs))
		for i, rs := range runs {
			totals[i] = fmt.Sprintf("%.0f", sum(rs, s.per))
		}
		// The median run by the sum of the servers' rates.
		slices.SortFunc(runs, func(a, b []result) int { return cmp.Compare(sum(a, s.per), sum(b, s.per)) })
		m := runs[len(runs)/2]
		var perServer []string
		var busy int64
		for k, r := range m {
			perServer = append(perServer, fmt.Sprintf("%d: %.0f/s p50 %s p99 %s", k, r.rate()*float64(s.per), ms(r.lat.p50), ms(r.lat.p99)))
			busy += r.overloaded
		}
		detail := fmt.Sprintf("runs %s/s in all; median run per server %s", strings.Join(totals, ", "), strings.Join(perServer, ", "))
		if s.per > 1 {
			detail += " (latencies a call)"
		}
		if busy > 0 {
			detail += fmt.Sprintf("; %d refused busy", busy)
		}
		total := sum(m, s.per)
		rows = append(rows, row{Scenario: s.what, Size: fmt.Sprintf("%d servers, %d agents, %d in flight, %s × %d", len(per), len(agents), c.conc, c.duration, c.count),
			Measured: fmt.Sprintf("%.0f/s", total), Target: s.target, Verdict: verdict(total, s.goal, true), Detail: detail})
	}
	return rows, nil
}

// clusterFleet enrolls -watchers agents spread over the servers, opens
// their Watch streams, and measures each server's memory and commit →
// fleet converged: the commit written to every server's site copy, until
// every agent has fetched the new catalog from its server and that server
// took the report of its run.
func clusterFleet(ctx context.Context, c config, site, dir string, want map[string]bool) ([]row, error) {
	cl, err := startCluster(ctx, c, site, dir, "fleet")
	if err != nil {
		return nil, err
	}
	defer cl.stop()
	n := len(cl.ts)
	size := fmt.Sprintf("%d agents over %d servers", c.watchers, n)
	rss0 := make([]int64, n)
	for k, t := range cl.ts {
		rss0[k], _ = rss(t.pid)
	}
	start := time.Now()
	agents, err := enrollSpread(ctx, cl.ts, 0, c.watchers, 64)
	if err != nil {
		return nil, err
	}
	defer closeAll(agents)
	progress("enrolled %d agents on %d servers in %s", len(agents), n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := register(ctx, agents, 128); err != nil {
		return nil, err
	}
	progress("first check-ins of %d agents in %s", len(agents), time.Since(start).Round(time.Millisecond))
	rss1 := make([]int64, n)
	for k, t := range cl.ts {
		rss1[k], _ = rss(t.pid)
	}
	f := newFleet(cl.ts[0], agents)
	f.report = true
	defer f.stop()
	start = time.Now()
	f.start(ctx)
	if err := cl.awaitStreams(ctx, len(agents), c.timeout); err != nil {
		return nil, err
	}
	progress("%d Watch streams open in %s", len(agents), time.Since(start).Round(time.Millisecond))
	var rows []row
	if want["rss"] {
		time.Sleep(2 * time.Second) // let the allocators settle
		for k, t := range cl.ts {
			r, err := rss(t.pid)
			if err != nil {
				return rows, fmt.Errorf("server %d: %w", k, err)
			}
			streams, _ := t.watchStreams(ctx)
			measured := float64(r) / 1e6
			detail := fmt.Sprintf("%d streams; started %s; after first check-ins %s; streams add %s", streams, mib(rss0[k]), mib(rss1[k]), mib(r-rss1[k]))
			if heap, stacks, gs, err := t.goMemory(ctx); err == nil {
				detail += fmt.Sprintf("; of it heap in use %s, goroutine stacks %s (%.0f goroutines)", mib(int64(heap)), mib(int64(stacks)), gs)
			}
			rows = append(rows, row{Scenario: fmt.Sprintf("server %d RSS with Watch streams held", k), Size: size,
				Measured: fmt.Sprintf("%.0f MB", measured), Target: "≤ 600 MB", Verdict: verdict(measured, 600, false), Detail: detail})
		}
	}
	if want["converge"] {
		r, err := clusterConverge(ctx, c, cl, f, size)
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// clusterConverge commits a change to every server's site copy (one after
// the other, as a deploy would) and waits until every agent reported a
// run of its new catalog (or -timeout: the row then says how many did);
// then it counts the nodes handed more than one
// catalog for that commit, and checks a sample of nodes in with another
// server than their own, which should answer UNCHANGED.
func clusterConverge(ctx context.Context, c config, cl *cluster, f *fleet, size string) ([]row, error) {
	for _, a := range f.agents {
		a.newCatalogs.Store(0)
	}
	t0 := time.Now()
	for _, s := range cl.sites {
		if err := commitSite(s, 1); err != nil {
			return nil, err
		}
	}
	committed := time.Since(t0)
	// A fleet that does not converge is a figure too (the servers of
	// one store each plan a rollout of their own, see
	// docs/operations.md "Several servers"): the row says how far it got.
	done, err := awaitAll(ctx, f.reported, t0, c.timeout)
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	heard, fetched, reported := spread(f.heard, t0), spread(f.fetched, t0), spread(f.reported, t0)
	progress("%d of %d reported: first event %s, last heard %s, last fetched %s, last reported %s", done, len(f.agents), ms(first(f.heard, t0)), ms(heard.max), ms(fetched.max), ms(reported.max))
	// Per server: how many of its agents reported, the last when.
	var perServer []string
	for k := range cl.ts {
		var idx []int
		for i := k; i < len(f.agents); i += len(cl.ts) {
			idx = append(idx, i)
		}
		r := spreadOf(f.reported, idx, t0)
		switch r.n {
		case 0:
			perServer = append(perServer, fmt.Sprintf("%d: **none of %d**", k, len(idx)))
		case len(idx):
			perServer = append(perServer, fmt.Sprintf("%d: %s", k, ms(r.max)))
		default:
			perServer = append(perServer, fmt.Sprintf("%d: **%d of %d** (last %s)", k, r.n, len(idx), ms(r.max)))
		}
	}
	time.Sleep(settleWait)
	hist := map[int32]int{}
	for _, a := range f.agents {
		hist[a.newCatalogs.Load()]++
	}
	var catalogs []string
	for n := range int32(4) {
		if hist[n] > 0 {
			catalogs = append(catalogs, fmt.Sprintf("%d nodes %d", hist[n], n))
		}
	}
	more := 0
	for n, v := range hist {
		if n >= 4 {
			more += v
		}
	}
	if more > 0 {
		catalogs = append(catalogs, fmt.Sprintf("%d nodes 4 or more", more))
	}
	progress("catalogs fetched per node for the commit (%s later): %s", settleWait, strings.Join(catalogs, ", "))
	cross, err := crossCheck(ctx, cl, f.agents, crossCheckSample)
	if err != nil {
		return nil, err
	}
	progress("cross-server check-ins: %s", cross)
	one := "every node fetched exactly one catalog"
	if hist[1] != len(f.agents) {
		one = "**not one catalog per node**"
	}
	measured, verd := fmt.Sprintf("%.1f s", reported.max.Seconds()), verdict(reported.max.Seconds(), 15, false)
	if done < len(f.agents) {
		measured, verd = fmt.Sprintf("%d of %d nodes in %s", done, len(f.agents), c.timeout), "**not converged**"
	}
	return []row{{Scenario: "commit → fleet converged (every server's site copy)", Size: size,
		Measured: measured, Target: "≤ 15 s", Verdict: verd,
		Detail: fmt.Sprintf("to the last report taken (incl. the 500 ms debounce; the %d commits took %s); Watch events first %s, last %s; fetched last %s (p50 %s, p99 %s); last report per server %s; %d fetch retries (busy), %d reports failed; catalogs fetched per node in the %s after: %s (%s); %s",
			len(cl.sites), ms(committed), ms(first(f.heard, t0)), ms(heard.max), ms(fetched.max), ms(fetched.p50), ms(fetched.p99), strings.Join(perServer, ", "),
			f.fetchRetries.Load(), f.reportErrors.Load(), settleWait, strings.Join(catalogs, ", "), one, cross)}}, nil
}

// crossCheck checks up to sample agents (spread over the fleet) in with
// the server after their own, holding the etag their own server gave them
// and their facts by digest (in full when asked): any server answers any
// node, so each should be UNCHANGED. It returns the tally.
func crossCheck(ctx context.Context, cl *cluster, agents []*sim, sample int) (string, error) {
	if len(cl.ts) < 2 {
		return "", nil
	}
	step := max(1, len(agents)/sample)
	var unchanged, newCatalog, other atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	checked := 0
	for i := 0; i < len(agents); i += step {
		checked++
		a, t := agents[i], cl.ts[(i+1)%len(cl.ts)]
		g.Go(func() error {
			conf := &tls.Config{RootCAs: t.pool, ServerName: "localhost", MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{a.cert}}
			conn, err := grpc.NewClient(t.addr, clientOptions(conf)...)
			if err != nil {
				return fmt.Errorf("cross-server check-in of %s: %w", a.name, err)
			}
			defer conn.Close()
			node := herdv1.NewNodeClient(conn)
			req := &herdv1.CheckinRequest{FactsDigest: a.factsDigest, CatalogEtag: a.currentEtag(), AgentVersion: "loadgen"}
			var resp *herdv1.CheckinResponse
			err = retrying(ctx, func() (err error) {
				resp, err = node.Checkin(ctx, req, grpc.WaitForReady(true))
				if err == nil && resp.Status == herdv1.CheckinResponse_NEED_FACTS {
					req.FactsJson = a.factsJSON
					resp, err = node.Checkin(ctx, req, grpc.WaitForReady(true))
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("cross-server check-in of %s on %s: %w", a.name, t.addr, err)
			}
			switch resp.Status {
			case herdv1.CheckinResponse_UNCHANGED:
				unchanged.Add(1)
			case herdv1.CheckinResponse_NEW_CATALOG:
				newCatalog.Add(1)
			default:
				other.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d nodes checked in with the next server: %d UNCHANGED, %d another catalog, %d other", checked, unchanged.Load(), newCatalog.Load(), other.Load()), nil
}
