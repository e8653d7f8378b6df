package facts

import (
	"context"
	"strings"
)

// collectVirtual says whether the host is a container and whether it runs
// under a hypervisor, from files alone (systemd-detect-virt's sources, less
// CPUID): a container is told by its runtime's marker files, init's
// environment and cgroups; a hypervisor by DMI, Xen's /proc and /sys
// entries, the clock sources it offers, and the CPU's hypervisor flag.
func collectVirtual(_ context.Context, h *host) (Facts, error) {
	c := h.container()
	hv := h.hypervisor()
	return Facts{"virtual": map[string]any{
		"container":  c,
		"hypervisor": hv,
		"is_virtual": c != "none" || hv != "none",
	}}, nil
}

func (h *host) container() string {
	// systemd writes what it detected here; init's environment is what the
	// runtime told it (readable by root only, and not always by root).
	if v, err := h.readLine("/run/systemd/container"); err == nil && v != "" {
		return v
	}
	if b, err := h.readFile("/proc/1/environ"); err == nil {
		for kv := range strings.SplitSeq(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, "container="); ok && v != "" {
				return v
			}
		}
	}
	if h.exists("/run/.containerenv") {
		return "podman"
	}
	if h.exists("/.dockerenv") {
		return "docker"
	}
	if b, err := h.readFile("/proc/1/cgroup"); err == nil {
		if c := containerFromCgroup(string(b)); c != "" {
			return c
		}
	}
	return "none"
}

// containerFromCgroup recognises the cgroup paths container runtimes give
// their processes.
func containerFromCgroup(s string) string {
	switch {
	case strings.Contains(s, "/docker/"), strings.Contains(s, "/docker-"):
		return "docker"
	case strings.Contains(s, "libpod"):
		return "podman"
	case strings.Contains(s, "/lxc/"), strings.Contains(s, "lxc.payload"):
		return "lxc"
	case strings.Contains(s, "/kubepods"):
		return "kubernetes"
	case strings.Contains(s, "/machine.slice/machine-"):
		return "systemd-nspawn"
	}
	return ""
}

// dmiHypervisors maps a substring of DMI's sys_vendor or product_name to
// the hypervisor. Clouds name themselves; their hypervisor is KVM (or Xen on
// old EC2, whose product name is "HVM domU").
var dmiHypervisors = []struct{ substr, hv string }{
	{"KVM", "kvm"}, {"QEMU", "kvm"}, {"Google", "kvm"}, {"Amazon EC2", "kvm"}, {"OpenStack", "kvm"},
	{"VMware", "vmware"},
	{"VirtualBox", "virtualbox"}, {"innotek", "virtualbox"},
	{"HVM domU", "xen"}, {"Xen", "xen"},
	{"Parallels", "parallels"},
	{"BHYVE", "bhyve"},
}

func (h *host) hypervisor() string {
	var dmi []string
	for _, p := range []string{"/sys/class/dmi/id/product_name", "/sys/class/dmi/id/sys_vendor"} {
		if v, err := h.readLine(p); err == nil {
			dmi = append(dmi, v)
		}
	}
	// Hyper-V calls its guests plainly "Virtual Machine".
	if len(dmi) == 2 && dmi[0] == "Virtual Machine" && strings.HasPrefix(dmi[1], "Microsoft") {
		return "hyperv"
	}
	for _, d := range dmiHypervisors {
		for _, v := range dmi {
			if strings.Contains(v, d.substr) {
				return d.hv
			}
		}
	}
	if v, err := h.readLine("/sys/hypervisor/type"); err == nil && v != "" {
		return v
	}
	if h.exists("/proc/xen") {
		return "xen"
	}
	if cs, err := h.readLine("/sys/devices/system/clocksource/clocksource0/available_clocksource"); err == nil {
		for c := range strings.FieldsSeq(cs) {
			switch {
			case c == "kvm-clock":
				return "kvm"
			case strings.HasPrefix(c, "hyperv"):
				return "hyperv"
			case c == "xen":
				return "xen"
			}
		}
	}
	// The flag says there is a hypervisor without saying which. The first
	// CPU's block has it; a few KiB of cpuinfo spare reading hundreds.
	if b, err := h.readHead("/proc/cpuinfo", 16<<10); err == nil && parseCPUInfo(b).hypervisor {
		return "unknown"
	}
	return "none"
}
