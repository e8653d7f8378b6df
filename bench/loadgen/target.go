package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herdcm/herd/server"
	"github.com/herdcm/herd/server/ca"
)

// target is a running server the scenarios load: in this process, or in a
// child process so that its memory is its own.
type target struct {
	addr, httpAddr string
	token          string // a multi-use join token
	pool           *x509.CertPool
	dir, site      string
	pid            int // the process serving: os.Getpid() when in process

	// restart stops the server and starts it again on the same address;
	// it returns the time each took.
	restart func(ctx context.Context) (stopped, started time.Duration, err error)
	stop    func() error
}

// hello is what a child server prints on its first line of stdout.
type hello struct {
	Addr     string `json:"addr"`
	HTTPAddr string `json:"http_addr"`
	Token    string `json:"token"`
	CAPEM    []byte `json:"ca_pem"`
}

// serverOptions are the options both modes serve with: Herd's defaults,
// except the addresses and the logs.
func serverOptions(site, dir, listen string, compileWorkers int, verbose bool) server.Options {
	log := slog.New(slog.DiscardHandler)
	if verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return server.Options{Site: site, Dir: dir, Listen: listen, HTTPListen: "127.0.0.1:0", CompileWorkers: compileWorkers, Log: log}
}

// startServer starts a server in this process and makes a join token.
func startServer(ctx context.Context, site, dir, listen string, compileWorkers int, verbose bool) (*server.Server, hello, error) {
	opts := serverOptions(site, dir, listen, compileWorkers, verbose)
	var err error
	if opts.Store, err = storeFor(ctx, dir); err != nil {
		return nil, hello{}, err
	}
	s, err := server.New(ctx, opts)
	if err != nil {
		return nil, hello{}, err
	}
	if err := s.Start(ctx); err != nil {
		s.Close()
		return nil, hello{}, err
	}
	token, _, err := s.CA().NewToken(ctx, "", 24*time.Hour, false)
	if err != nil {
		s.Close()
		return nil, hello{}, fmt.Errorf("making a join token: %w", err)
	}
	return s, hello{Addr: s.Addr, HTTPAddr: s.HTTPAddr, Token: token, CAPEM: ca.CertPEM(s.CA().CACertDER())}, nil
}

// inProcess runs the server in this process.
func inProcess(ctx context.Context, site, dir string, compileWorkers int, verbose bool) (*target, error) {
	s, h, err := startServer(ctx, site, dir, "127.0.0.1:0", compileWorkers, verbose)
	if err != nil {
		return nil, err
	}
	t := &target{addr: h.Addr, httpAddr: h.HTTPAddr, token: h.Token, pool: s.CA().Pool(), dir: dir, site: site, pid: os.Getpid()}
	t.stop = func() error { return s.Close() }
	t.restart = func(ctx context.Context) (time.Duration, time.Duration, error) {
		t0 := time.Now()
		if err := s.Close(); err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		next, h2, err := startServer(ctx, site, dir, t.addr, compileWorkers, verbose)
		if err != nil {
			return 0, 0, err
		}
		s, t.httpAddr = next, h2.HTTPAddr
		return t1.Sub(t0), time.Since(t1), nil
	}
	return t, nil
}

// child runs the server as this program in -serve mode, in a process of
// its own.
func child(ctx context.Context, site, dir, cpuprofile string, compileWorkers int, verbose bool, memLimit string) (*target, error) {
	return childWith(ctx, site, dir, cpuprofile, compileWorkers, verbose, memLimit, nil)
}

