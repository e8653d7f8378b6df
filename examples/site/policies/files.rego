# No world-writable files under /etc: anyone on the host could rewrite
# what configures it.
package herd.gate

# files are the catalog's file resources, listed once per evaluation: the
# gates of this package read this list rather than scan the catalog each.
files := [r | some r in input.catalog.resources; r.type == "file"]

deny contains {"message": sprintf("%s is world-writable (mode %s): files under /etc must not be", [r.attrs.path, r.attrs.mode]), "resource": r.id} if {
	some r in files
	world_writable(r.attrs.mode)
	under_etc(r.attrs.path)
	object.get(r.attrs, "ensure", "file") != "link"
}

# The mode's last octal digit holds the bits of "others"; 2 is write. One
# regex.match is cheaper than taking the digit apart.
world_writable(mode) if regex.match(`[2367]$`, mode)

under_etc(p) if p == "/etc"

under_etc(p) if startswith(p, "/etc/")
