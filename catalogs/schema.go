package catalogs

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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
)

var kindNames = [...]string{"string", "integer", "boolean", "list of strings", "table of strings", "file mode string like \"0644\"", "duration like \"30s\"", "list of resource references like \"package:nginx\"", "signal name like \"SIGTERM\"", "table"}

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
	{Name: "ignore", Kind: KindList, Doc: "attributes the agent must leave alone because another tool owns them"},
	{Name: "audit", Kind: KindBool, Doc: "only check: the agent reports how the resource differs (status drift) and never changes or refreshes it"},
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
}

// SensitiveAttr reports whether attribute name of resource type typ is
// sensitive by nature (Attr.Sensitive).
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
	Doc: "a file, directory or symbolic link",
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
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		ensure, _ := a["ensure"].(string)
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
				if ensure != "file" {
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
	Doc: "a software package",
	Attrs: []Attr{
		{Name: "name", Kind: KindString, Required: true, Doc: "the package name"},
		{Name: "ensure", Kind: KindString, Doc: "installed (default), absent, purged, latest, or a version"},
		{Name: "provider", Kind: KindString, Enum: []string{"apt"}, Doc: "package manager (default apt)"},
		{Name: "source", Kind: KindString, Doc: "a .deb under the site's files/ directory, installed with dpkg"},
	},
	check: func(a map[string]any, bad func(string, string, ...any)) {
		if e, _ := a["ensure"].(string); strings.ContainsAny(e, " \t\n") {
			bad("ensure", "ensure %q: want installed, absent, purged, latest or a version", e)
		}
		if s, ok := a["source"].(string); ok && !strings.HasSuffix(s, ".deb") {
			bad("source", "source %q: want a .deb file", s)
		}
	},
}

var serviceSchema = &Schema{
	Type: "service", Key: "name",
	Doc: "a long-running process, supervised by the agent or by systemd",
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
	Doc: "a local user account",
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
	Doc: "a local group",
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
			for _, ref := range list {
				if err := checkRef(ref); err != nil {
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
