package catalogs

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
)

// Kind is the type of a resource attribute's value.
type Kind int

// The attribute kinds. Values in a catalog are string, int64, bool,
// []string or map[string]string; the richer kinds below are checked at
// compile time and then stored as one of those.
const (
	KindString   Kind = iota
	KindInt           // int64
	KindBool          // bool
	KindList          // []string
	KindMap           // map[string]string
	KindMode          // string of octal digits, "0644"
	KindDuration      // string Go duration, "30s"
	KindRefs          // []string of "type:name"
	KindSignal        // string signal name, "SIGTERM"
	KindTable         // a table of sub-attributes, flattened to "name.sub"
	KindScalar        // string; an integer is accepted and stored as its decimal string
)

var kindNames = [...]string{"string", "integer", "boolean", "list of strings", "table of strings", "file mode string like \"0644\"", "duration like \"30s\"", "list of resource references like \"package:nginx\"", "signal name like \"SIGTERM\"", "table", "string or integer"}

func (k Kind) String() string { return kindNames[k] }

// Attr describes one attribute of a resource type.
type Attr struct {
	Name     string
	Kind     Kind
	Required bool
	Enum     []string // allowed values of a string; empty means any
	Sub      []Attr   // the attributes of a KindTable
	Doc      string
	// Check validates a value on its own, after coercion.
	Check func(v any) error
	// Sensitive says the value is secret by nature (a password hash): it
	// is sealed to the node even when no secret made it, and its value
	// never shows in an event, report, diff or log, sealed or not; a
	// resource with one set is a sensitive resource.
	Sensitive bool
	// Command says the value is a command line (argv): a secret in it
	// would be visible to every user of the host, so compile refuses one.
	Command bool
	// Public names where on the host the value is written for every user
	// to read (cron's "/etc/cron.d/NAME, mode 0644"): compile refuses a
	// secret in it.
	Public string
}

// absPath checks that a path attribute is absolute and clean, so that every
// host sees the same path and ".." cannot climb out of a host root.
func absPath(v any) error {
	p, _ := v.(string)
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%q must be an absolute, clean path (like %q)", p, path.Clean("/"+p))
	}
	return nil
}

// absCommand checks that argv names its program by absolute path: commands
// run without a shell or a PATH lookup, so that what runs does not depend on
// the agent's environment.
func absCommand(v any) error {
	argv, _ := v.([]string)
	if len(argv) == 0 {
		return fmt.Errorf("want a program and its arguments, like [\"/usr/bin/make\", \"install\"]")
	}
	if !path.IsAbs(argv[0]) {
		return fmt.Errorf("program %q must be an absolute path: commands run without a shell or PATH lookup", argv[0])
	}
	return nil
}

// Schema describes one resource type: its attributes and the cross-attribute
// rules that no single attribute can check.
type Schema struct {
	Type  string
	Key   string // the attribute that names the resource: "path" for file, "name" otherwise
	Attrs []Attr
	Doc   string
	// Ignorable lists the attributes `ignore` may name: those the agent's
	// type really leaves alone when told to. A type with none refuses
	// ignore, rather than accept a setting nothing acts on.
	Ignorable []string
	// check validates the attributes together after rendering; it reports
	// each problem against the attribute at fault.
	check func(a map[string]any, bad func(attr, format string, args ...any))
}

// Attr returns the attribute named n.
func (s *Schema) Attr(n string) (*Attr, bool) {
	for i := range s.Attrs {
		if s.Attrs[i].Name == n {
			return &s.Attrs[i], true
		}
	}
	return nil, false
}

// metaAttrs are accepted on every resource type. Edges and conditions are
// consumed by the compiler; ignore and audit travel to the agent.
var metaAttrs = []Attr{
	{Name: "require", Kind: KindRefs, Doc: "resources that must be converged before this one"},
	{Name: "before", Kind: KindRefs, Doc: "resources that must wait for this one"},
	{Name: "notify", Kind: KindRefs, Doc: "resources refreshed (service restarted, refreshonly exec run) when this one changes"},
	{Name: "subscribe", Kind: KindRefs, Doc: "resources whose change refreshes this one"},
	{Name: "when", Kind: KindString, Doc: "a condition over node, facts, params and environment; the resource is left out when it is false"},
	{Name: "ignore", Kind: KindList, Doc: "attributes the agent must leave alone because another tool owns them; each type lists those it can leave alone, and a type converged whole refuses ignore"},
	{Name: "audit", Kind: KindBool, Doc: "only check: the agent reports how the resource differs (status drift) and never changes or refreshes it"},
	{Name: "tags", Kind: KindList, Doc: "names that select the resource in a partial run (--tags); the declaring role and every definition it came through are tags too"},
	{Name: "for_each", Kind: KindString, Doc: "declare the resource once per element of a list or map (an expression over node, facts and params, or a literal array or table); attributes read each.key and each.value"},
}

