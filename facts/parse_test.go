package facts

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseOSRelease(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want map[string]string
	}{
		{`ID=debian`, map[string]string{"ID": "debian"}},
		{`NAME="Rocky Linux"`, map[string]string{"NAME": "Rocky Linux"}},
		{`NAME='single "quoted"'`, map[string]string{"NAME": `single "quoted"`}},
		{`NAME="say \"hi\" \$HOME \\ \n"`, map[string]string{"NAME": `say "hi" $HOME \ \n`}},
		{`A=bare\ word`, map[string]string{"A": "bare word"}},
		{`A="mixed"'parts'`, map[string]string{"A": "mixedparts"}},
		{"  # comment\n\nID=x\r\n", map[string]string{"ID": "x"}},
		{"A=\"unterminated\nB=ok", map[string]string{"B": "ok"}},
		{"1BAD=x\nbad-key=y\nGOOD_2=z", map[string]string{"GOOD_2": "z"}},
		{"A=1\nA=2", map[string]string{"A": "2"}},
		{"A=two words", map[string]string{"A": "two"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseOSRelease([]byte(tt.in))); diff != "" {
			t.Errorf("parseOSRelease(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestOSFamily(t *testing.T) {
	t.Parallel()
	tests := []struct{ id, like, want string }{
		{"debian", "", "debian"},
		{"ubuntu", "debian", "debian"},
		{"linuxmint", "ubuntu debian", "debian"},
		{"rocky", "rhel centos fedora", "redhat"},
		{"almalinux", "rhel centos fedora", "redhat"},
		{"fedora", "", "redhat"},
		{"amzn", "centos rhel fedora", "redhat"},
		{"opensuse-leap", "suse opensuse", "suse"},
		{"sles", "", "suse"},
		{"manjaro", "arch", "arch"},
		{"alpine", "", "alpine"},
		{"wolfi", "", "wolfi"},
	}
	for _, tt := range tests {
		if got := osFamily(tt.id, tt.like); got != tt.want {
			t.Errorf("osFamily(%q, %q) = %q, want %q", tt.id, tt.like, got, tt.want)
		}
	}
}

func TestSplitVersion(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, major, minor string }{
		{"12", "12", ""}, {"12.5", "12", "5"}, {"24.04", "24", "04"}, {"3.19.1", "3", "19"}, {"", "", ""},
	}
	for _, tt := range tests {
		if major, minor := splitVersion(tt.in); major != tt.major || minor != tt.minor {
			t.Errorf("splitVersion(%q) = %q, %q, want %q, %q", tt.in, major, minor, tt.major, tt.minor)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	t.Parallel()
	in := "MemTotal:  1000 kB\nHugePages_Total:  4\nBad: x kB\nNeg: -1 kB\nHuge: 9223372036854775807 kB\nnocolon\n"
	want := map[string]int64{"MemTotal": 1024000, "HugePages_Total": 4}
	if diff := cmp.Diff(want, parseMeminfo([]byte(in))); diff != "" {
		t.Errorf("parseMeminfo mismatch (-want +got):\n%s", diff)
	}
}

func TestParseCPUInfo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want cpuInfo
	}{
		{"x86", "processor\t: 0\nmodel name\t: Xeon\nphysical id\t: 0\nflags\t: fpu hypervisor\n\nprocessor\t: 1\nmodel name\t: Xeon\nphysical id\t: 1\n",
			cpuInfo{count: 2, physical: 2, model: "Xeon", hypervisor: true}},
		{"arm32", "Processor\t: ARMv7 Processor rev 4 (v7l)\nprocessor\t: 0\nprocessor\t: 1\n",
			cpuInfo{count: 2, model: "ARMv7 Processor rev 4 (v7l)"}},
		{"power", "processor\t: 0\ncpu\t\t: POWER9 (architected), altivec supported\n",
			cpuInfo{count: 1, model: "POWER9 (architected), altivec supported"}},
		{"empty", "", cpuInfo{}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, parseCPUInfo([]byte(tt.in)), cmp.AllowUnexported(cpuInfo{})); diff != "" {
			t.Errorf("parseCPUInfo(%s) mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestParseMounts(t *testing.T) {
	t.Parallel()
	in := "/dev/sda1 /srv/my\\040data xfs rw,noatime 0 0\nshort line\nback\\134slash /a\\0 ext4 ro 0 0\n"
	want := []mount{
		{device: "/dev/sda1", point: "/srv/my data", fstype: "xfs", options: []string{"rw", "noatime"}},
		{device: `back\slash`, point: `/a\0`, fstype: "ext4", options: []string{"ro"}},
	}
	if diff := cmp.Diff(want, parseMounts([]byte(in)), cmp.AllowUnexported(mount{})); diff != "" {
		t.Errorf("parseMounts mismatch (-want +got):\n%s", diff)
	}
}

func TestDefaultRoute(t *testing.T) {
	t.Parallel()
	route := `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
wlan0	00000000	0100A8C0	0003	0	0	600	00000000	0	0	0
eth0	00000000	010200C0	0003	0	0	100	00000000	0	0	0
eth0	000200C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
down0	00000000	010200C0	0002	0	0	0	00000000	0	0	0
`
	if got := defaultRouteIface([]byte(route)); got != "eth0" {
		t.Errorf("defaultRouteIface = %q, want eth0 (the lowest metric that is up)", got)
	}
	route6 := `00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     ens3
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     ens3
`
	if got := defaultRoute6Iface([]byte(route6)); got != "ens3" {
		t.Errorf("defaultRoute6Iface = %q, want ens3 (lo's default is a reject route)", got)
	}
	if got := defaultRouteIface(nil); got != "" {
		t.Errorf("defaultRouteIface(nil) = %q, want empty", got)
	}
}

func TestCanonicalName(t *testing.T) {
	t.Parallel()
	tests := []struct{ hosts, short, want string }{
		{"127.0.1.1 web-01.example.com web-01\n", "web-01", "web-01.example.com"},
		{"127.0.1.1 web-01 web-01.example.com\n", "web-01", "web-01.example.com"},
		{"127.0.0.1 localhost web-01\n", "web-01", ""},
		{"127.0.0.1 localhost.localdomain web-01\n", "web-01", ""},
		{"10.0.0.5 WEB-01.Example.COM # comment\n", "web-01", "WEB-01.Example.COM"},
		{"10.0.0.5 other.example.com other\n", "web-01", ""},
		{"# 10.0.0.5 web-01.example.com\nnot-an-ip web-01.x\n", "web-01", ""},
		{"10.0.0.5 web-01.a.com\n10.0.0.6 web-01.b.com\n", "web-01", "web-01.a.com"},
	}
	for _, tt := range tests {
		if got := canonicalName([]byte(tt.hosts), tt.short); got != tt.want {
			t.Errorf("canonicalName(%q, %q) = %q, want %q", tt.hosts, tt.short, got, tt.want)
		}
	}
}

func TestResolvDomain(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"nameserver 1.1.1.1\n", ""},
		{"search a.example b.example\n", "a.example"},
		{"domain corp.example.\nsearch other.example\n", "other.example"},
		{"search .\n", ""},
	}
	for _, tt := range tests {
		if got := resolvDomain([]byte(tt.in)); got != tt.want {
			t.Errorf("resolvDomain(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatOffset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		secs int
		want string
	}{{0, "+00:00"}, {3600, "+01:00"}, {-5 * 3600, "-05:00"}, {5*3600 + 1800, "+05:30"}, {-(3*3600 + 1800), "-03:30"}}
	for _, tt := range tests {
		if got := formatOffset(tt.secs); got != tt.want {
			t.Errorf("formatOffset(%d) = %q, want %q", tt.secs, got, tt.want)
		}
	}
}

// TestResolveIn checks that symlinks in a sandbox resolve inside it, the
// way chroot would, and never reach this machine's files.
func TestResolveIn(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mk := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("etc")
	mk("usr/lib")
	ln("/usr/lib/os-release", "etc/abs")
	ln("../usr/lib/os-release", "etc/rel")
	ln("../../../../../../etc/passwd", "etc/climb")
	ln("/etc/loop", "etc/loop")
	ln("/usr", "usrlink")
	tests := []struct{ in, want string }{
		{"/etc/abs", "usr/lib/os-release"},
		{"/etc/rel", "usr/lib/os-release"},
		{"/etc/climb", "etc/passwd"},
		{"/../../etc/hosts", "etc/hosts"},
		{"/usrlink/lib/x", "usr/lib/x"},
		{"/missing/a/b", "missing/a/b"},
		{"/etc/loop", "etc/loop"}, // gives up after 40 links; opening it then fails
	}
	for _, tt := range tests {
		if got, want := resolveIn(root, tt.in), filepath.Join(root, tt.want); got != want {
			t.Errorf("resolveIn(%q) = %q, want %q", tt.in, got, want)
		}
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	f := Facts{
		"os": map[string]any{"family": "debian", "release": map[string]any{"major": "12"}},
		"networking": map[string]any{"interfaces": map[string]any{"eth0": map[string]any{
			"addresses": []any{map[string]any{"address": "10.0.0.1"}},
		}}},
		"mounts": map[string]any{"/": map[string]any{"fstype": "ext4"}, "/etc/resolv.conf": map[string]any{"fstype": "ext4"}},
		"a":      map[string]any{"b": map[string]any{"c": 1}, "b.c": 2},
	}
	tests := []struct {
		path string
		want any
		ok   bool
	}{
		{"os.family", "debian", true},
		{"os.release.major", "12", true},
		{"networking.interfaces.eth0.addresses.0.address", "10.0.0.1", true},
		{"networking.interfaces.eth0.addresses.1.address", nil, false},
		{"networking.interfaces.eth0.addresses.-1", nil, false},
		{"mounts./.fstype", "ext4", true},
		{"mounts./etc/resolv.conf.fstype", "ext4", true},
		{"mounts./etc/resolv", nil, false},
		{"a.b.c", 1, true}, // the shorter key wins where both match
		{"os.family.x", nil, false},
		{"nope", nil, false},
	}
	for _, tt := range tests {
		got, ok := f.Lookup(tt.path)
		if ok != tt.ok || !cmp.Equal(got, tt.want) {
			t.Errorf("Lookup(%q) = %v, %v, want %v, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFlatten(t *testing.T) {
	t.Parallel()
	f := Facts{
		"b":     map[string]any{"y": int64(1), "x": []any{"rw", "ro"}},
		"a":     "v",
		"empty": map[string]any{},
		"l":     []any{map[string]any{"k": true}, "s"},
		"vlan":  map[string]any{"eth0.100": map[string]any{"mtu": int64(1500)}},
	}
	want := []Leaf{
		{"a", "v"},
		{"b.x", []any{"rw", "ro"}},
		{"b.y", int64(1)},
		{"empty", map[string]any{}},
		{"l.0.k", true},
		{"l.1", "s"},
		{"vlan.eth0.100.mtu", int64(1500)},
	}
	got := Flatten("", f)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Flatten mismatch (-want +got):\n%s", diff)
	}
	for _, l := range got {
		if v, ok := f.Lookup(l.Name); !ok || !cmp.Equal(v, l.Value) {
			t.Errorf("Lookup(%q) = %v, %v; want the flattened value %v", l.Name, v, ok, l.Value)
		}
	}
	if diff := cmp.Diff([]Leaf{{"os", "x"}}, Flatten("os", "x")); diff != "" {
		t.Errorf("Flatten(scalar) mismatch (-want +got):\n%s", diff)
	}
}
