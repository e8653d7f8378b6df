package resources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The systemd provider of the service type.
//
// With run given, Herd owns the unit: it writes
// ROOT/etc/systemd/system/NAME.service from run, user, group, env, dir,
// restart, stop_signal and stop_timeout, and a changed unit file means
// daemon-reload and a restart. Without run it manages a unit someone else
// wrote (a package's nginx.service): only whether it runs and, with
// enable, whether it starts at boot. State comes from one
// `systemctl show` per Check; spawning it is acceptable here, unlike in
// the herd provider. systemd has no health probes, so health.* is an
// error with this provider rather than a check that silently never runs.
//
// systemd must be PID 1 and the host root must be "/": the systemd of this
// machine manages this machine, not a sandbox root. Elsewhere Check still
// compares the unit file (reading only) and reports the state as unknown,
// and Apply fails saying why, changing nothing.

// systemctlPath is systemctl on Debian and its kin (/bin is /usr/bin).
const systemctlPath = "/usr/bin/systemctl"

// systemdPlan is what Check learned of a systemd service.
type systemdPlan struct {
	unitName string
	unitPath string // under the host root
	unit     []byte // the unit to write; nil when it is in sync or not Herd's
	reload   bool   // daemon-reload needed (a new unit, or one changed on disk)
	enable   string // "enable", "disable" or ""
	action   string // "start", "stop", "restart" or ""
	// unusable is why systemd cannot manage this host root; Apply fails
	// with it.
	unusable error
}

// systemdUnitName is the unit of service name.
func systemdUnitName(name string) string {
	if strings.HasSuffix(name, ".service") {
		return name
	}
	return name + ".service"
}

// pid1Comm reads the name of PID 1 once: it does not change while the
// agent runs.
var pid1Comm = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		return "", fmt.Errorf("reading the name of PID 1: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
})

// systemdManages returns nil when systemd manages the host root, and
// otherwise an error that says why not.
func systemdManages(root string) error {
	comm, err := pid1Comm()
	if err != nil {
		return err
	}
	if comm != "systemd" {
		return fmt.Errorf("systemd is not running (PID 1 is %s)", comm)
	}
	if root != "" && root != "/" {
		return fmt.Errorf("systemd manages this machine, not the host root %s", root)
	}
	return nil
}

func (sv *Service) systemdUsable(root string) error {
	if sv.systemd != nil {
		return sv.systemd(root)
	}
	return systemdManages(root)
}

// systemdActive are the ActiveStates of a unit that runs or is about to.
var systemdActive = map[string]bool{"active": true, "activating": true, "reloading": true, "refreshing": true}

// systemdEnabled are the UnitFileStates that start the unit at boot, and
// systemdFixed those that enable and disable cannot change (no [Install]
// section, generated, transient, an alias): wanting them enabled is as
// good as it gets, and insisting would never converge.
var (
	systemdEnabled = map[string]bool{"enabled": true, "enabled-runtime": true}
	systemdFixed   = map[string]bool{"static": true, "indirect": true, "generated": true, "transient": true, "alias": true}
)

