package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/herdcm/herd/testkit"
)

// writeSite writes the synthetic site of the compile benchmarks
// (testkit.SyntheticFiles: about 200 resources and a 47 KB catalog per
// node with the defaults) into dir.
func writeSite(dir string, o testkit.SyntheticOptions) error {
	for name, content := range testkit.SyntheticFiles(o) {
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

// commitSite changes the site as a commit would: the shared template, so
// that every node's catalog changes. The write goes through a rename, so
// the server never loads a half-written file.
func commitSite(dir string, rev int) error {
	p := filepath.Join(dir, "templates", "app.conf.tmpl")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(testkit.SyntheticTemplate(rev)), 0o644); err != nil {
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