// childWith is child with more arguments for the -serve process.
func childWith(ctx context.Context, site, dir, cpuprofile string, compileWorkers int, verbose bool, memLimit string, extra []string) (*target, error) {
	t := &target{dir: dir, site: site}
	var cmd *exec.Cmd
	launches := 0
	launch := func(listen string) error {
		launches++
		self, err := os.Executable()
		if err != nil {
			return err
		}
		args := []string{"-serve", "-site", site, "-dir", dir, "-listen", listen, "-store", storeBase}
		if cpuprofile != "" {
			// One profile per server process: the first, then the one
			// after each restart.
			args = append(args, "-cpuprofile", cpuprofile+"."+strconv.Itoa(launches))
		}
		if verbose {
			args = append(args, "-v")
		}
		if compileWorkers > 0 {
			args = append(args, "-compile-workers", strconv.Itoa(compileWorkers))
		}
		cmd = exec.Command(self, append(args, extra...)...)
		if memLimit != "" {
			// The server's alone: the load generator's own heap (the
			// agents' side of every connection) is larger.
			cmd.Env = append(os.Environ(), "GOMEMLIMIT="+memLimit)
		}
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting the server process: %w", err)
		}
		line, err := bufio.NewReader(out).ReadBytes('\n')
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("starting the server process: %w", err)
		}
		var h hello
		if err := json.Unmarshal(line, &h); err != nil {
			return fmt.Errorf("starting the server process: %w", err)
		}
		t.addr, t.httpAddr, t.token, t.pid = h.Addr, h.HTTPAddr, h.Token, cmd.Process.Pid
		t.pool = x509.NewCertPool()
		t.pool.AppendCertsFromPEM(h.CAPEM)
		go io.Copy(io.Discard, out)
		return nil
	}
	stop := func() error {
		if cmd == nil {
			return nil
		}
		cmd.Process.Signal(syscall.SIGTERM)
		err := cmd.Wait()
		cmd = nil
		if err != nil {
			return fmt.Errorf("stopping the server process: %w", err)
		}
		return nil
	}
	if err := launch("127.0.0.1:0"); err != nil {
		return nil, err
	}
	t.stop = stop
	t.restart = func(ctx context.Context) (time.Duration, time.Duration, error) {
		t0 := time.Now()
		if err := stop(); err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		err := launch(t.addr)
		return t1.Sub(t0), time.Since(t1), err
	}
	return t, nil
}

// serve is the child's side: run a server until SIGTERM or SIGINT.
func serve(site, dir, listen, cpuprofile string, compileWorkers int, verbose bool) error {
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	s, h, err := startServer(ctx, site, dir, listen, compileWorkers, verbose)
	if err != nil {
		return err
	}
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	os.Stdout.Write(append(b, '\n'))
	// SIGUSR1: write a heap and a goroutine profile of this process
	// (the parent's -memprofile, with -server child), beside the CPU
	// profile.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for {
		select {
		case <-ctx.Done():
			return s.Close()
		case <-usr1:
			base := cpuprofile
			if base == "" {
				base = filepath.Join(dir, "server")
			}
			// The goroutines first: the parent waits for both files.
			if f, err := os.Create(base + ".goroutine"); err == nil {
				pprof.Lookup("goroutine").WriteTo(f, 0)
				f.Close()
			}
			if err := writeHeap(base + ".heap.tmp"); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen -serve:", err)
			} else {
				os.Rename(base+".heap.tmp", base+".heap")
			}
			fmt.Fprintln(os.Stderr, "loadgen -serve: wrote", base+".heap", "and", base+".goroutine")
		}
	}
}

// rss returns the resident memory of process pid (VmRSS).
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("reading rss: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading rss: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("reading rss: no VmRSS line")
}

// watchStreams reads the server's herd_watch_streams gauge from /metrics.
func (t *target) watchStreams(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.httpAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "herd_watch_streams "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, errors.New("reading metrics: no herd_watch_streams")
}

// goMemory reads the server's Go runtime figures from /metrics: live
// heap in use, goroutine stacks and goroutines. They split its RSS into
// what it keeps and what the collector has yet to take back.
func (t *target) goMemory(ctx context.Context) (heap, stacks, goroutines float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.httpAddr+"/metrics", nil)
	if err != nil {
		return 0, 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("reading metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "go_memstats_heap_inuse_bytes":
			dst = &heap
		case "go_memstats_stack_inuse_bytes":
			dst = &stacks
		case "go_goroutines":
			dst = &goroutines
		default:
			continue
		}
		if *dst, err = strconv.ParseFloat(v, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("reading metrics: %s: %w", name, err)
		}
	}
	return heap, stacks, goroutines, sc.Err()
}
