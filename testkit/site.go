package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// WriteSite writes files (slash-separated path → content) into a new
// temporary directory and returns it.
func WriteSite(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	WriteFiles(tb, dir, files)
	return dir
}

// WriteFiles writes files (slash-separated path → content) under dir,
// making the directories they need.
func WriteFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// SyntheticOptions shape a generated site.
type SyntheticOptions struct {
	Roles        int // roles in the site
	RolesPerNode int // roles each node gets
	PerRole      int // resources each role declares
}

// SyntheticSite generates a site for benchmarks that looks like a real one:
// Roles roles of PerRole resources each (directories, templated files with
// modes and notifications, packages, services with health checks, execs with
// guards), classification by name glob and by facts, and a data hierarchy
// with per-os, per-role and per-node levels. A node named node-N gets
// RolesPerNode roles chosen by N, so nodes differ while the site is the same.
// It returns the site directory.
func SyntheticSite(tb testing.TB, o SyntheticOptions) string {
	tb.Helper()
	return WriteSite(tb, SyntheticFiles(o))
}

// SyntheticFiles returns the files of SyntheticSite (slash path →
// content), for a benchmark program that writes them itself.
func SyntheticFiles(o SyntheticOptions) map[string]string {
	files := map[string]string{
		"herd.toml":               `hierarchy = ["nodes/{node}", "nodes.toml", "roles/{role}", "os/{facts.os.family}", "common"]` + "\n",
		"data/common.toml":        "log_level = \"info\"\nworkers = 2\n[limits]\nnofile = 1024\nnproc = 512\n",
		"data/os/debian.toml":     "pkg_suffix = \"-deb\"\n[limits]\nnofile = 4096\n",
		"data/os/redhat.toml":     "pkg_suffix = \"-rpm\"\n",
		"templates/app.conf.tmpl": SyntheticTemplate(0),
	}
	var nodes strings.Builder
	// Every node gets the base role; the rest are picked by group globs.
	fmt.Fprintf(&nodes, "[[node]]\nroles = [\"role-0\"]\n\n")
	// Ten groups by the name's last digit, so that every node has a group.
	for g := 0; g < 10; g++ {
		var roles []string
		for k := 0; k < o.RolesPerNode-1; k++ {
			roles = append(roles, fmt.Sprintf("%q", fmt.Sprintf("role-%d", 1+(g*(o.RolesPerNode-1)+k)%(o.Roles-1))))
		}
		fmt.Fprintf(&nodes, "[[node]]\nmatch = \"node-*%d\"\nwhen = \"facts.os.family == 'debian' || facts.processors.count > 1\"\nroles = [%s]\n[node.params]\nworkers = %d\n\n",
			g, strings.Join(roles, ", "), 2+g)
	}
	files["nodes.toml"] = nodes.String()
	for r := 0; r < o.Roles; r++ {
		var b strings.Builder
		fmt.Fprintf(&b, "description = \"synthetic role %d\"\n\n[params]\nport_%d = %d\nupstreams = [\"10.0.0.1:80\", \"10.0.0.2:80\"]\n\n", r, r, 8000+r)
		fmt.Fprintf(&b, "[[file]]\npath = \"/srv/r%d\"\nensure = \"directory\"\nmode = \"0755\"\n\n", r)
		for i := 1; i < o.PerRole; i++ {
			switch i % 5 {
			case 0:
				fmt.Fprintf(&b, "[[package]]\nname = \"pkg-%d-%d{{ .params.pkg_suffix }}\"\n\n", r, i)
			case 1:
				fmt.Fprintf(&b, "[[service]]\nname = \"svc-%d-%d\"\nrun = [\"/usr/bin/svc\", \"--port\", \"{{ .params.port_%d }}\"]\nuser = \"svc\"\nrestart = \"always\"\nhealth = { tcp = \"127.0.0.1:{{ .params.port_%d }}\" }\nrequire = [\"file:/srv/r%d/f%d.conf\"]\n\n", r, i, r, r, r, i+1)
			case 2:
				fmt.Fprintf(&b, "[[file]]\npath = \"/srv/r%d/f%d.conf\"\ntemplate = \"app.conf.tmpl\"\nmode = \"0640\"\nnotify = [\"service:svc-%d-%d\"]\n\n", r, i, r, i-1)
			case 3:
				fmt.Fprintf(&b, "[[file]]\npath = \"/srv/r%d/f%d.txt\"\ncontent = \"node {{ .node }} role %d item %d\\n\"\nmode = \"0644\"\n\n", r, i, r, i)
			case 4:
				fmt.Fprintf(&b, "[[exec]]\nname = \"init-%d-%d\"\ncommand = [\"/bin/sh\", \"-c\", \"touch /srv/r%d/.init%d\"]\ncreates = \"/srv/r%d/.init%d\"\nwhen = \"facts.os.family == 'debian'\"\n\n", r, i, r, i, r, i)
			}
		}
		files[fmt.Sprintf("roles/role-%d.toml", r)] = b.String()
		files[fmt.Sprintf("data/roles/role-%d.toml", r)] = fmt.Sprintf("log_level = \"debug\"\nrole_marker_%d = true\n", r)
	}
	for n := 0; n < 100; n++ {
		files[fmt.Sprintf("data/nodes/node-%d.toml", n)] = fmt.Sprintf("workers = %d\n", 10+n)
	}
	return files
}

// SyntheticTemplate is the template every synthetic node renders several
// times; rev changes a comment in it, and so every node's catalog: what a
// benchmark writes to stand for a commit.
func SyntheticTemplate(rev int) string {
	return fmt.Sprintf(`# {{ .node }} managed by herd (rev %d)
workers = {{ .params.workers }}
log_level = {{ .params.log_level }}
nofile = {{ .params.limits.nofile }}
{{- range $i, $s := .params.upstreams }}
upstream_{{ $i }} = {{ $s }}
{{- end }}
cpus = {{ .facts.processors.count }}
`, rev)
}

// SyntheticFacts returns facts for the i-th synthetic node: the os family
// and processor count vary so that conditions and data levels differ.
func SyntheticFacts(i int) map[string]any {
	family, name := "debian", "Debian GNU/Linux"
	if i%7 == 3 {
		family, name = "redhat", "Rocky Linux"
	}
	return map[string]any{
		"os":         map[string]any{"family": family, "name": name, "release": map[string]any{"full": "12.8", "major": "12"}},
		"processors": map[string]any{"count": int64(1 + i%8)},
		"memory":     map[string]any{"total_bytes": int64(1+i%16) << 30},
		"networking": map[string]any{"primary_ip": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)},
	}
}