// checkSystemd fills p with how the unit differs from w.
func (sv *Service) checkSystemd(ctx context.Context, h *Host, w *serviceWant, p *Plan, sp *servicePlan) error {
	name := w.spec.Name
	if w.spec.Health != nil {
		return fmt.Errorf("service %s: health checks need provider herd; systemd has no health probes", name)
	}
	sd := &systemdPlan{unitName: systemdUnitName(name)}
	sd.unitPath = filepath.Join(h.Root, "etc/systemd/system", sd.unitName)
	sp.sd = sd
	unitChanged := false
	if len(w.spec.Argv) > 0 {
		want := renderSystemdUnit(w.id, w.spec)
		have, _, err := readInRoot(h.Root, "etc/systemd/system/"+sd.unitName, maxDiffBytes)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.Changes = append(p.Changes, Change{Attr: "unit", To: "/etc/systemd/system/" + sd.unitName, Action: Create})
		case err != nil:
			return fmt.Errorf("service %s: reading its unit: %w", name, err)
		case !bytes.Equal(have, want):
			p.Changes = append(p.Changes, Change{Attr: "unit", Diff: unitDiff(have, want), Action: Update})
		}
		if len(p.Changes) > 0 {
			sd.unit, sd.reload, unitChanged = want, true, true
		}
	}
	if err := sv.systemdUsable(h.Root); err != nil {
		sd.unusable = err
		if !w.ignoreEnsure {
			p.Changes = append(p.Changes, Change{Attr: "ensure", From: "unknown", To: ensureWord(w.running), Action: Update})
		}
		return nil
	}
	props, err := systemctlShow(ctx, h, sd.unitName)
	if err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	if props["LoadState"] == "not-found" && len(w.spec.Argv) == 0 {
		return fmt.Errorf("service %s: systemd has no unit %s; give run so that Herd writes one", name, sd.unitName)
	}
	if !unitChanged && len(w.spec.Argv) > 0 && props["NeedDaemonReload"] == "yes" {
		// The file is right but systemd still runs an older one, e.g.
		// after a daemon-reload that failed in an earlier run.
		p.Changes = append(p.Changes, Change{Attr: "unit", From: "changed on disk", To: "reloaded", Action: Update})
		sd.reload, unitChanged = true, true
	}
	if w.enable != nil && !w.ignoreEnable {
		state := props["UnitFileState"]
		switch {
		case *w.enable && !systemdEnabled[state] && !systemdFixed[state]:
			sd.enable = "enable"
		case !*w.enable && systemdEnabled[state]:
			sd.enable = "disable"
		}
		if sd.enable != "" {
			p.Changes = append(p.Changes, Change{Attr: "enable", From: orUnknown(state), To: sd.enable + "d", Action: Update})
		}
	}
	active := props["ActiveState"]
	switch {
	case w.running && !systemdActive[active] && !w.ignoreEnsure:
		sd.action = "start"
		p.Changes = append(p.Changes, Change{Attr: "ensure", From: orUnknown(active), To: "running", Action: Update})
	case !w.running && systemdActive[active] && !w.ignoreEnsure:
		sd.action = "stop"
		p.Changes = append(p.Changes, Change{Attr: "ensure", From: active, To: "stopped", Action: Update})
	case w.running && systemdActive[active] && unitChanged:
		// The unit change is the change; the restart is how it takes effect.
		sd.action = "restart"
	}
	return nil
}

func ensureWord(running bool) string {
	if running {
		return "running"
	}
	return "stopped"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// applySystemd writes the unit, reloads systemd, and enables, starts,
// restarts or stops the unit as the plan says. Output of systemctl goes to
// p.Output.
func (sv *Service) applySystemd(ctx context.Context, h *Host, p *Plan, sp *servicePlan) error {
	name := sp.want.spec.Name
	sd := sp.sd
	if sd.unusable != nil {
		return fmt.Errorf("service %s: provider systemd: %w", name, sd.unusable)
	}
	if sd.unit != nil {
		if err := writeSystemdUnit(ctx, h, sd.unitPath, "/etc/systemd/system/"+sd.unitName, sd.unit); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
	}
	var out bytes.Buffer
	defer func() { p.Output = execOutputTail(out.String(), MaxOutput) }()
	steps := [][]string{}
	if sd.reload {
		steps = append(steps, []string{"daemon-reload"})
	}
	if sd.enable != "" {
		steps = append(steps, []string{sd.enable, "--", sd.unitName})
	}
	if sd.action != "" {
		steps = append(steps, []string{sd.action, "--", sd.unitName})
	}
	for _, args := range steps {
		if err := systemctl(ctx, h, &out, args...); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
	}
	return nil
}

// refreshSystemd restarts the unit; with ignore = ["ensure"] only if it
// runs (try-restart), since starting it is another tool's business.
func (sv *Service) refreshSystemd(ctx context.Context, h *Host, w *serviceWant) error {
	if err := sv.systemdUsable(h.Root); err != nil {
		return fmt.Errorf("service %s: provider systemd: %w", w.spec.Name, err)
	}
	verb := "restart"
	if w.ignoreEnsure {
		verb = "try-restart"
	}
	var out bytes.Buffer
	if err := systemctl(ctx, h, &out, verb, "--", systemdUnitName(w.spec.Name)); err != nil {
		return fmt.Errorf("service %s: %w; output ends:\n%s", w.spec.Name, err, execOutputTail(out.String(), refreshErrorOutput))
	}
	return nil
}

// systemctl runs systemctl with args, adding its output to out; a
// non-zero exit is an error.
func systemctl(ctx context.Context, h *Host, out *bytes.Buffer, args ...string) error {
	argv := append([]string{systemctlPath}, args...)
	res, err := h.Run(ctx, Cmd{Argv: argv})
	out.Write(res.Output)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%s: exited %d", shellQuoteArgv(argv), res.ExitCode)
	}
	return nil
}

