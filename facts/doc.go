// Package facts collects what a host is.
//
// Collect runs a set of core collectors (os, kernel, processors, memory,
// mounts, networking, …) concurrently, each bounded by a timeout, and merges
// in external facts from a facts.d directory. One failing collector never
// spoils the others: its error is returned beside the facts that did work.
// A collector that panics or overruns its timeout becomes an error too.
//
// # Core facts
//
// Facts are nested maps of plain data (string, bool, int64, float64, []any,
// map[string]any), the shape conditions, templates and policies read:
//
//	os          name, pretty_name, id, id_like, family, codename, release {full, major, minor}
//	kernel      name, release, version
//	arch        the machine, as uname says it (x86_64, aarch64)
//	hostname    the short name; fqdn and domain beside it
//	processors  count, model, physical (where the architecture reports packages)
//	memory      total_bytes, available_bytes, swap_total_bytes, swap_free_bytes
//	mounts      by mount point: device, fstype, options, and on the real host
//	            size_bytes, used_bytes, available_bytes; pseudo filesystems (proc,
//	            sysfs, cgroup, devtmpfs, …) and mounts under /proc, /sys and /dev
//	            are left out unless Options.AllMounts
//	networking  interfaces {name: {mac, mtu, up, addresses [{address, prefix, netmask, family}]}},
//	            primary_interface, primary_ip, primary_ip6
//	uptime      seconds, boot_time (RFC 3339, UTC)
//	virtual     container, hypervisor ("none" when not), is_virtual
//	timezone    name, abbreviation, offset (±hh:mm, in force now)
//	herd        version
//	identity    uid, gid, user, group, root
//
// os.family is lower case and derived from ID, then ID_LIKE: debian (Debian,
// Ubuntu, Mint…), redhat (RHEL, Fedora, Rocky, Alma, Amazon…), suse, arch,
// alpine, gentoo; an unknown distribution is its own family (its ID).
//
// Core facts come from files and syscalls, never from a process (hostname -f,
// lsb_release, dmidecode) or a DNS query: both cost time, and both can hang
// an agent on a broken host. fqdn is the name itself when dotted, else the
// canonical name /etc/hosts gives it, else the name plus resolv.conf's domain.
//
// # Sandbox roots
//
// With Options.Root set to a directory other than "/", file-based facts are
// read under it (etc/os-release, proc/meminfo, proc/cpuinfo, proc/mounts,
// proc/uptime, proc/stat, sys/class/dmi/…), with symlinks resolved inside
// it as chroot would, so that a captured tree describes the host it was
// captured from. kernel, arch and hostname read proc/sys/kernel/* and
// etc/hostname there when present and fall back to uname(2), since a sandbox
// runs on this kernel. networking and identity always describe this
// machine's network and this process. Mount sizes are left out (statfs would
// measure this machine's filesystems). A root with neither a proc nor a sys
// directory of its own is a sandbox on this machine's kernel (what `herd
// apply --root` and `herd up` manage): its /proc and /sys are this
// machine's, as in a chroot that mounts them, so memory, processors, mounts
// and uptime describe this machine.
//
// # External facts
//
// Every regular file in Options.ExternalDir (default /etc/herd/facts.d, read
// under Root) is a source of facts:
//
//   - *.toml and *.json: a document whose top-level keys are facts.
//   - *.txt: key=value lines.
//   - any other executable file: run with no arguments, no stdin, "/" as its
//     working directory and a minimal environment (PATH, LC_ALL=C, HOME=/ and
//     HERD_ROOT, the host root), in a process group of its own. It prints a
//     JSON object or key=value lines. After Options.Timeout the whole group is
//     killed and the file reported. A non-zero exit discards its output.
//     Under a sandbox root it is reported and not run unless
//     Options.SandboxExec says so: it is not the host's own program, and it
//     would run as the agent on this machine.
//   - other files are ignored, except a non-executable file starting with
//     "#!", reported as a script someone forgot to chmod +x.
//
// Hidden files, editor backups (~, .swp, .bak, .orig), package-manager
// leftovers (.dpkg-old, .rpmnew, …) and *.md are skipped. In key=value
// output a dotted key nests ("app.version=1.2" is app: {version: "1.2"}) and
// every value is a string. A file that fails is an error naming the file,
// and the line and column where the parser gives one; the other files
// still count.
//
// External facts override core facts of the same top-level name, as in
// facter, so that a site can correct a fact the core gets wrong for it
// (os, say, on an unusual distribution). The override is whole: an external
// "os" replaces the core os map, it does not merge into it. Files are merged
// in name order, so of two files setting one fact the later name wins
// ("10-base.toml" then "90-local.toml"). Two facts may never be overridden:
// herd and identity, which say which agent runs and as whom, and which
// policies must be able to trust. A file that tries is reported; its other
// facts still count.
//
// With Options.Only, only the core collectors that provide the names asked
// for run. External facts are still read (any file may set or override any
// name) unless only herd and identity are asked for.
package facts
