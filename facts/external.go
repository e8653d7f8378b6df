package facts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// externalResult is what one external fact file gave.
type externalResult struct {
	file  string // as read on this machine, for messages
	facts Facts
	err   error
}

// maxExecParallel bounds the external executables that run at once: they
// are the host's own programs and may be heavy.
const maxExecParallel = 4

// collectExternal reads every external fact file in the facts directory, in
// name order. Data files are parsed in place; executables run concurrently.
// The results are in name order whatever finished first.
func collectExternal(ctx context.Context, h *host) []externalResult {
	dir := filepath.ToSlash(filepath.Clean(h.opts.ExternalDir))
	if h.opts.ExternalDir == "" {
		dir = DefaultExternalDir
	}
	entries, err := os.ReadDir(h.path(dir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return []externalResult{{file: h.path(dir), err: fmt.Errorf("external facts: reading %s: %w", h.path(dir), pathErrCause(err))}}
	}
	results := make([]externalResult, len(entries))
	sem := make(chan struct{}, maxExecParallel)
	var wg sync.WaitGroup
	for i, e := range entries {
		name := e.Name()
		if ignoredName(name) {
			continue
		}
		file := h.path(path.Join(dir, name))
		results[i].file = file
		wg.Go(func() {
			if kind(name) == "exec" {
				sem <- struct{}{}
				defer func() { <-sem }()
			}
			f, err := externalFile(ctx, h, file, name)
			if err != nil {
				err = fmt.Errorf("external fact %s: %w", file, err)
			}
			results[i].facts, results[i].err = f, err
		})
	}
	wg.Wait()
	out := results[:0]
	for _, r := range results {
		if r.file != "" {
			out = append(out, r)
		}
	}
	return out
}

// ignoredName says which names in the facts directory are not facts:
// hidden files, editor backups and package managers' leftovers, so that
// editing a fact in place never runs its stale copy.
func ignoredName(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
		return true
	}
	switch path.Ext(name) {
	case ".swp", ".bak", ".orig", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".rpmnew", ".rpmsave", ".md":
		return true
	}
	return false
}

func kind(name string) string {
	switch path.Ext(name) {
	case ".json":
		return "json"
	case ".toml":
		return "toml"
	case ".txt":
		return "txt"
	}
	return "exec"
}

// externalFile reads or runs one file. A panic in a parser becomes the
// file's error: one odd file must not take the agent down.
func externalFile(ctx context.Context, h *host, file, name string) (f Facts, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	info, err := os.Stat(file)
	if err != nil {
		return nil, pathErrCause(err)
	}
	if !info.Mode().IsRegular() {
		return nil, nil // directories and devices are not facts
	}
	k := kind(name)
	if k == "exec" {
		if info.Mode()&0o111 == 0 {
			// A script someone forgot to chmod is worth a warning; any
			// other file here (a README) is not.
			if head, _ := readHeadOf(file, 2); string(head) == "#!" {
				return nil, errors.New("has a #! line but is not executable (chmod +x it)")
			}
			return nil, nil
		}
		if !h.live && !h.opts.SandboxExec {
			return nil, errors.New("not run: executables in a sandbox root's facts directory run only when asked (herd apply --sandbox-facts-exec)")
		}
		return runExecutable(ctx, h, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, pathErrCause(err)
	}
	switch k {
	case "json":
		return parseJSONFacts(b)
	case "toml":
		return parseTOMLFacts(b)
	default:
		return parseKeyValue(b)
	}
}

func readHeadOf(file string, n int) ([]byte, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(fh, b)
	return b[:m], err
}

// Limits on what an executable may print: facts are small, and a runaway
// script must not balloon the agent.
const (
	maxExecStdout = 1 << 20
	maxExecStderr = 4 << 10
)

// runExecutable runs an external fact program with a minimal environment,
// no stdin, in its own process group, within the timeout. On timeout the
// whole group is killed, so that a hung script's children die with it.
// The program prints a JSON object or key=value lines.
func runExecutable(ctx context.Context, h *host, file string) (Facts, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, file)
	// Scripts see the host root so that they can describe a sandbox too;
	// everything else of the agent's environment stays out.
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LC_ALL=C",
		"HOME=/",
		"HERD_ROOT=" + h.root,
	}
	cmd.Dir = "/"
	stdout := &cappedBuffer{max: maxExecStdout}
	stderr := &cappedBuffer{max: maxExecStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A grandchild that keeps stdout open must not keep us waiting once
	// the script itself has exited.
	cmd.WaitDelay = 100 * time.Millisecond
	inOwnGroup(cmd)
	start := time.Now()
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		// The script exited but something it started still holds its
		// output. Unless it left the group (setsid), that leftover keeps
		// the group's id from being reused, and goes with the group.
		killGroup(cmd)
	}
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("timed out after %v; killed", time.Since(start).Round(time.Millisecond))
		}
		return nil, ctx.Err()
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		if msg := firstLine(stderr.Bytes()); msg != "" {
			return nil, fmt.Errorf("running: %w: %s", err, msg)
		}
		return nil, fmt.Errorf("running: %w", err)
	}
	if stdout.truncated {
		return nil, fmt.Errorf("output is larger than %d bytes", maxExecStdout)
	}
	out := bytes.TrimSpace(stdout.Bytes())
	if len(out) > 0 && (out[0] == '{' || out[0] == '[') {
		return parseJSONFacts(out)
	}
	return parseKeyValue(out)
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// cappedBuffer keeps the first max bytes written to it and drops the rest,
// still reporting success, so that the writer is never blocked.
type cappedBuffer struct {
	bytes.Buffer
	max       int
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); len(p) > room {
		c.truncated = true
		c.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// parseJSONFacts parses a JSON object. Errors give the line and column.
func parseJSONFacts(b []byte) (Facts, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(b, err)
	}
	off := int(dec.InputOffset())
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		off += len(b[off:]) - len(bytes.TrimLeft(b[off:], " \t\r\n"))
		line, col := lineCol(b, off)
		return nil, fmt.Errorf("line %d, column %d: data after the JSON object", line, col)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the top level is %s, not a JSON object", jsonKind(v))
	}
	return Facts(normalize(m).(map[string]any)), nil
}

