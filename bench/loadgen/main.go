// Command loadgen measures a Herd server under load: it runs a real server
// (in this process, or in a child process so that its memory is its own)
// on 127.0.0.1 with a synthetic site, enrolls simulated agents through the
// real Enroll RPC, each with its own key and certificate, and runs bounded
// scenarios over real mutual TLS: unchanged check-ins, catalog fetches,
// reports, storage per node, memory with Watch streams held, the commit →
// fleet converged time, and a reconnect storm after a restart, and a
// staged rollout (commit → canaries converged, commit → fleet converged
// through the stages). It prints a markdown table of target against
// measured. With -servers N it runs N servers on one PostgreSQL store
// instead, the agents spread over them (cluster.go).
//
//	go run ./bench/loadgen -help
//	go run ./bench/loadgen -scenarios checkin,fetch,report,report100,storage
//	go run ./bench/loadgen -server child -scenarios rss,converge,storm -watchers 10000
//	go run ./bench/loadgen -server child -scenarios rollout -watchers 10000
//	go run ./bench/loadgen -store postgres://… -servers 3 -server child -scenarios checkin,report,rss,converge
//
// Every loop is bounded in count and time and stops by itself; the only
// address it talks to is the server's on 127.0.0.1.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/herdcm/herd/testkit"
)

// config is the command line.
type config struct {
	gates          string
	scenarios      string
	mode           string
	agents, conc   int
	duration       time.Duration
	warmup         time.Duration
	count          int
	batch          int
	max            int64
	watchers       int
	storageNodes   int
	storageRuns    int
	timeout        time.Duration
	cpuprofile     string
	memprofile     string
	compileWorkers int
	memLimit       string
	site           testkit.SyntheticOptions
	verbose        bool
	serve          bool
	serveSite      string
	serveDir       string
	serveListen    string
	servers        int
}

