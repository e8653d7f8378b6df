# At most a set share of the fleet may change a package's version in one
# rollout: a bad package version then reaches no more than that share,
# whatever the stages do. Fleets of a few nodes (a `herd up` sandbox, a
# pair of hosts) are exempt: there a share means one node.
package herd.gate

# The share, in percent of the rollout's nodes.
max_package_share := 50

# Fleets smaller than this are exempt.
min_fleet := 3

# moving counts the nodes that move package name from one managed version
# to another. A package a rollout adds ("unmanaged -> 1.2") or stops
# managing ("1.2 -> unmanaged") changes no version it had.
moving(name) := sum([n |
	some move, n in input.fleet.packages[name].versions
	not startswith(move, "unmanaged -> ")
	not endswith(move, " -> unmanaged")
])

deny contains {"message": sprintf("package %s: %d of %d nodes change its version in this rollout, more than %d%%: split the change over several commits", [rc.name, moving(rc.name), input.fleet.nodes, max_package_share]), "resource": rc.id} if {
	input.fleet.nodes >= min_fleet
	some rc in input.change.changed
	rc.type == "package"
	some a in rc.attrs
	a.name in {"version", "ensure"}
	moving(rc.name) * 100 > max_package_share * input.fleet.nodes
}
