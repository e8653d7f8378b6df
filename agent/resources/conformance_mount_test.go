package resources

import "testing"

// fstabFixture is a Debian fstab with comments, odd spacing and an
// unterminated last line, which edits must keep byte for byte.
const fstabFixture = "# /etc/fstab: static file system information.\n#\n# <file system> <mount point>   <type>  <options>       <dump>  <pass>\nUUID=1234-abcd /               ext4    errors=remount-ro 0       1\n/swapfile none swap sw 0 0\n\nproc /proc proc defaults"

// mountConformance returns the mount type's conformance cases, all under
// a sandbox root (the mount state is left alone there).
func mountConformance(t *testing.T) []conformanceCase {
	fstab := func(content string) func(t *testing.T, h *Host, _ *testFiles) {
		return func(t *testing.T, h *Host, _ *testFiles) { writeRootFile(t, h, "etc/fstab", content) }
	}
	handEdit := func(content string) func(t *testing.T, h *Host) {
		return func(t *testing.T, h *Host) { writeRootFile(t, h, "etc/fstab", content) }
	}
	data := map[string]any{"device": "UUID=5678-ef01", "fstype": "xfs", "options": "noatime,nofail", "pass": int64(2)}
	return []conformanceCase{
		{
			name:  "mount/add an entry",
			typ:   &Mount{},
			res:   res("mount", "/srv/data", data),
			setup: fstab(fstabFixture),
			drift: handEdit(fstabFixture),
		},
		{
			name:  "mount/change an entry",
			typ:   &Mount{},
			res:   res("mount", "/srv/data", data),
			setup: fstab("/dev/sdb1 /srv/data ext4 defaults 0 0\n# keep\n/dev/sdc1 /srv/data ext4 defaults 0 0\n"),
			drift: handEdit("/dev/sdb1 /srv/data xfs noatime,nofail 0 2\n"),
		},
		{
			name:  "mount/present",
			typ:   &Mount{},
			res:   res("mount", "/mnt/space dir", map[string]any{"device": "/dev/sdd1", "fstype": "ext4", "ensure": "present"}),
			setup: fstab(""),
		},
		{
			name:  "mount/absent",
			typ:   &Mount{},
			res:   res("mount", "/srv/data", map[string]any{"ensure": "absent"}),
			setup: fstab("proc /proc proc defaults 0 0\n/dev/sdb1\t/srv/data  ext4 defaults 0 0\n"),
			drift: handEdit("/dev/sdb1 /srv/data ext4 defaults\n"),
		},
	}
}