// systemctlShow reads the few properties Check needs in one spawn.
func systemctlShow(ctx context.Context, h *Host, unit string) (map[string]string, error) {
	argv := []string{systemctlPath, "show", "--property=LoadState,ActiveState,UnitFileState,NeedDaemonReload", "--", unit}
	res, err := h.Run(ctx, Cmd{Argv: argv})
	if err != nil {
		return nil, fmt.Errorf("reading the state of %s: %w", unit, err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("reading the state of %s: systemctl show exited %d: %s", unit, res.ExitCode, bytes.TrimSpace(res.Output))
	}
	props, err := parseSystemctlShow(res.Output)
	if err != nil {
		return nil, fmt.Errorf("reading the state of %s: %w", unit, err)
	}
	return props, nil
}

// parseSystemctlShow parses `systemctl show` output: KEY=VALUE lines, the
// value running to the end of the line (it may hold "="). Empty lines are
// skipped; any other line is an error, since misreading state would start
// or stop the wrong thing.
func parseSystemctlShow(out []byte) (map[string]string, error) {
	props := map[string]string{}
	for n, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("systemctl show: line %d: want KEY=VALUE, got %q", n+1, line)
		}
		props[k] = v
	}
	return props, nil
}

// writeSystemdUnit replaces the unit file at hostPath under the host root
// atomically (fileWrite: a temporary file beside it, fsync, rename, fsync
// of the directory), keeping the content it replaces in the host's content
// store. The unit directory is created and found inside the root, so a
// link planted there never leads the write out of it.
func writeSystemdUnit(ctx context.Context, h *Host, path, hostPath string, content []byte) error {
	rel := hostPath[1:]
	r, err := os.OpenRoot(h.Root)
	if err != nil {
		return fmt.Errorf("writing its unit: opening the host root: %w", err)
	}
	err = r.MkdirAll(filepath.Dir(rel), 0o755)
	r.Close()
	if err != nil {
		return fmt.Errorf("writing its unit: %w", err)
	}
	dir, base, err := openParentRoot(h.Root, rel, false)
	if err != nil {
		return fmt.Errorf("writing its unit %s: %w", path, err)
	}
	defer dir.Close()
	w := fileWrite{mode: 0o644, uid: -1, gid: -1,
		fill: func(f io.Writer) error {
			_, err := f.Write(content)
			return err
		},
		saveOld: func(dir *os.Root, base string) error {
			return backupFile(ctx, h, dir, base, hostPath, true)
		},
	}
	if err := w.into(dir, base); err != nil {
		return fmt.Errorf("writing its unit %s: %w", path, err)
	}
	return nil
}

