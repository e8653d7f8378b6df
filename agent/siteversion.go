package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/herdcm/herd/catalogs"
)

// siteVersions labels a masterless site's version by its git commit when
// the checkout is a git work tree, as the server labels it, so that a
// run's summary and report name the commit an operator can look up, not
// a content digest. A directory outside git keeps the content digest and
// spawns nothing. Asking git costs two child processes; the label is
// kept per (content, HEAD), so that the site daemon's runs of an
// unchanged checkout ask no more.
type siteVersions struct {
	mu   sync.Mutex
	memo map[string]string // head key + content digest → version
}

// label returns the version of the site in dir whose content version
// (from a ContentVersion load) is contentVersion.
func (v *siteVersions) label(ctx context.Context, dir, contentVersion string) string {
	digest, ok := strings.CutPrefix(contentVersion, "sha256:")
	if !ok {
		return contentVersion
	}
	gitDir := findGitDir(dir)
	if gitDir == "" {
		return contentVersion
	}
	key, ok := headKey(gitDir)
	if ok {
		key += "\x00" + digest
		v.mu.Lock()
		label, hit := v.memo[key]
		v.mu.Unlock()
		if hit {
			return label
		}
	}
	label := catalogs.GitVersion(ctx, dir, digest)
	if ok {
		v.mu.Lock()
		if v.memo == nil || len(v.memo) > 64 {
			v.memo = map[string]string{}
		}
		v.memo[key] = label
		v.mu.Unlock()
	}
	return label
}

// findGitDir returns the git directory of the work tree holding dir (a
// .git directory, or the one a .git file names), or "" when dir is in
// no work tree.
func findGitDir(dir string) string {
	d, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(d, ".git")
		if fi, err := os.Stat(p); err == nil {
			if fi.IsDir() {
				return p
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return ""
			}
			g, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
			if !ok {
				return ""
			}
			if !filepath.IsAbs(g) {
				g = filepath.Join(d, g)
			}
			return g
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

// headKey is what names HEAD's commit without running git: HEAD, and the
// loose ref it points at. ok is false when the commit cannot be pinned
// that way (a packed ref): then nothing is remembered.
func headKey(gitDir string) (key string, ok bool) {
	head, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
	if err != nil {
		return "", false
	}
	ref, isRef := strings.CutPrefix(string(bytes.TrimSpace(head)), "ref: ")
	if !isRef {
		return string(head), true // a detached HEAD names its commit
	}
	if !strings.HasPrefix(ref, "refs/") || strings.Contains(ref, "..") {
		return "", false
	}
	for _, base := range []string{gitDir, commonDir(gitDir)} {
		if b, err := os.ReadFile(filepath.Join(base, filepath.FromSlash(ref))); err == nil {
			return ref + "\x00" + string(bytes.TrimSpace(b)), true
		}
	}
	return "", false
}

// commonDir is a linked work tree's shared git directory (its
// "commondir" file), or gitDir itself.
func commonDir(gitDir string) string {
	b, err := os.ReadFile(filepath.Join(gitDir, "commondir"))
	if err != nil {
		return gitDir
	}
	c := strings.TrimSpace(string(b))
	if !filepath.IsAbs(c) {
		c = filepath.Join(gitDir, c)
	}
	return c
}
