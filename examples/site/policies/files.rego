# No world-writable files under /etc: anyone on the host could rewrite
# what configures it.
package herd.gate

# The mode's last octal digit holds the bits of "others"; 2 is write.
world_writable(mode) if bits.and(to_number(substring(mode, count(mode) - 1, 1)), 2) == 2

deny contains {"message": sprintf("%s is world-writable (mode %s): files under /etc must not be", [r.attrs.path, r.attrs.mode]), "resource": r.id} if {
	some r in input.catalog.resources
	r.type == "file"
	under_etc(r.attrs.path)
	object.get(r.attrs, "ensure", "file") != "link"
	world_writable(r.attrs.mode)
}

under_etc(p) if p == "/etc"

under_etc(p) if startswith(p, "/etc/")
