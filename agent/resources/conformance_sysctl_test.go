package resources

import (
	"os"
	"path/filepath"
	"testing"
)

// sysctlSandbox makes a sandbox root's /proc/sys/net/ipv4/ip_forward (a
// plain file standing in for the kernel's) and /etc/sysctl.d.
func sysctlSandbox(t *testing.T, h *Host, live string) {
	t.Helper()
	writeRootFile(t, h, "proc/sys/net/ipv4/ip_forward", live)
	if err := os.MkdirAll(filepath.Join(h.Root, "etc/sysctl.d"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// sysctlConformance returns the sysctl type's conformance cases.
func sysctlConformance(t *testing.T) []conformanceCase {
	return []conformanceCase{
		{
			name:  "sysctl/live and persisted",
			typ:   &Sysctl{},
			res:   res("sysctl", "net.ipv4.ip_forward", map[string]any{"value": "1"}),
			setup: func(t *testing.T, h *Host, _ *testFiles) { sysctlSandbox(t, h, "0\n") },
			drift: func(t *testing.T, h *Host) {
				writeRootFile(t, h, "proc/sys/net/ipv4/ip_forward", "0\n")
				os.Remove(filepath.Join(h.Root, "etc/sysctl.d/60-herd-net.ipv4.ip_forward.conf"))
			},
		},
		{
			name:  "sysctl/persisted only",
			typ:   &Sysctl{},
			res:   res("sysctl", "net.ipv4.ip_forward", map[string]any{"value": "1"}),
			setup: func(t *testing.T, h *Host, _ *testFiles) { sysctlSandbox(t, h, "1\n") },
			drift: func(t *testing.T, h *Host) {
				writeRootFile(t, h, "etc/sysctl.d/60-herd-net.ipv4.ip_forward.conf", "net.ipv4.ip_forward = 0\n")
			},
		},
		{
			// A sandbox root with no proc/sys (herd up's): the persisted
			// file is managed, the live value is not, and the plan says so.
			name: "sysctl/sandbox without proc",
			typ:  &Sysctl{},
			res:  res("sysctl", "vm.swappiness", map[string]any{"value": "10"}),
			setup: func(t *testing.T, h *Host, _ *testFiles) {
				if err := os.MkdirAll(filepath.Join(h.Root, "etc/sysctl.d"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			drift: func(t *testing.T, h *Host) {
				os.Remove(filepath.Join(h.Root, "etc/sysctl.d/60-herd-vm.swappiness.conf"))
			},
		},
		{
			name: "sysctl/persist false removes the file",
			typ:  &Sysctl{},
			res:  res("sysctl", "net.ipv4.ip_forward", map[string]any{"value": "1", "persist": false}),
			setup: func(t *testing.T, h *Host, _ *testFiles) {
				sysctlSandbox(t, h, "1\n")
				writeRootFile(t, h, "etc/sysctl.d/60-herd-net.ipv4.ip_forward.conf", "net.ipv4.ip_forward = 1\n")
			},
		},
	}
}
