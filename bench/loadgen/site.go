package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// siteShape is the synthetic site the server serves. The defaults give
// each node about 200 resources, a canonical catalog of about 47 KB, the
// same site BENCHMARKS.md's compile figures use (testkit.SyntheticSite,
// which needs a testing.TB, hence this copy).
type siteShape struct {
	Roles, RolesPerNode, PerRole int
}

// writeSite writes the synthetic site into dir.
func writeSite(dir string, o siteShape) error {
	files := map[string]string{
		"herd.toml":               `hierarchy = ["nodes/{node}", "nodes.toml", "roles/{role}", "os/{facts.os.family}", "common"]` + "\n",
		"data/common.toml":        "log_level = \"info\"\nworkers = 2\n[limits]\nnofile = 1024\nnproc = 512\n",
		"data/os/debian.toml":     "pkg_suffix = \"-deb\"\n[limits]\nnofile = 4096\n",
		"data/os/redhat.toml":     "pkg_suffix = \"-rpm\"\n",
		"templates/app.conf.tmpl": appTemplate(0),
	}
	var nodes strings.Builder
	// Every node gets the base role; the rest are picked by group globs.
	fmt.Fprintf(&nodes, "[[node]]\nroles = [\"role-0\"]\n\n")
	for g := range 10 {
		var roles []string
		for k := range o.RolesPerNode - 1 {
			roles = append(roles, fmt.Sprintf("%q", fmt.Sprintf("role-%d", 1+(g*(o.RolesPerNode-1)+k)%(o.Roles-1))))
		}
		fmt.Fprintf(&nodes, "[[node]]\nmatch = \"node-*%d\"\nwhen = \"facts.os.family == 'debian' || facts.processors.count > 1\"\nroles = [%s]\n[node.params]\nworkers = %d\n\n",
			g, strings.Join(roles, ", "), 2+g)
	}
	files["nodes.toml"] = nodes.String()
	for r := range o.Roles {
		var b strings.Builder
		fmt.Fprintf(&b, "description = \"synthetic role %d\"\n\n[params]\nport_%d = %d\nupstreams = [\"10.0.0.1:80\", \"10.0.0.2:80\"]\n\n", r, r, 8000+r)
		fmt.Fprintf(&b, "[[file]]\npath = \"/srv/r%d\"\nensure = \"directory\"\nmode = \"0755\"\n\n", r)
		for i := 1; i < o.PerRole; i++ {
			switch i % 5 {
			case 0:
				fmt.Fprintf(&b, "[[package]]\nname = \"pkg-%d-%d{{ .params.pkg_suffix }}\"\n\n", r, i)
			case 1:
				fmt.Fprintf(&b, "[[service]]\nname = \"svc-%d-%d\"\nrun = [\"/usr/bin/svc\", \"--port\", \"{{ .params.port_%d }}\"]\nrestart = \"always\"\nhealth = { tcp = \"127.0.0.1:{{ .params.port_%d }}\" }\nrequire = [\"file:/srv/r%d/f%d.conf\"]\n\n", r, i, r, r, r, i+1)
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
	for n := range 100 {
		files[fmt.Sprintf("data/nodes/node-%d.toml", n)] = fmt.Sprintf("workers = %d\n", 10+n)
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("writing the site: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing the site: %w", err)
		}
	}
	return nil
}

// appTemplate is the template every node renders several times; rev
// changes a comment in it, which changes every node's catalog: the
// "commit" of the converge scenario.
func appTemplate(rev int) string {
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

// commitSite changes the site as a commit would: the shared template, so
// that every node's catalog changes. The write goes through a rename, so
// the server never loads a half-written file.
func commitSite(dir string, rev int) error {
	p := filepath.Join(dir, "templates", "app.conf.tmpl")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(appTemplate(rev)), 0o644); err != nil {
		return fmt.Errorf("changing the site: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("changing the site: %w", err)
	}
	return nil
}

// nodeFacts returns the facts of the i-th synthetic node, as
// testkit.SyntheticFacts does, plus enough of a real host's facts to make
// the document a realistic few KB.
func nodeFacts(i int) map[string]any {
	family, name := "debian", "Debian GNU/Linux"
	if i%7 == 3 {
		family, name = "redhat", "Rocky Linux"
	}
	mounts := map[string]any{}
	for _, m := range []string{"/", "/boot", "/var", "/srv", "/home"} {
		mounts[m] = map[string]any{"device": "/dev/vda" + fmt.Sprint(len(m)), "filesystem": "ext4", "size_bytes": int64(20) << 30, "used_bytes": int64(i%20) << 28}
	}
	return map[string]any{
		"os":         map[string]any{"family": family, "name": name, "release": map[string]any{"full": "12.8", "major": "12"}},
		"processors": map[string]any{"count": int64(1 + i%8), "models": []any{"Intel(R) Xeon(R) CPU"}},
		"memory":     map[string]any{"total_bytes": int64(1+i%16) << 30},
		"networking": map[string]any{"primary_ip": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "hostname": fmt.Sprintf("node-%d", i)},
		"kernel":     map[string]any{"name": "Linux", "release": "6.1.0-28-amd64"},
		"mounts":     mounts,
	}
}