// renderSystemdUnit writes the unit file of a service Herd owns. Values
// are escaped so that systemd reads back exactly the strings of the
// catalog: "%" specifiers and "$" variables are not expanded, and
// ExecStart runs argv as given, like the herd provider, without a shell.
func renderSystemdUnit(id string, s ServiceSpec) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by herd for %s. Changes made here are overwritten.\n", id)
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=%s, managed by herd\n", systemdEscapeSpecifiers(s.Name))
	b.WriteString("\n[Service]\n")
	if s.Type == "forking" {
		b.WriteString("Type=forking\n")
		fmt.Fprintf(&b, "PIDFile=%s\n", systemdEscapeSpecifiers(s.PIDFile))
	} else {
		// Type=exec: a start fails when the program cannot be executed,
		// instead of succeeding and failing a moment later.
		b.WriteString("Type=exec\n")
	}
	b.WriteString("ExecStart=")
	for i, a := range s.Argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(systemdQuoteWord(a, true))
	}
	b.WriteByte('\n')
	if s.User != "" {
		fmt.Fprintf(&b, "User=%s\n", systemdEscapeSpecifiers(s.User))
	}
	if s.Group != "" {
		fmt.Fprintf(&b, "Group=%s\n", systemdEscapeSpecifiers(s.Group))
	}
	if s.Dir != "" {
		fmt.Fprintf(&b, "WorkingDirectory=%s\n", systemdEscapeSpecifiers(s.Dir))
	}
	for _, kv := range s.Env {
		fmt.Fprintf(&b, "Environment=%s\n", systemdQuoteWord(kv, false))
	}
	restart := s.Restart
	if restart == "never" {
		restart = "no"
	}
	if restart != "" {
		fmt.Fprintf(&b, "Restart=%s\n", restart)
	}
	if s.StopSignal != "" {
		fmt.Fprintf(&b, "KillSignal=%s\n", s.StopSignal)
	}
	if s.StopTimeout > 0 {
		fmt.Fprintf(&b, "TimeoutStopSec=%s\n", systemdDuration(s.StopTimeout))
	}
	b.WriteString("\n[Install]\nWantedBy=multi-user.target\n")
	return b.Bytes()
}

// systemdQuoteWord writes one word of ExecStart (exec = true) or one
// Environment assignment. A plain word stays bare; anything else is
// double-quoted with C escapes. "%" becomes "%%" everywhere (specifiers),
// and "$" becomes "$$" in ExecStart (variable expansion). A quoted word is
// never a ";" separator or a "-@:+!" prefix: systemd looks for those only
// in unquoted text.
func systemdQuoteWord(s string, exec bool) string {
	plain := s != ""
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/_.,:+=@-", c) >= 0) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '%':
			b.WriteString("%%")
		case c == '$' && exec:
			b.WriteString("$$")
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// systemdEscapeSpecifiers escapes "%" in a value that is not quoted
// (names and paths, which hold no control characters).
func systemdEscapeSpecifiers(s string) string {
	return strings.ReplaceAll(s, "%", "%%")
}

// systemdDuration writes d as systemd reads it: whole seconds, or
// milliseconds rounded up.
func systemdDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10) + "ms"
}

// unitDiff is a small unified-style diff of two unit files: the lines
// only in a ("-") and only in b ("+"), between their common prefix and
// suffix. Unit files are short; this is for people reading a report.
// Environment values are hidden: they may hold secrets, and reports,
// logs and the dashboard all show a diff.
func unitDiff(a, b []byte) string {
	al := strings.SplitAfter(string(a), "\n")
	bl := strings.SplitAfter(string(b), "\n")
	pre := 0
	for pre < len(al) && pre < len(bl) && al[pre] == bl[pre] {
		pre++
	}
	suf := 0
	for suf < len(al)-pre && suf < len(bl)-pre && al[len(al)-1-suf] == bl[len(bl)-1-suf] {
		suf++
	}
	var s strings.Builder
	fmt.Fprintf(&s, "@@ -%d,%d +%d,%d @@\n", pre+1, len(al)-pre-suf, pre+1, len(bl)-pre-suf)
	for _, l := range al[pre : len(al)-suf] {
		s.WriteString("-" + hideEnvironment(l))
	}
	for _, l := range bl[pre : len(bl)-suf] {
		s.WriteString("+" + hideEnvironment(l))
	}
	return s.String()
}

// hideEnvironment shows an Environment= line of a unit by its variable's
// name only, and ends every line with a newline.
func hideEnvironment(line string) string {
	line = strings.TrimSuffix(line, "\n")
	if v, ok := strings.CutPrefix(line, "Environment="); ok {
		name, _, _ := strings.Cut(strings.TrimPrefix(v, `"`), "=")
		return "Environment=" + name + "=(hidden)\n"
	}
	return line + "\n"
}