func jsonError(b []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := lineCol(b, int(se.Offset)-1) // Offset counts the bad byte
		return fmt.Errorf("line %d, column %d: %w", line, col, err)
	case errors.As(err, &te):
		line, col := lineCol(b, int(te.Offset))
		return fmt.Errorf("line %d, column %d: %w", line, col, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		line, col := lineCol(b, len(b))
		return fmt.Errorf("line %d, column %d: unexpected end of JSON", line, col)
	}
	return err
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	}
	return "a number"
}

// lineCol turns the offset of a byte into its 1-based line and column.
func lineCol(b []byte, off int) (line, col int) {
	off = min(max(off, 0), len(b))
	before := b[:off]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = off - bytes.LastIndexByte(before, '\n')
	return line, col
}

// parseTOMLFacts parses a TOML document. Errors give the line and column.
func parseTOMLFacts(b []byte) (Facts, error) {
	var m map[string]any
	if err := toml.Unmarshal(b, &m); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, fmt.Errorf("line %d, column %d: %w", line, col, err)
		}
		return nil, err
	}
	if m == nil {
		return Facts{}, nil
	}
	return Facts(normalize(m).(map[string]any)), nil
}

// normalize turns decoded values into the plain data Facts hold: JSON
// numbers into int64 or float64, TOML dates into RFC 3339 strings, and
// floats JSON cannot carry (NaN, ±Inf) into strings.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalize(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = normalize(e)
		}
		return v
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		if f, err := v.Float64(); err == nil {
			return f
		}
		return v.String() // too large for float64: keep the digits
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'g', -1, 64)
		}
		return v
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case fmt.Stringer: // toml.LocalDate, LocalTime, LocalDateTime
		return v.String()
	}
	return v
}

// parseKeyValue parses key=value lines, the simplest output a fact script
// can give. Values are strings; a dotted key nests ("app.version=1.2" is
// app: {version: "1.2"}) so that it can be looked up as written. Blank
// lines and # comments are skipped; any other line without "=" is an error
// naming its line.
func parseKeyValue(b []byte) (Facts, error) {
	f := Facts{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return nil, fmt.Errorf("line %d: want key=value, got %q", i+1, truncate(line, 40))
		}
		parts := strings.Split(k, ".")
		if slices.Contains(parts, "") {
			return nil, fmt.Errorf("line %d: bad key %q", i+1, truncate(k, 40))
		}
		m := map[string]any(f)
		for j, p := range parts[:len(parts)-1] {
			next, exists := m[p]
			if !exists {
				nm := map[string]any{}
				m[p], m = nm, nm
				continue
			}
			nm, isMap := next.(map[string]any)
			if !isMap {
				return nil, fmt.Errorf("line %d: %q is already a value, not a table", i+1, strings.Join(parts[:j+1], "."))
			}
			m = nm
		}
		last := parts[len(parts)-1]
		if _, isMap := m[last].(map[string]any); isMap {
			return nil, fmt.Errorf("line %d: %q is already a table, not a value", i+1, k)
		}
		m[last] = strings.TrimSpace(v)
	}
	return f, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
