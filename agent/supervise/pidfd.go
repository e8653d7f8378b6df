package supervise

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A pidfd refers to one process, not to a pid number, so signalling it or
// waiting on it can never reach a later process that reused the pid. The
// supervisor keeps one per running service, for its own children and for
// adopted processes alike: it becomes readable when the process exits.
//
// The descriptor is made non-blocking and wrapped in an *os.File so that Go's
// network poller waits on it: no thread is parked per service, and closing
// the file ends the wait.

// pidfdFile wraps a pidfd so that the runtime poller can wait on it.
func pidfdFile(fd, pid int) (*os.File, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting pidfd non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid)), nil
}

// openPidfd opens a pidfd for a process that is not (known to be) our child.
func openPidfd(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("opening pidfd of %d: %w", pid, err)
	}
	return pidfdFile(fd, pid)
}

// awaitExit blocks until the process behind f has exited (nil) or f is
// closed (an error). It does not reap the process.
func awaitExit(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			return false
		}
		if err != nil {
			perr = err
			return true
		}
		// Not yet: false makes the poller wait for readability.
		return n > 0
	})
	if err != nil {
		return err
	}
	return perr
}

// exitedNow reports, without blocking, whether the process behind f exited.
func exitedNow(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return true
	}
	done := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		done = err == nil && n > 0
	})
	return done
}

// pidfdSignal sends sig to the process behind f.
func pidfdSignal(f *os.File, sig syscall.Signal) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	if errors.Is(serr, unix.ESRCH) {
		return nil
	}
	return serr
}

// Codes of a SIGCHLD siginfo (not exported by x/sys).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// reap collects the exit status of an exited process through its pidfd. A
// process that is not our child (adopted from an earlier agent) cannot be
// reaped: known is false, and its parent (init) reaps it.
func reap(f *os.File) (code int, sig syscall.Signal, known bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, 0, false, err
	}
	var info unix.Siginfo
	var werr error
	if err := rc.Control(func(fd uintptr) {
		werr = unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
	}); err != nil {
		return -1, 0, false, err
	}
	if errors.Is(werr, unix.ECHILD) {
		return -1, 0, false, nil
	}
	if werr != nil {
		return -1, 0, false, fmt.Errorf("waitid: %w", werr)
	}
	pid, status := sigchld(&info)
	if pid == 0 {
		// WNOHANG and nothing to collect: not exited after all.
		return -1, 0, false, errors.New("waitid: process has not exited")
	}
	switch info.Code {
	case cldExited:
		return int(status), 0, true, nil
	case cldKilled, cldDumped:
		return -1, syscall.Signal(status), true, nil
	}
	return -1, 0, false, fmt.Errorf("waitid: unexpected si_code %d", info.Code)
}

// sigchld reads si_pid and si_status of a SIGCHLD siginfo. x/sys exposes
// only the head of siginfo_t; the union after it starts at the first
// pointer-aligned offset after the three int fields, and holds si_pid,
// si_uid and si_status in that order (asm-generic/siginfo.h).
func sigchld(info *unix.Siginfo) (pid, status int32) {
	const ptr = unsafe.Sizeof(uintptr(0))
	off := (3*4 + ptr - 1) &^ (ptr - 1)
	b := unsafe.Slice((*byte)(unsafe.Pointer(info)), unsafe.Sizeof(*info))
	pid = int32(binary.NativeEndian.Uint32(b[off:]))
	status = int32(binary.NativeEndian.Uint32(b[off+8:]))
	return pid, status
}
