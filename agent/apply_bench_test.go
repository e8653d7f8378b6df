package agent_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/testkit"
)

// benchSite writes bench/apply.sh's site in dir: 200 resources (20
// directories of 8 files and a link each) and, with newTypes, 20 each of
// line, ini, cron, sysctl, mount, authorized_key, apt_repository and a
// file tree of 20 files. It lays root out for them: the sysctls' stand-in
// /proc/sys files, and the authorized keys' user in etc/passwd.
func benchSite(tb testing.TB, dir, root string, newTypes bool) {
	tb.Helper()
	var role strings.Builder
	for d := range 20 {
		fmt.Fprintf(&role, "[[file]]\npath = \"/srv/bench/d%02d\"\nensure = \"directory\"\nmode = \"0755\"\n\n", d)
		for f := range 8 {
			mode := "0644"
			if f%2 == 1 {
				mode = "0640"
			}
			fmt.Fprintf(&role, "[[file]]\npath = \"/srv/bench/d%02d/f%d\"\ncontent = \"file %d of directory %02d\\n\"\nmode = %q\n\n", d, f, f, d, mode)
		}
		fmt.Fprintf(&role, "[[file]]\npath = \"/srv/bench/d%02d/link\"\nensure = \"link\"\ntarget = \"f0\"\n\n", d)
	}
	files := map[string]string{"nodes.toml": "[[node]]\nroles = [\"bench\"]\n"}
	mkdirs := []string{"srv/bench"}
	if newTypes {
		key, err := os.ReadFile("../examples/site/files/herd-demo-repo.asc")
		if err != nil {
			tb.Fatal(err)
		}
		files["files/bench.asc"] = string(key)
		mkdirs = append(mkdirs, "srv/bench/new", "etc/cron.d", "etc/sysctl.d", "proc/sys/herdbench", "home/bench")
		role.WriteString("[[file]]\npath = \"/srv/bench/tree\"\nsource = \"tree/\"\n\n")
		for i := range 20 {
			files[fmt.Sprintf("files/tree/t%02d", i)] = fmt.Sprintf("file %d of the tree\n", i)
			fmt.Fprintf(&role, "[[line]]\npath = \"/srv/bench/new/lines.conf\"\nline = \"option%02d = on\"\n\n", i)
			fmt.Fprintf(&role, "[[ini]]\npath = \"/srv/bench/new/app.ini\"\nsection = \"bench\"\nsetting = \"key%02d\"\nvalue = \"%d\"\n\n", i, i)
			fmt.Fprintf(&role, "[[cron]]\nname = \"bench-%02d\"\nschedule = \"%d 3 * * *\"\ncommand = \"true\"\n\n", i, i)
			fmt.Fprintf(&role, "[[sysctl]]\nname = \"herdbench.p%02d\"\nvalue = \"1\"\n\n", i)
			fmt.Fprintf(&role, "[[mount]]\nname = \"/srv/bench/mnt%02d\"\ndevice = \"tmpfs\"\nfstype = \"tmpfs\"\noptions = \"size=1m\"\nensure = \"present\"\n\n", i)
			fmt.Fprintf(&role, "[[authorized_key]]\nname = \"bench-%02d\"\nuser = \"bench\"\nkey = %q\n\n", i, benchSSHKey(i))
			fmt.Fprintf(&role, "[[apt_repository]]\nname = \"bench-%02d\"\nuris = [\"https://deb.example.com/bench-%02d\"]\nsuites = [\"bookworm\"]\ncomponents = [\"main\"]\nkey = \"bench.asc\"\n\n", i, i)
		}
	}
	files["roles/bench.toml"] = role.String()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	testkit.InitSandboxHost(tb, root)
	for _, d := range mkdirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if !newTypes {
		return
	}
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("proc/sys/herdbench/p%02d", i)), []byte("0\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	pw, err := os.OpenFile(filepath.Join(root, "etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer pw.Close()
	if _, err := pw.WriteString("bench:x:3000:3000::/home/bench:/bin/sh\n"); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "home/bench"), 3000, 3000); err != nil {
		tb.Fatal(err)
	}
}

// benchSSHKey is the i'th of a set of valid ed25519 public keys, made from
// a fixed seed (only the public half is used).
func benchSSHKey(i int) string {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = byte(i)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob)
}

// BenchmarkApplyNoChange is bench/apply.sh's no-change run in process: a
// whole `herd apply` (load the site, compile, check every resource, write
// the run's history) of the 200-resource catalog, and of the same plus 20
// of each of issue 13's types, whose cost should stay within 1.5 times the
// plain run's.
func BenchmarkApplyNoChange(b *testing.B) {
	testkit.NeedRoot(b, "cron files and authorized_keys are chowned to their users")
	for _, bc := range []struct {
		name     string
		newTypes bool
	}{{"200", false}, {"200+new-types", true}} {
		b.Run(bc.name, func(b *testing.B) {
			site, root := b.TempDir(), b.TempDir()
			benchSite(b, site, root, bc.newTypes)
			ctx := context.Background()
			opts := agent.ApplyOptions{Site: site, Root: root, Node: "bench"}
			if _, err := agent.Apply(ctx, opts); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				r, err := agent.Apply(ctx, opts)
				if err != nil {
					b.Fatal(err)
				}
				if r.Summary.InSync != len(r.Events) {
					b.Fatalf("a no-change run changed something: %+v", r.Summary)
				}
			}
		})
	}
}
