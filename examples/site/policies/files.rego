# No world-writable files under /etc: anyone on the host could rewrite
# what configures it.
package herd.gate

# files are the file resources to judge, listed once per evaluation: the
# gates of this package read this list rather than scan input.judge each.
#
# input.judge rather than input.catalog.resources: these gates judge each
# resource on its own, so a resource the node already runs unchanged, and
# that these same policies allowed then, need not be judged again. On a
# node the policies never judged input.judge is the whole catalog;
# otherwise it is what the change adds or changes, a few resources where
# a catalog has hundreds.
files := [r | some r in input.judge; r.type == "file"]

deny contains {"message": sprintf("%s is world-writable (mode %s): files under /etc must not be", [r.attrs.path, r.attrs.mode]), "resource": r.id} if {
	some r in files
	# The mode's last octal digit holds the bits of "others"; 2 is write.
	# One regex.match, written out here, is the cheapest test per file.
	regex.match(`[2367]$`, r.attrs.mode)
	under_etc(r.attrs.path)
	object.get(r.attrs, "ensure", "file") != "link"
}

under_etc(p) if p == "/etc"

under_etc(p) if startswith(p, "/etc/")