// Schemas lists every resource type. It is an explicit table, never an
// init-time registry, so that the set of types is visible in one place.
var Schemas = map[string]*Schema{
	"file":    fileSchema,
	"package": packageSchema,
	"service": serviceSchema,
	"exec":    execSchema,
	"user":    userSchema,
	"group":   groupSchema,
	"line":    lineSchema,
	"ini":     iniSchema,
	"cron":    cronSchema,
	"sysctl":  sysctlSchema,
	"mount":   mountSchema,

	"authorized_key": authorizedKeySchema,
	"apt_repository": aptRepositorySchema,
}

// SensitiveAttr reports whether attribute name of resource type typ is
// sensitive by nature (Attr.Sensitive), so that diffs and reports show
// SensitiveText instead of its value.
func SensitiveAttr(typ, name string) bool {
	return sensitiveAttrIndex()[[2]string{typ, name}]
}

// sensitiveAttrIndex indexes the schema's Sensitive attributes once: the agent
// asks for every attribute of every resource on every run.
var sensitiveAttrIndex = sync.OnceValue(func() map[[2]string]bool {
	m := map[[2]string]bool{}
	for t, s := range Schemas {
		for _, a := range s.Attrs {
			if a.Sensitive {
				m[[2]string{t, a.Name}] = true
			}
		}
	}
	return m
})