func main() {
	var c config
	flag.StringVar(&c.scenarios, "scenarios", "checkin,fetch,report,report100,storage", "comma-separated: empty, checkin, fetch, report, report100, batch, batch100, storage, rss, converge, storm, rollout")
	flag.StringVar(&c.mode, "server", "inproc", "where the server runs: inproc (this process) or child (a process of its own: its RSS is the server's alone)")
	flag.IntVar(&c.agents, "agents", 512, "simulated agents the throughput scenarios cycle over (each its own certificate and connection)")
	flag.IntVar(&c.conc, "concurrency", 128, "calls in flight in the throughput scenarios (the server admits 256 at once)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each timed throughput run")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "untimed run before each scenario's timed runs")
	flag.IntVar(&c.count, "count", 3, "timed runs per throughput scenario; the table gives the median")
	flag.IntVar(&c.batch, "batch", 32, "reports in each SendReports call of the batch and batch100 scenarios (the server takes up to 100)")
	flag.Int64Var(&c.max, "max", 5_000_000, "most calls in one timed run")
	flag.IntVar(&c.watchers, "watchers", 10000, "agents holding Watch streams in rss, converge, storm and rollout")
	flag.IntVar(&c.storageNodes, "storage-nodes", 50, "nodes the storage scenario fills")
	flag.IntVar(&c.storageRuns, "storage-runs", 1440, "reports per node in the storage scenario (30 days of 30-minute runs)")
	flag.DurationVar(&c.timeout, "timeout", 3*time.Minute, "longest wait of any one step of the fleet scenarios")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of this process to `file` (with -server child, the server's to file.server.1, and file.server.2 after a restart)")
	flag.StringVar(&c.memprofile, "memprofile", "", "write a heap profile of this process to `file` once the Watch streams are open (with -server child, the server writes its own heap and goroutine profiles beside its CPU profile: -cpuprofile's file.server.1.heap)")
	flag.StringVar(&c.memLimit, "server-gomemlimit", "", "with -server child: the server's GOMEMLIMIT (a soft memory limit, such as 480MiB; see docs/operations.md)")
	flag.IntVar(&c.compileWorkers, "compile-workers", 0, "the server's CompileWorkers (0: its default, GOMAXPROCS)")
	flag.IntVar(&c.site.Roles, "roles", 50, "roles in the synthetic site")
	flag.IntVar(&c.site.RolesPerNode, "roles-per-node", 10, "roles each node gets")
	flag.IntVar(&c.site.PerRole, "per-role", 20, "resources per role")
	flag.StringVar(&c.gates, "gates", "examples/site/policies", "the rollout scenario's policy gates: the *.rego (tests left out) of this directory, copied into the synthetic site (\"\": no gates)")
	flag.BoolVar(&c.verbose, "v", false, "log the server's info lines and warnings to stderr (the rollout's plan: where its time went)")
	flag.StringVar(&storeBase, "store", "", "the servers' store: empty for sqlite in each server's directory, or a PostgreSQL URL (a scratch database: each server gets a schema herd_bench_*, left behind)")
	flag.IntVar(&c.servers, "servers", 1, "servers to run: above 1, that many child servers (-server child) sharing one schema of -store, the agents spread over them (see cluster.go)")
	flag.BoolVar(&c.serve, "serve", false, "internal: be the child server")
	flag.StringVar(&schemaDir, "schema-dir", "", "internal: the directory naming the child server's PostgreSQL schema (default -dir)")
	flag.StringVar(&c.serveSite, "site", "", "internal: the child server's site")
	flag.StringVar(&c.serveDir, "dir", "", "internal: the child server's state directory")
	flag.StringVar(&c.serveListen, "listen", "127.0.0.1:0", "internal: the child server's address")
	flag.Parse()

	var err error
	if c.serve {
		err = serve(c.serveSite, c.serveDir, c.serveListen, c.cpuprofile, c.compileWorkers, c.verbose)
	} else {
		err = run(context.Background(), c, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the open-file limit: every simulated agent holds a
// connection, and an in-process server holds the other end too.
func raiseFileLimit() {
	want := &syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, want) == nil {
		return
	}
	var cur syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur) == nil {
		cur.Cur = cur.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &cur)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, c config, out io.Writer) error {
	raiseFileLimit()
	want := map[string]bool{}
	for s := range strings.SplitSeq(c.scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "empty", "checkin", "fetch", "report", "report100", "batch", "batch100", "storage", "rss", "converge", "storm", "rollout":
			want[s] = true
		case "":
		default:
			return fmt.Errorf("unknown scenario %q", s)
		}
	}
	if c.mode != "inproc" && c.mode != "child" {
		return fmt.Errorf("-server %q: want inproc or child", c.mode)
	}
	if err := checkCluster(c, want); err != nil {
		return err
	}
	if c.cpuprofile != "" {
		f, err := os.Create(c.cpuprofile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	work, err := os.MkdirTemp("", "herd-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	site := filepath.Join(work, "site")
	if err := writeSite(site, c.site); err != nil {
		return err
	}
	if c.servers > 1 {
		rows, err := clusterScenarios(ctx, c, site, work, want)
		printTable(out, c, rows)
		return err
	}
	var rows []row
	if want["empty"] || want["checkin"] || want["fetch"] || want["report"] || want["report100"] || want["batch"] || want["batch100"] {
		r, err := throughput(ctx, c, site, filepath.Join(work, "throughput"), want)
		rows = append(rows, r...)
		if err != nil {
			printTable(out, c, rows)
			return err
		}
	}
	if want["storage"] {
		r, err := storage(ctx, c, site, filepath.Join(work, "storage"))
		rows = append(rows, r...)
		if err != nil {
			printTable(out, c, rows)
			return err
		}
	}
	if want["rss"] || want["converge"] || want["storm"] {
		r, err := fleetScenarios(ctx, c, site, filepath.Join(work, "fleet"), want)
		rows = append(rows, r...)
		if err != nil {
			printTable(out, c, rows)
			return err
		}
	}
	if want["rollout"] {
		r, err := rolloutScenario(ctx, c, work)
		rows = append(rows, r...)
		if err != nil {
			printTable(out, c, rows)
			return err
		}
	}
	printTable(out, c, rows)
	return nil
}

// startTarget starts the server in the mode asked for.
func startTarget(ctx context.Context, c config, site, dir string) (*target, error) {
	if c.mode == "child" {
		prof := ""
		if c.cpuprofile != "" {
			prof = c.cpuprofile + ".server"
		}
		return child(ctx, site, dir, prof, c.compileWorkers, c.verbose, c.memLimit)
	}
	return inProcess(ctx, site, dir, c.compileWorkers, c.verbose)
}

// throughput runs the request-rate scenarios against one server.
func throughput(ctx context.Context, c config, site, dir string, want map[string]bool) ([]row, error) {
	t, err := startTarget(ctx, c, site, dir)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	start := time.Now()
	agents, err := enrollAll(ctx, t, 0, c.agents, 64)
	if err != nil {
		return nil, err
	}
	defer closeAll(agents)
	progress("enrolled %d agents in %s", len(agents), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := register(ctx, agents, 64); err != nil {
		return nil, err
	}
	progress("first check-ins (facts in full, compile, sign, store) of %d agents in %s", len(agents), time.Since(start).Round(time.Millisecond))

	if c.batch < 1 || c.batch > 100 {
		return nil, fmt.Errorf("-batch %d: want 1 to 100", c.batch)
	}
	all := throughputScenarios(c)
	var rows []row
	for _, s := range all {
		if !want[s.name] {
			continue
		}
		load(ctx, agents, c.conc, c.warmup, c.max, s.fn)
		var rs []result
		for i := range c.count {
			r := load(ctx, agents, c.conc, c.duration, c.max, s.fn)
			if r.firstErr != nil {
				return rows, fmt.Errorf("%s: %w", s.name, r.firstErr)
			}
			progress("%s run %d: %d calls in %s = %.0f/s, p50 %s p99 %s, failed %d, overloaded %d", s.name, i+1, r.n, r.elapsed.Round(time.Millisecond),
				r.rate()*float64(s.per), ms(r.lat.p50), ms(r.lat.p99), r.failed, r.overloaded)
			rs = append(rs, r)
		}
		m := medianResult(rs)
		rates := make([]string, len(rs))
		for i, r := range rs {
			rates[i] = fmt.Sprintf("%.0f", r.rate()*float64(s.per))
		}
		detail := fmt.Sprintf("runs %s/s; p50 %s, p99 %s", strings.Join(rates, ", "), ms(m.lat.p50), ms(m.lat.p99))
		if s.per > 1 {
			detail += " a call"
		}
		if m.bytes > 0 {
			detail += fmt.Sprintf("; %.0f MB/s of catalog", float64(m.bytes)/m.elapsed.Seconds()/1e6)
		}
		if m.overloaded > 0 {
			detail += fmt.Sprintf("; %d refused busy", m.overloaded)
		}
		rows = append(rows, row{Scenario: s.what, Size: fmt.Sprintf("%d agents, %d in flight, %s × %d", len(agents), c.conc, c.duration, c.count),
			Measured: fmt.Sprintf("%.0f/s", m.rate()*float64(s.per)), Target: s.target, Verdict: verdict(m.rate()*float64(s.per), s.goal, true), Detail: detail})
	}
	return rows, nil
}

// storage fills a fresh server with 30 days of 30-minute no-change runs
// for a sample of nodes, through the real SendReport, and measures the
// sqlite file after the checkpoint the server makes when it stops.
func storage(ctx context.Context, c config, site, dir string) ([]row, error) {
	// Always in process: the measure is the file, and a restart in
	// process checkpoints it.
	t, err := inProcess(ctx, site, dir, c.compileWorkers, c.verbose)
	if err != nil {
		return nil, err
	}
	agents, err := enrollAll(ctx, t, 0, c.storageNodes, 32)
	if err != nil {
		t.stop()
		return nil, err
	}
	defer closeAll(agents)
	if err := register(ctx, agents, 32); err != nil {
		t.stop()
		return nil, err
	}
	db := filepath.Join(dir, "herd.db")
	// Restart: Close checkpoints the WAL into the file.
	if _, _, err := t.restart(ctx); err != nil {
		return nil, err
	}
	base, err := storeSize(ctx, dir)
	if err != nil {
		t.stop()
		return nil, err
	}
	total := int64(c.storageNodes * c.storageRuns)
	progress("storage: %d nodes × %d reports = %d reports (db before: %s)", c.storageNodes, c.storageRuns, total, mib(base))
	// Each worker sends one node's runs in order, 30 minutes apart in
	// their start times, from 30 days ago.
	day0 := time.Now().Add(-30 * 24 * time.Hour)
	start := time.Now()
	var work = make(chan *sim)
	errs := make(chan error, len(agents))
	for range min(64, len(agents)) {
		go func() {
			for a := range work {
				var err error
				for k := range c.storageRuns {
					started := day0.Add(time.Duration(k) * 30 * time.Minute)
					if err = retrying(ctx, func() error { return sendReport(ctx, a, noChangeReport(a, int64(k), started)) }); err != nil {
						break
					}
				}
				errs <- err
			}
		}()
	}
	go func() {
		for _, a := range agents {
			work <- a
		}
		close(work)
	}()
	var firstErr error
	for range agents {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	took := time.Since(start)
	if err := t.stop(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return nil, fmt.Errorf("storage: %w", firstErr)
	}
	size, err := storeSize(ctx, dir)
	if err != nil {
		return nil, err
	}
	wal, _ := fileSize(db + "-wal")
	perNode := float64(size+wal) / float64(c.storageNodes)
	perReport := float64(size-base) / float64(total)
	progress("storage: %d reports in %s (%.0f/s); db %s, wal %s", total, took.Round(time.Millisecond), float64(total)/took.Seconds(), mib(size), mib(wal))
	return []row{{
		Scenario: "store size per node, 30 days of 30-min no-change runs", Size: fmt.Sprintf("%d nodes × %d reports", c.storageNodes, c.storageRuns),
		Measured: fmt.Sprintf("%.2f MB/node", perNode/1e6), Target: "≤ 2 MB/node", Verdict: verdict(perNode/1e6, 2, false),
		Detail: fmt.Sprintf("%.0f B/report; before reports %.0f KB/node (cert, facts, catalog); %.0f reports/s sent by %d nodes in order",
			perReport, float64(base)/float64(c.storageNodes)/1e3, float64(total)/took.Seconds(), min(64, len(agents))),
	}}, nil
}

// writeHeap writes a heap profile after a collection.
func writeHeap(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}

func fileSize(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, err
	}
	return fi.Size(), nil
}

// fleetScenarios enrolls -watchers agents, opens their Watch streams and
// measures memory, commit → converged, and the reconnect storm.
func fleetScenarios(ctx context.Context, c config, site, dir string, want map[string]bool) ([]row, error) {
	t, err := startTarget(ctx, c, site, dir)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	size := fmt.Sprintf("%d agents, server %s", c.watchers, c.mode)
	var rows []row
	rss0, _ := rss(t.pid)
	start := time.Now()
	agents, err := enrollAll(ctx, t, 0, c.watchers, 64)
	if err != nil {
		return nil, err
	}
	defer closeAll(agents)
	progress("enrolled %d agents in %s", len(agents), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := register(ctx, agents, 128); err != nil {
		return nil, err
	}
	registered := time.Since(start)
	progress("first check-ins of %d agents (own connections: handshake, facts, compile, sign, store) in %s", len(agents), registered.Round(time.Millisecond))
	rss1, _ := rss(t.pid)
	f := newFleet(t, agents)
	defer f.stop()
	start = time.Now()
	f.start(ctx)
	if _, err := f.awaitStreams(ctx, len(agents), c.timeout); err != nil {
		return rows, err
	}
	progress("%d Watch streams open in %s", len(agents), time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // let the allocator settle
	rss2, _ := rss(t.pid)
	heap, stacks, gs, merr := t.goMemory(ctx)
	if c.memprofile != "" {
		if c.mode == "child" {
			// The server's own, written by the child (see serve),
			// before anything else happens to it.
			if c.cpuprofile == "" {
				return rows, fmt.Errorf("-memprofile with -server child needs -cpuprofile: the server's profiles go beside it")
			}
			heap := c.cpuprofile + ".server.1.heap"
			os.Remove(heap)
			syscall.Kill(t.pid, syscall.SIGUSR1)
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
				if _, err := os.Stat(c.cpuprofile + ".server.1.goroutine"); err == nil {
					if _, err := os.Stat(heap); err == nil {
						break
					}
				}
				if time.Now().After(deadline) {
					return rows, fmt.Errorf("the server wrote no heap profile in a minute")
				}
			}
		} else if err := writeHeap(c.memprofile); err != nil {
			return rows, err
		}
	}
	if want["rss"] {
		measured := float64(rss2) / 1e6
		note := ""
		if c.mode == "inproc" {
			note = "; IN PROCESS: includes the agents' side of every connection"
		}
		rows = append(rows, row{Scenario: "server RSS with Watch streams held", Size: size,
			Measured: fmt.Sprintf("%.0f MB", measured), Target: "≤ 600 MB", Verdict: verdict(measured, 600, false),
			Detail: fmt.Sprintf("started %s; after first check-ins, connections idle %s; streams add %s (%.1f KB/stream)%s",
				mib(rss0), mib(rss1), mib(rss2-rss1), float64(rss2-rss1)/float64(len(agents))/1024, note)})
		if merr == nil {
			rows[len(rows)-1].Detail += fmt.Sprintf("; of it heap in use %s, goroutine stacks %s (%.0f goroutines)", mib(int64(heap)), mib(int64(stacks)), gs)
		}
	}
	if want["converge"] {
		f.nFetched.Store(0)
		t0 := time.Now()
		if err := commitSite(site, 1); err != nil {
			return rows, err
		}
		done, err := awaitAll(ctx, f.fetched, t0, c.timeout)
		if err != nil {
			return rows, fmt.Errorf("converge: %d of %d fetched: %w", done, len(agents), err)
		}
		heard, fetched := spread(f.heard, t0), spread(f.fetched, t0)
		progress("converged: first event %s, all heard %s, all fetched %s, %d fetch retries (busy)", ms(first(f.heard, t0)), ms(heard.max), ms(fetched.max), f.fetchRetries.Load())
		rows = append(rows, row{Scenario: "commit → fleet converged", Size: size,
			Measured: fmt.Sprintf("%.1f s", fetched.max.Seconds()), Target: "≤ 15 s", Verdict: verdict(fetched.max.Seconds(), 15, false),
			Detail: fmt.Sprintf("includes the 500 ms debounce; first Watch event %s, all events %s; fetched p50 %s, p99 %s; %d check-ins refused busy and retried",
				ms(first(f.heard, t0)), ms(heard.max), ms(fetched.p50), ms(fetched.p99), f.fetchRetries.Load())})
	}
	if want["storm"] {
		hs0, rs0 := handshakes.Load(), resumed.Load()
		t0 := time.Now()
		stopped, startup, err := t.restart(ctx)
		if err != nil {
			return rows, err
		}
		ready := time.Now()
		progress("server restarted: down for %s: %s stopping, %s starting (loading %d catalogs, recompiling)", ready.Sub(t0).Round(time.Millisecond), stopped.Round(time.Millisecond), startup.Round(time.Millisecond), len(agents))
		if _, err := awaitAll(ctx, f.opened, t0, c.timeout); err != nil {
			return rows, fmt.Errorf("storm: %w", err)
		}
		if _, err := f.awaitStreams(ctx, len(agents), c.timeout); err != nil {
			return rows, fmt.Errorf("storm: %w", err)
		}
		all := time.Now()
		op := spread(f.opened, ready)
		hs, rs := handshakes.Load()-hs0, resumed.Load()-rs0
		progress("storm: all %d streams back %s after the restart began, %s after the server was ready; %d handshakes, %d resumed", len(agents), ms(all.Sub(t0)), ms(all.Sub(ready)), hs, rs)
		rows = append(rows, row{Scenario: "reconnect storm after a restart", Size: size,
			Measured: fmt.Sprintf("%.1f s", all.Sub(ready).Seconds()), Target: "≤ 30 s", Verdict: verdict(all.Sub(ready).Seconds(), 30, false),
			Detail: fmt.Sprintf("from the new server listening to all streams registered; the restart itself took %s (%s stopping, %s starting: load %d stored catalogs, recompile); streams open p50 %s p99 %s after listening; %d TLS handshakes, %d resumed",
				ms(ready.Sub(t0)), ms(stopped), ms(startup), len(agents), ms(op.p50), ms(op.p99), hs, rs)})
	}
	return rows, nil
}

// printTable writes the rows as a markdown table.
func printTable(w io.Writer, c config, rows []row) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n| scenario | size | measured | target | | detail |\n|---|---|---:|---:|---|---|\n")
	for _, r := range slices.Clone(rows) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.Size, r.Measured, r.Target, r.Verdict, r.Detail)
	}
}

// scen is one throughput scenario: its table row's words, and the call.
type scen struct {
	name, what, target string
	goal               float64
	fn                 call
	per                int // reports a call carries: rates count them
}

// throughputScenarios lists the throughput scenarios, for one server
// (throughput) and several (cluster.go).
func throughputScenarios(c config) []scen {
	return []scen{
		{emptyScenario.name, emptyScenario.what, emptyScenario.target, emptyScenario.goal, emptyCall, 1},
		{"checkin", "unchanged check-ins/s (mTLS, loopback)", "≥ 20,000/s", 20000, checkinUnchanged, 1},
		{"fetch", "catalog fetches/s (NEW_CATALOG)", "≥ 5,000/s", 5000, checkinFetch, 1},
		{"report", "no-change reports/s, durable, one a call", "≥ 20,000/s", 20000, reportNoChange, 1},
		{"report100", "reports of 100 events/s, durable, one a call", "≥ 2,000/s", 2000, report100, 1},
		{"batch", fmt.Sprintf("no-change reports/s, durable, %d a call (SendReports)", c.batch), "≥ 20,000/s", 20000, reportBatch(c.batch, false), c.batch},
		{"batch100", fmt.Sprintf("reports of 100 events/s, durable, %d a call (SendReports)", c.batch), "≥ 2,000/s", 2000, reportBatch(c.batch, true), c.batch},
	}
}
