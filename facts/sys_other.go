//go:build !linux

package facts

import (
	"errors"
	"os/exec"
)

// Herd's agent runs on Linux; elsewhere the package builds (so that the CLI
// can be used to read a captured tree) but the syscall-based facts fail.
var errUnsupported = errors.New("not supported on this operating system")

type utsname struct {
	sysname, nodename, release, version, machine string
}

func uname() (utsname, error) { return utsname{}, errUnsupported }

type fsUsage struct{ size, used, avail int64 }

func statfs(string) (fsUsage, error) { return fsUsage{}, errUnsupported }

func inOwnGroup(*exec.Cmd) {}

func killGroup(*exec.Cmd) {}