// TypeNames returns the resource type names, sorted.
func TypeNames() []string {
	names := make([]string, 0, len(Schemas))
	for n := range Schemas {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

var fileSchema = &Schema{
	Type: "file", Key: "path",
	Ignorable: []string{"ensure", "content", "source", "template", "mode", "owner", "group", "target", "purge"},
	Doc:       "a file, directory or symbolic link",
	Attrs: []Attr{
		{Name: "path", Kind: KindString, Required: true, Doc: "absolute path on the host", Check: absPath},
		{Name: "ensure", Kind: KindString, Enum: []string{"file", "directory", "link", "absent"}, Doc: "what the path should be (default file)"},
		{Name: "content", Kind: KindString, Doc: "the file's content"},
		{Name: "source", Kind: KindString, Doc: "a file under the site's files/ directory to copy"},
		{Name: "template", Kind: KindString, Doc: "a template under the site's templates/ directory, rendered at compile time into content"},
		{Name: "mode", Kind: KindMode, Doc: "permission bits, octal"},
		{Name: "owner", Kind: KindString, Doc: "owning user name"},
		{Name: "group", Kind: KindString, Doc: "owning group name"},
		{Name: "target", Kind: KindString, Doc: "what a link points to (ensure = link)"},
		{Name: "purge", Kind: KindBool, Doc: "remove entries of a directory that no resource manages"},
		{Name: "backup", Kind: KindBool, Doc: "keep replaced content in the agent's content store (default true)"},
		{Name: "follow", Kind: KindBool, Doc: "follow a symbolic link at path instead of replacing it"},
		{Name: "drift", Kind: KindString, Enum: []string{"report", "watch"}, Doc: "watch: put a hand edit back at once instead of at the next run"},
		{Name: "recurse", Kind: KindBool, Doc: "source is a directory under files/ (as a source ending in / is): the tree is copied, each file and directory a resource of its own in the catalog"},
		{Name: "dir_mode", Kind: KindMode, Doc: "with a source directory: the mode of its directories (mode is then its files'; without mode a file keeps the site's executable bit, 0755 or 0644)"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		ensure, _ := a["ensure"].(string)
		src, _ := a["source"].(string)
		tree := a["recurse"] == true || strings.HasSuffix(src, "/")
		if tree {
			switch {
			case src == "":
				bad("recurse", "recurse needs source, a directory under files/")
			case ensure != "" && ensure != "directory":
				bad("ensure", "a source directory needs ensure = \"directory\" (the default for one), not %q", ensure)
			}
			ensure = "directory"
		} else if _, ok := a["dir_mode"]; ok {
			bad("dir_mode", "dir_mode is for a source directory (source = \"files/dir/\" or recurse = true)")
		}
		if ensure == "" {
			ensure = "file"
		}
		n := 0
		for _, k := range []string{"content", "source", "template"} {
			if _, ok := a[k]; ok {
				n++
				if n > 1 {
					bad(k, "content, source and template are alternatives: give one")
				}
				if ensure != "file" && !(k == "source" && tree) {
					bad(k, "%s needs ensure = \"file\", not %q", k, ensure)
				}
			}
		}
		if _, ok := a["target"]; ok != (ensure == "link") {
			if ok {
				bad("target", "target needs ensure = \"link\"")
			} else {
				bad("ensure", "ensure = \"link\" needs a target")
			}
		}
		if purge, _ := a["purge"].(bool); purge && ensure != "directory" {
			bad("purge", "purge needs ensure = \"directory\"")
		}
	},
}

var packageSchema = &Schema{
	Type: "package", Key: "name",
	Ignorable: []string{"ensure"},
	Doc:       "a software package",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "the package name"},
		{Name: "ensure", Kind: KindString, Doc: "installed (default), held (installed and held at its version), absent, purged, latest, or a version"},
		{Name: "provider", Kind: KindString, Enum: []string{"apt"}, Doc: "package manager (default apt)"},
		{Name: "source", Kind: KindString, Doc: "a .deb under the site's files/ directory, installed with dpkg"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		if e, _ := a["ensure"].(string); strings.ContainsAny(e, " \t\n") {
			bad("ensure", "ensure %q: want installed, held, absent, purged, latest or a version", e)
		}
		if s, ok := a["source"].(string); ok && !strings.HasSuffix(s, ".deb") {
			bad("source", "source %q: want a .deb file", s)
		}
	},
}

var serviceSchema = &Schema{
	Type: "service", Key: "name",
	Ignorable: []string{"ensure", "enable"},
	Doc:       "a long-running process, supervised by the agent or by systemd",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "the service name"},
		{Name: "ensure", Kind: KindString, Enum: []string{"running", "stopped"}, Doc: "default running"},
		{Name: "provider", Kind: KindString, Enum: []string{"herd", "systemd"}, Doc: "herd (the built-in supervisor, default) or systemd"},
		{Name: "run", Kind: KindList, Doc: "the command and its arguments (required with provider herd)", Check: absCommand, Command: true},
		{Name: "user", Kind: KindString, Doc: "user to run as"},
		{Name: "group", Kind: KindString, Doc: "group to run as"},
		{Name: "env", Kind: KindMap, Doc: "environment variables"},
		{Name: "dir", Kind: KindString, Doc: "working directory", Check: absPath},
		{Name: "restart", Kind: KindString, Enum: []string{"always", "on-failure", "never"}, Doc: "restart policy (default always)"},
		{Name: "enable", Kind: KindBool, Doc: "start at boot (systemd provider)"},
		{Name: "stop_signal", Kind: KindSignal, Doc: "signal that asks the service to stop (default SIGTERM)"},
		{Name: "stop_timeout", Kind: KindDuration, Doc: "how long to wait before SIGKILL (default 10s)"},
		{Name: "type", Kind: KindString, Enum: []string{"simple", "forking"}, Doc: "simple (run stays in the foreground, default) or forking (run starts a daemon and exits 0)"},
		{Name: "pidfile", Kind: KindString, Doc: "with type forking: where the daemon writes its pid (read inside the root)", Check: absPath},
		{Name: "health", Kind: KindTable, Doc: "a health check", Sub: []Attr{
			{Name: "exec", Kind: KindList, Doc: "a command that exits 0 when healthy", Check: absCommand, Command: true},
			{Name: "http", Kind: KindString, Doc: "a URL that answers 2xx when healthy"},
			{Name: "tcp", Kind: KindString, Doc: "host:port that accepts a connection when healthy"},
			{Name: "interval", Kind: KindDuration, Doc: "time between checks (default 10s)"},
			{Name: "timeout", Kind: KindDuration, Doc: "time one check may take (default 2s)"},
			{Name: "retries", Kind: KindInt, Doc: "consecutive failures before unhealthy (default 3)"},
		}},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		prov, _ := a["provider"].(string)
		typ, _ := a["type"].(string)
		if _, ok := a["pidfile"]; typ == "forking" && !ok {
			bad("type", "type \"forking\" needs pidfile, where the daemon writes its pid")
		} else if ok && typ != "forking" {
			bad("pidfile", "pidfile is for type \"forking\" only")
		}
		if _, hasRun := a["run"]; (prov == "" || prov == "herd") && !hasRun {
			if e, _ := a["ensure"].(string); e != "stopped" {
				bad("run", "provider herd needs run = [\"/path/to/program\", …]")
			}
		}
		n := 0
		for _, k := range []string{"health.exec", "health.http", "health.tcp"} {
			if _, ok := a[k]; ok {
				if n++; n > 1 {
					bad(k, "a health check is one of exec, http or tcp")
				}
			}
		}
		if u, ok := a["health.http"].(string); ok && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			bad("health.http", "health.http %q: want an http:// or https:// URL", u)
		}
		if t, ok := a["health.tcp"].(string); ok && !strings.Contains(t, ":") {
			bad("health.tcp", "health.tcp %q: want host:port", t)
		}
	},
}

var execSchema = &Schema{
	Type: "exec", Key: "name",
	Doc: "a command run to bring something about",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Doc: "the resource name (default: the command joined by spaces)"},
		{Name: "command", Kind: KindList, Required: true, Doc: "the command and its arguments, run without a shell", Check: absCommand, Command: true},
		{Name: "creates", Kind: KindString, Doc: "a path; the command is not run when it exists", Check: absPath},
		{Name: "unless", Kind: KindList, Doc: "a command; the command is not run when it exits 0", Check: absCommand, Command: true},
		{Name: "onlyif", Kind: KindList, Doc: "a command; the command runs only when it exits 0", Check: absCommand, Command: true},
		{Name: "refreshonly", Kind: KindBool, Doc: "run only when refreshed by a notify or subscribe"},
		{Name: "user", Kind: KindString, Doc: "user to run as"},
		{Name: "cwd", Kind: KindString, Doc: "working directory", Check: absPath},
		{Name: "env", Kind: KindMap, Doc: "environment variables"},
		{Name: "timeout", Kind: KindDuration, Doc: "how long the command may run (default 5m)"},
		{Name: "stdin", Kind: KindString, Doc: "text written to the command's standard input (the way to hand it a secret: sealed to the node when it comes from one)"},
	},
	check: func(map[string]any, func(string, string, ...any)) {},
}

