package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
)

// debVersion is what dpkg accepts as a version without an epoch or a
// Debian revision: it starts with a digit and holds only alphanumerics and
// . + ~ (a hyphen would start a revision).
var debVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// CheckVersion turns a version given by hand (v1.2.3, 1.2.3-rc1, 1.2.3)
// into the packages' version: the leading v dropped and a pre-release
// hyphen made a tilde, so that 1.2.3~rc1 sorts before 1.2.3 as semver
// says. Anything else dpkg would refuse is an error naming why.
func CheckVersion(v string) (string, error) {
	d := strings.TrimPrefix(strings.TrimSpace(v), "v")
	d = strings.ReplaceAll(d, "-", "~")
	if !debVersion.MatchString(d) {
		return "", fmt.Errorf("%q is not a Debian version: want a digit first, then letters, digits and . + ~ - only", v)
	}
	return d, nil
}

// describe matches the output of git describe --tags --always --dirty: a
// tag with commits since it (v1.2.3-4-gabc1234) or a bare commit
// (abc1234), maybe -dirty.
var describe = regexp.MustCompile(`^(?:(.+)-([0-9]+)-g([0-9a-f]{4,40})|([0-9a-f]{4,40})|(.+?))(-dirty)?$`)

// DescribeVersion turns git describe --tags --always --dirty output and the
// commit's time into a Debian version that sorts as the history does:
//
//	v1.2.3                 → 1.2.3
//	v1.2.3-4-gabc1234      → 1.2.3+git20261203140512.abc1234   (after 1.2.3, before 1.2.4)
//	abc1234 (no tag)       → 0.0.0~git20261203140512.abc1234
//	…-dirty                → the same, with .dirty appended
//
// The commit time (UTC, to the second) orders builds between tags.
func DescribeVersion(desc string, commit time.Time) (string, error) {
	m := describe.FindStringSubmatch(strings.TrimSpace(desc))
	if m == nil {
		return "", fmt.Errorf("git describe said %q: not a tag or a commit", desc)
	}
	stamp := commit.UTC().Format("20060102150405")
	var v string
	switch {
	case m[1] != "":
		base, err := CheckVersion(m[1])
		if err != nil {
			return "", fmt.Errorf("tag %q: %w", m[1], err)
		}
		v = base + "+git" + stamp + "." + m[3]
	case m[4] != "":
		v = "0.0.0~git" + stamp + "." + m[4]
	default:
		base, err := CheckVersion(m[5])
		if err != nil {
			return "", fmt.Errorf("tag %q: %w", m[5], err)
		}
		v = base
	}
	if m[6] != "" {
		v += ".dirty"
		if m[1] == "" && m[4] == "" {
			// A tag on a dirty tree is not that release: it sorts after it.
			v = strings.TrimSuffix(v, ".dirty") + "+dirty"
		}
	}
	if !debVersion.MatchString(v) {
		return "", fmt.Errorf("git describe said %q, which makes %q: not a Debian version", desc, v)
	}
	return v, nil
}

// TreeVersion is the version of the tree at src: from git describe when
// src is a git work tree with git installed, else the module version this
// program was built at; neither is an error.
func TreeVersion(ctx context.Context, src string) (string, error) {
	desc, derr := gitOutput(ctx, src, "describe", "--tags", "--always", "--dirty")
	if derr == nil {
		when, err := gitOutput(ctx, src, "show", "-s", "--format=%ct", "HEAD")
		if err != nil {
			return "", err
		}
		var secs int64
		if _, err := fmt.Sscan(when, &secs); err != nil {
			return "", fmt.Errorf("git show said %q for the commit time: %w", when, err)
		}
		return DescribeVersion(desc, time.Unix(secs, 0))
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return CheckVersion(bi.Main.Version)
	}
	return "", fmt.Errorf("no version: %w; and no module version in this build", derr)
}

// CommitTime is the time of the tree's HEAD commit, which the packages'
// files carry so that the same commit packs the same way; the zero time
// when src is not a git work tree.
func CommitTime(ctx context.Context, src string) time.Time {
	when, err := gitOutput(ctx, src, "show", "-s", "--format=%ct", "HEAD")
	if err != nil {
		return time.Time{}
	}
	var secs int64
	if _, err := fmt.Sscan(when, &secs); err != nil {
		return time.Time{}
	}
	return time.Unix(secs, 0).UTC()
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
