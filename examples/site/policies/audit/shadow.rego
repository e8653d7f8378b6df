# METADATA
# title: /etc/shadow is readable by root and group shadow only
# description: >-
#   Where the site manages /etc/shadow, its mode is 0640 or stricter and
#   its owner is root: the password hashes are no one else's to read.
# custom:
#   id: shadow-perms
#   severity: high
#   reference: CIS Debian Linux 12 Benchmark, "Ensure permissions on /etc/shadow are configured"
#   remediation: Set mode = "0640" (or stricter) and owner = "root" on the file resource of /etc/shadow.
package herd.audit.shadow_perms

shadow := "/etc/shadow"

managed contains r if {
	r := input.resources[concat(":", ["file", shadow])]
	object.get(r.attrs, "ensure", "file") == "file"
}

violations contains {"message": sprintf("%s has mode %s: want 0640 or stricter (no bit beyond rw-r-----)", [shadow, r.attrs.mode]), "resource": r.id} if {
	some r in managed
	not stricter_than_0640(r.attrs.mode)
}

violations contains {"message": sprintf("%s is managed without a mode: set mode = \"0640\"", [shadow]), "resource": r.id} if {
	some r in managed
	not r.attrs.mode
}

violations contains {"message": sprintf("%s is owned by %s: want root", [shadow, r.attrs.owner]), "resource": r.id} if {
	some r in managed
	r.attrs.owner != "root"
}

violations contains {"message": sprintf("%s is managed without an owner: set owner = \"root\"", [shadow]), "resource": r.id} if {
	some r in managed
	not r.attrs.owner
}

# stricter_than_0640 holds for a mode with no bit beyond 0640: no special
# bits, owner at most rw-, group at most r--, others nothing.
stricter_than_0640(mode) if regex.match(`^0?[0246][04]0$`, mode)