var userSchema = &Schema{
	Type: "user", Key: "name",
	Ignorable: []string{"ensure", "uid", "gid", "groups", "home", "shell", "comment", "password"},
	Doc:       "a local user account",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "login name"},
		{Name: "ensure", Kind: KindString, Enum: []string{"present", "absent"}, Doc: "default present"},
		{Name: "uid", Kind: KindInt, Doc: "numeric user id"},
		{Name: "gid", Kind: KindString, Doc: "primary group, by name or number"},
		{Name: "groups", Kind: KindList, Doc: "supplementary groups"},
		{Name: "home", Kind: KindString, Doc: "home directory", Check: absPath},
		{Name: "shell", Kind: KindString, Doc: "login shell", Check: absPath},
		{Name: "comment", Kind: KindString, Doc: "the GECOS field"},
		{Name: "system", Kind: KindBool, Doc: "a system account (uid below UID_MIN)"},
		{Name: "managehome", Kind: KindBool, Doc: "create the home directory"},
		{Name: "password", Kind: KindString, Sensitive: true, Doc: "the password as a crypt(3) hash (\"$y$…\", \"$6$…\", \"$5$…\"), \"!\" or \"*\" for locked, or \"!\" before a hash to lock it; written to etc/shadow", Check: cryptHash},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		checkAccountName(a, bad)
		if uid, ok := a["uid"].(int64); ok && (uid < 0 || uid > 1<<32-2) {
			bad("uid", "uid %d is out of range", uid)
		}
	},
}

var groupSchema = &Schema{
	Type: "group", Key: "name",
	Ignorable: []string{"ensure", "gid"},
	Doc:       "a local group",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "group name"},
		{Name: "ensure", Kind: KindString, Enum: []string{"present", "absent"}, Doc: "default present"},
		{Name: "gid", Kind: KindInt, Doc: "numeric group id"},
		{Name: "system", Kind: KindBool, Doc: "a system group"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		checkAccountName(a, bad)
		if gid, ok := a["gid"].(int64); ok && (gid < 0 || gid > 1<<32-2) {
			bad("gid", "gid %d is out of range", gid)
		}
	},
}

var lineSchema = &Schema{
	Type: "line", Key: "name",
	Doc: "one line present in (or absent from) a text file, the rest of the file kept byte for byte",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Doc: "the resource name (default: \"PATH: LINE\", or \"PATH: /MATCH/\" without a line)"},
		{Name: "path", Kind: KindString, Required: true, Doc: "the file to edit (created with mode 0644 when missing and the line is wanted)", Check: absPath},
		{Name: "line", Kind: KindString, Doc: "the whole line, without its newline (required unless ensure = \"absent\" with match)", Check: oneLine},
		{Name: "ensure", Kind: KindString, Enum: []string{"present", "absent"}, Doc: "default present"},
		{Name: "match", Kind: KindString, Doc: "a regular expression (Go syntax): with present, the first matching line is replaced by line when line is not in the file yet; with absent, every matching line is removed", Check: goRegexp},
		{Name: "replace_all", Kind: KindBool, Doc: "with match: replace every matching line, not only the first"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		ensure, _ := a["ensure"].(string)
		_, hasMatch := a["match"]
		if _, ok := a["line"]; !ok && (ensure != "absent" || !hasMatch) {
			bad("line", "line is required (only ensure = \"absent\" with match can do without)")
		}
		if all, _ := a["replace_all"].(bool); all && !hasMatch {
			bad("replace_all", "replace_all needs match")
		} else if all && ensure == "absent" {
			bad("replace_all", "replace_all is for ensure = \"present\": with absent every matching line is removed")
		}
	},
}

var iniSchema = &Schema{
	Type: "ini", Key: "name",
	Doc: "one setting in one section of an INI-style file, the rest of the file (comments too) kept byte for byte",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Doc: "the resource name (default: \"PATH: [SECTION] SETTING\", or \"PATH: SETTING\" at the top of the file)"},
		{Name: "path", Kind: KindString, Required: true, Doc: "the file to edit (created with mode 0644 when missing and the setting is wanted)", Check: absPath},
		{Name: "section", Kind: KindString, Doc: "the section, without brackets; empty (the default) is the top of the file, before any section", Check: iniName("]")},
		{Name: "setting", Kind: KindString, Required: true, Doc: "the setting's name (the part before =)", Check: iniName("=[")},
		{Name: "value", Kind: KindScalar, Doc: "the setting's value (required with ensure = \"present\"), written as `setting = value`", Check: oneLine},
		{Name: "ensure", Kind: KindString, Enum: []string{"present", "absent"}, Doc: "default present"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		if _, ok := a["value"]; !ok && a["ensure"] != "absent" {
			bad("value", "value is required with ensure = \"present\"")
		}
		if s, _ := a["setting"].(string); strings.TrimSpace(s) == "" {
			bad("setting", "setting is empty")
		} else if t := strings.TrimSpace(s); t[0] == '#' || t[0] == ';' {
			bad("setting", "setting %q: a line starting with # or ; is a comment", s)
		}
	},
}

