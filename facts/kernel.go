package facts

import (
	"context"
	"fmt"
)

// collectKernel reports kernel {name, release, version} and arch. On the real
// host they come from uname(2). Under a sandbox root the files
// proc/sys/kernel/{ostype,osrelease,version,arch} are read where the tree
// has them, and uname fills the rest: a sandbox runs on this kernel.
func collectKernel(_ context.Context, h *host) (Facts, error) {
	u, uerr := uname()
	vals := [4]string{u.sysname, u.release, u.version, u.machine}
	if !h.live {
		files := [4]string{"ostype", "osrelease", "version", "arch"}
		for i, name := range files {
			if v, err := h.readLine("/proc/sys/kernel/" + name); err == nil {
				vals[i] = v
			}
		}
		if vals != [4]string{} {
			uerr = nil
		}
	}
	if uerr != nil {
		return nil, fmt.Errorf("uname: %w", uerr)
	}
	return Facts{
		"kernel": map[string]any{"name": vals[0], "release": vals[1], "version": vals[2]},
		"arch":   vals[3],
	}, nil
}
