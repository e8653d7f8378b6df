package facts

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultExternalDir is where external facts live when Options.ExternalDir
// is empty. It is read under Options.Root.
const DefaultExternalDir = "/etc/herd/facts.d"

// DefaultTimeout bounds each collector and each external fact executable
// when Options.Timeout is zero. Core collectors finish in well under a
// millisecond; the bound is for a hung NFS mount or a stuck script.
const DefaultTimeout = 2 * time.Second

// Options says which host to describe and how long to wait for it.
type Options struct {
	// Root is the host root. "" or "/" is the real host; any other
	// directory is a sandbox host whose etc/, proc/ and sys/ files are read
	// instead of the real ones (see the package doc for what stays live).
	Root string
	// ExternalDir holds external facts (*.toml, *.json, executables). It is
	// read under Root. Empty means DefaultExternalDir; a missing directory
	// is not an error.
	ExternalDir string
	// SandboxExec lets the executables in a sandbox root's facts directory
	// run. Under the real root "/" they are the host's own programs and
	// always run; under a sandbox they are whatever whoever prepared the
	// directory put there, and they would run as the agent (often root)
	// on this machine, so they are reported and not run unless asked.
	SandboxExec bool
	// Timeout bounds each collector and each external executable.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// AgentVersion is reported as herd.version.
	AgentVersion string
	// Only, when not empty, names the facts wanted, as top-level names or
	// dotted paths ("os.family" counts as "os"). Only the collectors that
	// provide them run, and only those top-level facts are returned.
	Only []string
	// AllMounts keeps pseudo filesystems (proc, sysfs, cgroup, …) in mounts.
	AllMounts bool
}

// collector produces some top-level facts. It may return facts and an
// error together: the facts it did find are kept.
type collector struct {
	name string
	keys []string // the top-level facts it sets, for Options.Only
	run  func(ctx context.Context, h *host) (Facts, error)
}

// collectors lists every core collector. It is a function, not a package
// variable, so that nothing runs at init.
func collectors() []collector {
	return []collector{
		{"os", []string{"os"}, collectOS},
		{"kernel", []string{"kernel", "arch"}, collectKernel},
		{"hostname", []string{"hostname", "fqdn", "domain"}, collectHostname},
		{"processors", []string{"processors"}, collectProcessors},
		{"memory", []string{"memory"}, collectMemory},
		{"mounts", []string{"mounts"}, collectMounts},
		{"networking", []string{"networking"}, collectNetworking},
		{"uptime", []string{"uptime"}, collectUptime},
		{"virtual", []string{"virtual"}, collectVirtual},
		{"timezone", []string{"timezone"}, collectTimezone},
		{"herd", []string{"herd"}, collectHerd},
		{"identity", []string{"identity"}, collectIdentity},
	}
}

// protected names the facts external facts may not override: they say
// which agent is running and as whom, and a policy must be able to trust them.
var protected = map[string]bool{"herd": true, "identity": true}

// Collect describes the host. Core collectors run concurrently, each within
// opts.Timeout; then external facts are merged over them. The error joins
// the failures of single collectors and external fact files, each naming
// what failed; the facts returned are complete apart from those.
func Collect(ctx context.Context, opts Options) (Facts, error) {
	return collect(ctx, opts, time.Now())
}

// collect is Collect with a fixed clock, so that captured trees give
// golden output (uptime, timezone offsets).
func collect(ctx context.Context, opts Options, now time.Time) (Facts, error) {
	h := newHost(opts, now)
	wanted := topLevel(opts.Only)

	var run []collector
	for _, c := range collectors() {
		if wanted == nil || slices.ContainsFunc(c.keys, func(k string) bool { return wanted[k] }) {
			run = append(run, c)
		}
	}

	results := make([]result, len(run))
	var wg sync.WaitGroup
	for i, c := range run {
		wg.Go(func() { results[i] = runCollector(ctx, h, c.name, c.run) })
	}
	var ext []externalResult
	if wanted == nil || hasUnprotected(wanted) {
		wg.Go(func() { ext = collectExternal(ctx, h) })
	}
	wg.Wait()

	f := Facts{}
	var errs []error
	for _, r := range results {
		for k, v := range r.facts {
			f[k] = v
		}
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	// External facts are merged in file-name order, after every core
	// fact, so that the last file wins whichever finished first.
	for _, r := range ext {
		if r.err != nil {
			errs = append(errs, r.err)
		}
		for _, k := range sortedKeys(r.facts) {
			if protected[k] {
				errs = append(errs, fmt.Errorf("external fact %s: may not override %q", r.file, k))
				continue
			}
			f[k] = r.facts[k]
		}
	}
	if wanted != nil {
		for k := range f {
			if !wanted[k] {
				delete(f, k)
			}
		}
	}
	return f, errors.Join(errs...)
}

type result struct {
	facts Facts
	err   error
}

// runCollector runs fn within h's timeout. A collector that panics becomes
// an error; one that overruns is abandoned (its goroutine can only be asked
// to stop through ctx) and becomes an error too, so that one stuck syscall
// never holds up the run.
func runCollector(ctx context.Context, h *host, name string, fn func(context.Context, *host) (Facts, error)) result {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	done := make(chan result, 1) // buffered: an abandoned collector must not block forever
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("collector %s: panic: %v\n%s", name, p, firstFrames(debug.Stack()))}
			}
		}()
		f, err := fn(ctx, h)
		if err != nil {
			err = fmt.Errorf("collector %s: %w", name, err)
		}
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return result{err: fmt.Errorf("collector %s: timed out after %v", name, h.timeout)}
		}
		return result{err: fmt.Errorf("collector %s: %w", name, ctx.Err())}
	}
}

// firstFrames keeps the top of a panic's stack: enough to find the line,
// short enough for a warning.
func firstFrames(stack []byte) string {
	lines := strings.Split(strings.TrimSpace(string(stack)), "\n")
	// Skip the goroutine header and the frames (two lines each) of
	// debug.Stack, the deferred recover and panic; keep the next few.
	const skip, keep = 7, 6
	if len(lines) <= skip {
		return ""
	}
	lines = lines[skip:]
	if len(lines) > keep {
		lines = lines[:keep]
	}
	return strings.Join(lines, "\n")
}

// topLevel turns Options.Only into a set of top-level names; nil means all.
func topLevel(only []string) map[string]bool {
	if len(only) == 0 {
		return nil
	}
	m := make(map[string]bool, len(only))
	for _, name := range only {
		top, _, _ := strings.Cut(name, ".")
		m[top] = true
	}
	return m
}

func hasUnprotected(wanted map[string]bool) bool {
	for k := range wanted {
		if !protected[k] {
			return true
		}
	}
	return false
}

func collectHerd(_ context.Context, h *host) (Facts, error) {
	v := h.opts.AgentVersion
	if v == "" {
		v = "unknown"
	}
	return Facts{"herd": map[string]any{"version": v}}, nil
}

// sortedKeys returns m's keys in order, for output that does not depend on
// map iteration.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