// cronPublic is where a cron job's attributes are written: cron reads
// only files every user may read too.
const cronPublic = "/etc/cron.d/NAME, mode 0644"

var cronSchema = &Schema{
	Type: "cron", Key: "name",
	Doc: "a cron job: one file /etc/cron.d/<name>, mode 0644, owned by root",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "the job's file name in /etc/cron.d (letters, digits, _ and -: cron skips other names, as run-parts does)", Check: cronName},
		{Name: "schedule", Kind: KindString, Doc: "five fields (minute hour day-of-month month day-of-week, like \"*/15 * * * *\") or @reboot, @hourly, @daily, @weekly, @monthly, @yearly (required with ensure = \"present\")", Check: func(v any) error { return CheckCronSchedule(v.(string)) }, Public: cronPublic},
		{Name: "user", Kind: KindString, Doc: "the user the command runs as (default root)", Public: cronPublic},
		{Name: "command", Kind: KindString, Doc: "the command line; cron runs it with /bin/sh (a shell: quote accordingly), and a % in it is cron's newline unless written \\% (required with ensure = \"present\")", Check: oneLine, Public: cronPublic},
		{Name: "environment", Kind: KindMap, Doc: "variables set for the job (NAME = \"value\"), like MAILTO or PATH", Check: cronEnvironment, Public: cronPublic},
		{Name: "ensure", Kind: KindString, Enum: []string{"present", "absent"}, Doc: "default present"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		if a["ensure"] == "absent" {
			return
		}
		for _, k := range []string{"schedule", "command"} {
			if s, _ := a[k].(string); strings.TrimSpace(s) == "" {
				bad(k, "%s is required with ensure = \"present\"", k)
			}
		}
		if u, ok := a["user"].(string); ok {
			checkAccountName(map[string]any{"name": u}, func(_, format string, args ...any) { bad("user", "user: "+format, args...) })
		}
	},
}

var sysctlSchema = &Schema{
	Type: "sysctl", Key: "name",
	Doc: "a kernel parameter: set live (/proc/sys) and kept in /etc/sysctl.d/60-herd-<name>.conf",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "the parameter, like net.ipv4.ip_forward", Check: sysctlName},
		{Name: "value", Kind: KindScalar, Required: true, Doc: "its value, as sysctl prints it (whitespace between numbers is compared as one space)", Check: oneLine},
		{Name: "persist", Kind: KindBool, Doc: "keep the value across reboots in /etc/sysctl.d/60-herd-<name>.conf (default true; false removes that file)"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		if v, _ := a["value"].(string); strings.TrimSpace(v) == "" {
			bad("value", "value is empty")
		}
	},
}

var mountSchema = &Schema{
	Type: "mount", Key: "name",
	Doc: "a file system: its /etc/fstab entry (other lines kept byte for byte) and, on a real host, whether it is mounted",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "the mount point", Check: absPath},
		{Name: "device", Kind: KindString, Doc: "what is mounted: a device, UUID=…, LABEL=…, host:/export, or tmpfs (required unless ensure = \"absent\")", Check: oneLine},
		{Name: "fstype", Kind: KindString, Doc: "the file system type, like ext4, xfs, nfs or tmpfs (required unless ensure = \"absent\")", Check: oneWord},
		{Name: "options", Kind: KindString, Doc: "mount options (default \"defaults\")", Check: oneWord},
		{Name: "dump", Kind: KindInt, Doc: "fstab's fifth field, for dump(8) (default 0)"},
		{Name: "pass", Kind: KindInt, Doc: "fstab's sixth field, the fsck order: 0 none, 1 root, 2 others (default 0)"},
		{Name: "ensure", Kind: KindString, Enum: []string{"mounted", "present", "unmounted", "absent"}, Doc: "mounted (default): in fstab and mounted; present: in fstab, mount state left alone; unmounted: in fstab, not mounted; absent: not in fstab, not mounted. Mount state is managed only on a real host (root /), never under --root"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		if a["name"] == "/" {
			bad("name", "name \"/\": the root file system is not managed by a mount resource")
		}
		if a["ensure"] != "absent" {
			for _, k := range []string{"device", "fstype"} {
				if s, _ := a[k].(string); strings.TrimSpace(s) == "" {
					bad(k, "%s is required unless ensure = \"absent\"", k)
				}
			}
		}
		for _, k := range []string{"dump", "pass"} {
			if n, ok := a[k].(int64); ok && (n < 0 || n > 9) {
				bad(k, "%s %d: want a number from 0 to 9", k, n)
			}
		}
	},
}

