package facts

import (
	"os/exec"
	"syscall"
)

// utsname is the part of uname(2) the collectors read.
type utsname struct {
	sysname, nodename, release, version, machine string
}

func uname() (utsname, error) {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return utsname{}, err
	}
	return utsname{
		sysname:  cstr(u.Sysname[:]),
		nodename: cstr(u.Nodename[:]),
		release:  cstr(u.Release[:]),
		version:  cstr(u.Version[:]),
		machine:  cstr(u.Machine[:]),
	}, nil
}

// cstr turns a NUL-terminated utsname field into a string. The element type
// is int8 on some architectures and uint8 on others, hence the generic.
func cstr[T int8 | uint8](b []T) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// fsUsage is the space of one mounted filesystem, in bytes.
type fsUsage struct{ size, used, avail int64 }

func statfs(path string) (fsUsage, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		return fsUsage{}, err
	}
	bs := int64(s.Frsize)
	if bs == 0 {
		bs = int64(s.Bsize)
	}
	return fsUsage{
		size:  int64(s.Blocks) * bs,
		used:  int64(s.Blocks-s.Bfree) * bs,
		avail: int64(s.Bavail) * bs,
	}, nil
}

// inOwnGroup starts cmd in a process group of its own and makes its
// cancellation kill the whole group, so that a fact script's children die
// with it.
func inOwnGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// The group id is the leader's pid; a negative pid signals the group.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// killGroup kills what is left of cmd's process group after it exited.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ESRCH: nothing left, as hoped
	}
}
