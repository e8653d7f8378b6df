// Command herd-pkg builds Herd's Debian packages from this tree:
// herd-agent_VERSION_ARCH.deb (the node binary, its unit, agent.toml,
// /var/lib/herd) and herd_VERSION_ARCH.deb (the whole tool, the server's
// unit, server.toml, the herd user and /var/lib/herd-server). It builds
// both binaries with the version stamped in, then writes the packages with
// nfpm, as a library: no dpkg-deb, no shell pipeline.
//
// It is a module of its own because nfpm's file globbing needs a major
// version of github.com/gobwas/glob that Herd's policy engine (OPA) has
// moved past; Herd's binaries never link nfpm. Run it from the tree:
//
//	go -C cmd/herd-pkg run . --out dist
//	go -C cmd/herd-pkg run . --version 1.2.0 --arch amd64,arm64 --out /tmp/debs
//
// The packaging inputs (units, maintainer scripts, default configuration)
// are in packaging/ at the top of the tree.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("herd-pkg", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		out     = fl.String("out", "", "directory the .deb files are written to, made if missing; relative to the top of the tree (default dist)")
		version = fl.String("version", "", "the packages' version (Debian syntax, a leading v dropped); default: from git describe, else the module version")
		arches  = fl.String("arch", "amd64", "comma-separated Debian architectures: amd64, arm64 (arm64 cross-compiles with aarch64-linux-gnu-gcc)")
		src     = fl.String("src", "", "the top of Herd's tree (default: found upwards from the working directory)")
		verbose = fl.Bool("v", false, "log each step")
	)
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: go -C cmd/herd-pkg run . [--out DIR] [--version V] [--arch amd64,arm64]\n\nBuilds herd-agent_VERSION_ARCH.deb and herd_VERSION_ARCH.deb.\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "herd-pkg: unexpected arguments %q\n", fl.Args())
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	o := Options{Src: *src, Log: log}
	for a := range strings.SplitSeq(*arches, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.Arches = append(o.Arches, a)
		}
	}
	if o.Src == "" {
		wd, err := os.Getwd()
		if err != nil {
			fmt.Fprintf(stderr, "herd-pkg: %v\n", err)
			return 1
		}
		if o.Src, err = FindTree(wd); err != nil {
			fmt.Fprintf(stderr, "herd-pkg: %v (pass --src)\n", err)
			return 1
		}
	}
	// go -C cmd/herd-pkg runs this in cmd/herd-pkg: relative paths are
	// taken from the top of the tree, where a user thinks from.
	o.Out = *out
	if o.Out == "" {
		o.Out = "dist"
	}
	if !filepath.IsAbs(o.Out) {
		o.Out = filepath.Join(o.Src, o.Out)
	}
	if *version != "" {
		v, err := CheckVersion(*version)
		if err != nil {
			fmt.Fprintf(stderr, "herd-pkg: --version: %v\n", err)
			return 2
		}
		o.Version = v
	} else {
		v, err := TreeVersion(ctx, o.Src)
		if err != nil {
			fmt.Fprintf(stderr, "herd-pkg: %v (pass --version)\n", err)
			return 1
		}
		o.Version = v
	}
	debs, err := Build(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "herd-pkg: %v\n", err)
		return 1
	}
	for _, d := range debs {
		fmt.Fprintln(stdout, d)
	}
	return 0
}