// oneLine refuses a string with a line break: each of these values
// becomes (part of) one line of a file, and a newline in it would add a
// line nobody declared.
func oneLine(v any) error {
	if s, _ := v.(string); strings.ContainsAny(s, "\n\r") {
		return fmt.Errorf("%q: must be one line (no newline)", s)
	}
	return nil
}

// oneWord refuses an empty string or one with white space: an fstab field.
func oneWord(v any) error {
	if s, _ := v.(string); s == "" || strings.ContainsAny(s, " \t\n\r") {
		return fmt.Errorf("%q: want one word, without spaces", s)
	}
	return nil
}

// goRegexp checks that a match attribute compiles as a Go regular
// expression, so that a typo fails at compile instead of on every host.
func goRegexp(v any) error {
	s, _ := v.(string)
	if _, err := regexp.Compile(s); err != nil {
		return fmt.Errorf("not a regular expression (Go syntax): %w", err)
	}
	return oneLine(v)
}

// iniName checks a section or setting name: one line, without the
// characters that would end it early.
func iniName(forbidden string) func(v any) error {
	return func(v any) error {
		s, _ := v.(string)
		if strings.ContainsAny(s, forbidden+"\n\r") {
			return fmt.Errorf("%q: may not contain %s or a newline", s, strings.Join(strings.Split(forbidden, ""), " or "))
		}
		return nil
	}
}

// cronNameRE is the name rule of run-parts (--lsbsysinit off), which
// Debian's cron applies to /etc/cron.d: a file with any other name (a dot
// in it, like "job.conf") is silently skipped.
var cronNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// CronName checks a cron job's name, which is its file name in
// /etc/cron.d.
func CronName(name string) error {
	if !cronNameRE.MatchString(name) || len(name) > 200 {
		return fmt.Errorf("%q: want letters, digits, _ and - only (cron skips files in /etc/cron.d with other names, like a dot)", name)
	}
	return nil
}

func cronName(v any) error { s, _ := v.(string); return CronName(s) }

