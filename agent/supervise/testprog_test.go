package supervise

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the daemon the tests supervise: run with
// HERD_SUPERVISE_TESTPROG=1, it does what its arguments say instead of
// running tests.
const testprogEnv = "HERD_SUPERVISE_TESTPROG"

// testIDEnv tags every process a test starts, so that a leak can be found
// in /proc and traced to its test (its value starts with the test binary's
// pid).
const testIDEnv = "HERD_SUPERVISE_TESTID"

func TestMain(m *testing.M) {
	if os.Getenv(testprogEnv) == "1" {
		os.Exit(testprog(os.Args[1:]))
	}
	code := m.Run()
	// Each test checks its own processes; this catches what slipped by.
	prefix := strconv.Itoa(os.Getpid()) + "-"
	if pids := taggedProcs(func(id string) bool { return strings.HasPrefix(id, prefix) }); len(pids) > 0 {
		fmt.Fprintf(os.Stderr, "supervise tests leaked processes %v; killing them\n", pids)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		code = 1
	}
	if g := supervisorGoroutines(); g != "" {
		fmt.Fprintf(os.Stderr, "supervise tests leaked goroutines:\n%s\n", g)
		code = 1
	}
	os.Exit(code)
}

// supervisorGoroutines returns the stacks of the supervisor's goroutines
// (loops, pidfd watchers, health probes) still running, after giving them a
// moment to end; "" when there are none. Every test closes its
// supervisors, so none should be left.
func supervisorGoroutines() string {
	ours := []string{"supervise.(*loop)", "supervise.runHealth"}
	var found string
	for range 100 {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		found = ""
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			for _, o := range ours {
				if strings.Contains(g, o) {
					found += g + "\n\n"
					break
				}
			}
		}
		if found == "" {
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
	return found
}

// testprog is the stand-in daemon. Modes:
//
//	exit N              exit at once with code N
//	run                 print "ready", run until SIGTERM, then exit 0
//	ignore-term         ignore SIGTERM, print "ready", run forever
//	print N             print N lines to stdout and to stderr, then run
//	spam                write lines to stdout without end
//	say-exit N MSG      print MSG to stderr and exit with code N
//	daemonize FILE      start a child in a new session, write its pid to
//	                    FILE, and exit 0 at once (a forking daemon)
//	fork-setsid FILE    start a child in a new session (setsid), write its
//	                    pid to FILE, then run
//	listen PORT         serve HTTP on 127.0.0.1:PORT (/ok 200, /fail 500)
//	                    and run
//	run-for DUR N       print "ready", run for DUR, then exit with code N
func testprog(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "testprog: no mode")
		return 2
	}
	switch mode, rest := args[0], args[1:]; mode {
	case "exit":
		n, _ := strconv.Atoi(rest[0])
		return n
	case "say-exit":
		fmt.Fprintln(os.Stderr, rest[1])
		n, _ := strconv.Atoi(rest[0])
		return n
	case "daemonize":
		// What a classic daemon does: a child in a new session, the
		// parent exits 0 at once.
		exe, err := os.Executable()
		if err != nil {
			return 1
		}
		child := exec.Command(exe, "run")
		child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := child.Start(); err != nil {
			return 1
		}
		tmp := rest[0] + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
			return 1
		}
		if err := os.Rename(tmp, rest[0]); err != nil {
			return 1
		}
		return 0
	case "run":
		return runUntilTerm()
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	case "print":
		n, _ := strconv.Atoi(rest[0])
		for i := 1; i <= n; i++ {
			fmt.Fprintf(os.Stdout, "stdout line %d\n", i)
			fmt.Fprintf(os.Stderr, "stderr line %d\n", i)
		}
		return runUntilTerm()
	case "spam":
		line := "spam " + strings.Repeat("x", 200) + "\n"
		for i := 0; ; i++ {
			if _, err := os.Stdout.WriteString(line); err != nil {
				return 1
			}
			if i%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	case "fork-setsid":
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		child := exec.Command(exe, "run")
		child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		tmp := rest[0] + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
			return 1
		}
		if err := os.Rename(tmp, rest[0]); err != nil {
			return 1
		}
		return runUntilTerm()
	case "run-for":
		d, _ := time.ParseDuration(rest[0])
		n, _ := strconv.Atoi(rest[1])
		fmt.Println("ready")
		time.Sleep(d)
		return n
	case "listen":
		ln, err := net.Listen("tcp", "127.0.0.1:"+rest[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "failing", 500) })
		go func() { _ = http.Serve(ln, mux) }()
		return runUntilTerm()
	}
	fmt.Fprintf(os.Stderr, "testprog: unknown mode %q\n", args[0])
	return 2
}

func runUntilTerm() int {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	fmt.Println("ready")
	<-c
	return 0
}