// cronEnvironment checks a cron job's variables: a name cron reads as one
// and values on one line.
func cronEnvironment(v any) error {
	for k, val := range v.(map[string]string) {
		if !envNameRE.MatchString(k) {
			return fmt.Errorf("variable %q: want a name of letters, digits and _ not starting with a digit", k)
		}
		if err := oneLine(val); err != nil {
			return fmt.Errorf("variable %s: %w", k, err)
		}
	}
	return nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// sysctlNameRE is a kernel parameter's name: dot-separated parts of the
// characters /proc/sys entries use.
var sysctlNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$`)

// SysctlName checks a kernel parameter's name (net.ipv4.ip_forward). The
// agent maps it to a path under /proc/sys and a file name under
// /etc/sysctl.d, so nothing but the characters of such names passes.
func SysctlName(name string) error {
	if !sysctlNameRE.MatchString(name) || len(name) > 200 {
		return fmt.Errorf("%q: want dot-separated parts of letters, digits, _ and -, like net.ipv4.ip_forward", name)
	}
	return nil
}

func sysctlName(v any) error { s, _ := v.(string); return SysctlName(s) }

// cryptHash checks a password attribute's shape: a crypt(3) hash of a
// method the shadow suite writes (yescrypt, SHA-512, SHA-256, bcrypt,
// gost-yescrypt, scrypt), or a locked field. A clear-text password put
// there by mistake must fail the compile, never reach etc/shadow (where it
// would be a password nobody can type) or a report.
func cryptHash(v any) error {
	s, _ := v.(string)
	if s == "!" || s == "*" || s == "!*" {
		return nil
	}
	h := strings.TrimPrefix(s, "!")
	ok := false
	for _, id := range []string{"$y$", "$6$", "$5$", "$2b$", "$2y$", "$gy$", "$7$"} {
		if strings.HasPrefix(h, id) && len(h) > len(id)+1 {
			ok = true
		}
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '/' || c == '$' || c == '=') {
			ok = false
		}
	}
	if !ok || strings.Count(h, "$") < 3 {
		// The value itself is never quoted: it may be a clear-text
		// password typed into the wrong attribute.
		return fmt.Errorf("want a crypt(3) hash like \"$y$…\" or \"$6$…\" (mkpasswd makes one), or \"!\" or \"*\" for a locked account")
	}
	return nil
}

var authorizedKeySchema = &Schema{
	Type: "authorized_key", Key: "name",
	Doc: "one public key in a user's ~/.ssh/authorized_keys",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "a label for the key, written as its comment (\"alice@laptop\")"},
		{Name: "user", Kind: KindString, Required: true, Doc: "whose authorized_keys (the home comes from the host's etc/passwd)"},
		{Name: "key", Kind: KindString, Required: true, Doc: "the public key as \"type base64\", like \"ssh-ed25519 AAAAC3Nza…\"", Check: func(v any) error {
			_, _, err := SplitPublicKey(v.(string))
			return err
		}},
		{Name: "options", Kind: KindList, Doc: "the key's options, like [\"no-pty\", \"from=\\\"10.0.0.0/8\\\"\"]", Check: func(v any) error {
			for _, o := range v.([]string) {
				if err := CheckKeyOption(o); err != nil {
					return err
				}
			}
			return nil
		}},
		{Name: "ensure", Kind: KindString, Enum: []string{"present", "absent"}, Doc: "default present"},
		{Name: "purge", Kind: KindBool, Doc: "the user's authorized_keys holds only the keys this catalog manages for the user: every other key is removed (comments stay)"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		if n, _ := a["name"].(string); strings.ContainsAny(n, "\n\r\x00") {
			bad("name", "name: a key's label is one line")
		}
		if u, _ := a["user"].(string); u != "" {
			checkAccountName(map[string]any{"name": u}, func(_, format string, args ...any) { bad("user", "user: "+format, args...) })
		}
	},
}

var aptRepositorySchema = &Schema{
	Type: "apt_repository", Key: "name",
	Doc: "an apt source, /etc/apt/sources.list.d/<name>.sources (deb822), with its signing key in /etc/apt/keyrings; packages installed by name wait for every apt_repository",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "names the files: letters, digits, _ . -", Check: func(v any) error {
			n := v.(string)
			for i, c := range n {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || (i > 0 && (c == '.' || c == '-'))) {
					return fmt.Errorf("name %q: want letters, digits, _ . - (it names files apt reads)", n)
				}
			}
			return nil
		}},
		{Name: "uris", Kind: KindList, Doc: "the repository's URIs (required unless ensure = \"absent\"), like [\"https://deb.example.com/debian\"]", Check: func(v any) error {
			return aptWords(v.([]string), func(u string) error {
				scheme, rest, ok := strings.Cut(u, ":")
				if !ok || scheme == "" || rest == "" || strings.Trim(scheme, "abcdefghijklmnopqrstuvwxyz0123456789+") != "" {
					return fmt.Errorf("uri %q: want a URI like https://deb.example.com/debian or file:/srv/repo", u)
				}
				return nil
			})
		}},
		{Name: "suites", Kind: KindList, Doc: "suites (required unless ensure = \"absent\"), like [\"bookworm\"]; a path ending in / (\"./\") is a flat repository, without components", Check: func(v any) error {
			return aptWords(v.([]string), nil)
		}},
		{Name: "components", Kind: KindList, Doc: "components, like [\"main\"] (required unless the suites are flat)", Check: func(v any) error {
			return aptWords(v.([]string), nil)
		}},
		{Name: "architectures", Kind: KindList, Doc: "architectures to fetch, like [\"amd64\"] (default: apt's)", Check: func(v any) error {
			return aptWords(v.([]string), nil)
		}},
		{Name: "key", Kind: KindString, Doc: "the signing key, a .asc (ASCII-armored) or .gpg (binary) file under the site's files/, written to /etc/apt/keyrings/<name>.asc|.gpg and named by Signed-By"},
		{Name: "ensure", Kind: KindString, Enum: []string{"present", "absent"}, Doc: "default present"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		if a["ensure"] != "absent" {
			for _, k := range []string{"uris", "suites"} {
				if _, ok := a[k]; !ok {
					bad("name", "apt_repository needs %s (unless ensure = \"absent\")", k)
				}
			}
		}
		flat := 0
		suites, _ := a["suites"].([]string)
		for _, s := range suites {
			if strings.HasSuffix(s, "/") {
				flat++
			}
		}
		comps, _ := a["components"].([]string)
		switch {
		case flat > 0 && flat < len(suites):
			bad("suites", "suites: a flat suite (ending in /) and a named one cannot share a source")
		case flat > 0 && len(comps) > 0:
			bad("components", "components: a flat suite (ending in /) has none")
		case flat == 0 && len(suites) > 0 && len(comps) == 0:
			bad("suites", "suites: a named suite needs components, like [\"main\"]")
		}
		if k, ok := a["key"].(string); ok && !strings.HasSuffix(k, ".asc") && !strings.HasSuffix(k, ".gpg") {
			bad("key", "key %q: want a .asc (ASCII-armored) or .gpg (binary) file under files/", k)
		}
	},
}

// aptWords checks the words of a deb822 list field: at least one, each
// non-empty without spaces, line breaks or #, and each passing check.
func aptWords(vs []string, check func(string) error) error {
	if len(vs) == 0 {
		return fmt.Errorf("want at least one")
	}
	for _, v := range vs {
		for _, c := range v {
			if c == '#' || unicode.IsSpace(c) || !unicode.IsGraphic(c) {
				return fmt.Errorf("%q: want one word, without spaces, control characters or #", v)
			}
		}
		if v == "" {
			return fmt.Errorf("want a word, not an empty string")
		}
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkAccountName applies the shadow suite's rule for user and group names
// (useradd refuses the rest), so that the mistake surfaces at compile time
// instead of on every host.
func checkAccountName(a map[string]any, bad func(string, string, ...any)) {
	n, _ := a["name"].(string)
	if n == "" {
		return
	}
	ok := len(n) <= 32 && n[0] != '-'
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			ok = false
		}
	}
	if _, err := strconv.Atoi(n); err == nil {
		ok = false
	}
	if !ok {
		bad("name", "name %q is not a valid account name (letters, digits, _ - ., at most 32, not all digits)", n)
	}
}

// coerce checks v against attribute a and returns it in its catalog shape.
// rendered says v came out of a template, so a string may stand for an
// integer or a boolean.
func coerce(a *Attr, v any, rendered bool) (any, error) {
	out, err := coerceKind(a, v, rendered)
	if err == nil && a.Check != nil {
		err = a.Check(out)
	}
	return out, err
}

func coerceKind(a *Attr, v any, rendered bool) (any, error) {
	switch a.Kind {
	case KindString:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a string, got %s", typeName(v))
		}
		if len(a.Enum) > 0 && !slices.Contains(a.Enum, s) {
			return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(a.Enum, ", "))
		}
		return s, nil
	case KindInt:
		switch n := v.(type) {
		case int64:
			return n, nil
		case string:
			if rendered {
				i, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
				if err == nil {
					return i, nil
				}
			}
		}
		return nil, fmt.Errorf("want an integer, got %s", typeName(v))
	case KindBool:
		switch b := v.(type) {
		case bool:
			return b, nil
		case string:
			if rendered {
				if pb, err := strconv.ParseBool(strings.TrimSpace(b)); err == nil {
					return pb, nil
				}
			}
		}
		return nil, fmt.Errorf("want true or false, got %s", typeName(v))
	case KindList, KindRefs:
		list, ok := v.([]string)
		if !ok {
			return nil, fmt.Errorf("want a list of strings, got %s", typeName(v))
		}
		if a.Kind == KindRefs {
			// The type is checked by the loader, which knows the site's
			// definitions too (checkRefTypes).
			for _, ref := range list {
				if err := checkRefShape(ref); err != nil {
					return nil, err
				}
			}
		}
		return list, nil
	case KindMap:
		m, ok := v.(map[string]string)
		if !ok {
			return nil, fmt.Errorf("want a table of strings, got %s", typeName(v))
		}
		return m, nil
	case KindMode:
		s, ok := v.(string)
		if !ok {
			// An integer is refused: TOML's 644 and 0o644 are different
			// modes, and a decoded integer no longer says which was meant.
			return nil, fmt.Errorf("want a %s, got %s (write the mode as a string)", a.Kind, typeName(v))
		}
		if len(s) < 3 || len(s) > 4 {
			return nil, fmt.Errorf("mode %q: want 3 or 4 octal digits like \"0644\"", s)
		}
		n, err := strconv.ParseUint(s, 8, 32)
		if err != nil || n > 0o7777 {
			return nil, fmt.Errorf("mode %q: want 3 or 4 octal digits like \"0644\"", s)
		}
		return fmt.Sprintf("%04o", n), nil
	case KindDuration:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a %s, got %s", a.Kind, typeName(v))
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("duration %q: want a positive duration like \"30s\" or \"5m\"", s)
		}
		return s, nil
	case KindScalar:
		// A value written into a file (a sysctl, an ini setting) reads
		// naturally as a TOML integer; it is stored as the text it
		// stands for.
		switch x := v.(type) {
		case string:
			return x, nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		}
		return nil, fmt.Errorf("want a %s, got %s", a.Kind, typeName(v))
	case KindSignal:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a %s, got %s", a.Kind, typeName(v))
		}
		if SignalNumber(s) == 0 {
			return nil, fmt.Errorf("signal %q: want a signal name like SIGTERM, SIGINT, SIGQUIT, SIGHUP", s)
		}
		return s, nil
	}
	return nil, fmt.Errorf("attribute kind %v cannot be coerced", a.Kind)
}

var signals = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGTERM": syscall.SIGTERM, "SIGKILL": syscall.SIGKILL, "SIGUSR1": syscall.SIGUSR1,
	"SIGUSR2": syscall.SIGUSR2, "SIGWINCH": syscall.SIGWINCH, "SIGABRT": syscall.SIGABRT,
}

// SignalNumber returns the signal a stop_signal attribute names (SIGTERM,
// sigterm), or 0 when it names none.
func SignalNumber(s string) syscall.Signal {
	return signals[strings.ToUpper(s)]
}

// checkRef checks a "type:name" resource reference's shape.
func checkRef(ref string) error {
	typ, name, ok := SplitID(ref)
	if !ok || name == "" {
		return fmt.Errorf("reference %q: want type:name, like \"package:nginx\"", ref)
	}
	if _, known := Schemas[typ]; !known {
		return fmt.Errorf("reference %q: unknown resource type %q (want one of %s)", ref, typ, strings.Join(TypeNames(), ", "))
	}
	return nil
}
