package herd.gate_test

import data.herd.gate

upgrade := {"changed": [{"id": "package:nginx", "type": "package", "name": "nginx", "attrs": [{"name": "ensure", "from": "1.24", "to": "1.26"}]}]}

fleet(nodes, versions) := {"nodes": nodes, "packages": {"nginx": {"nodes": sum([n | some n in versions]), "versions": versions}}}

test_package_version_on_most_of_the_fleet_denied if {
	denied := gate.deny with input as {"catalog": {"resources": []}, "change": upgrade, "fleet": fleet(10, {"1.24 -> 1.26": 6})}
	denied == {{
		"message": "package nginx: 6 of 10 nodes change its version in this rollout, more than 50%: split the change over several commits",
		"resource": "package:nginx",
	}}
}

test_package_version_on_half_the_fleet_allowed if {
	count(gate.deny) == 0 with input as {"catalog": {"resources": []}, "change": upgrade, "fleet": fleet(10, {"1.24 -> 1.26": 3, "1.22 -> 1.26": 2})}
}

test_mixed_moves_add_up if {
	count(gate.deny) == 1 with input as {"catalog": {"resources": []}, "change": upgrade, "fleet": fleet(10, {"1.24 -> 1.26": 3, "1.22 -> 1.26": 3})}
}

test_new_package_everywhere_allowed if {
	# A first rollout adds the package on every node: no version changes.
	added := {"added": [{"id": "package:nginx", "type": "package", "name": "nginx"}]}
	count(gate.deny) == 0 with input as {"catalog": {"resources": []}, "change": added, "fleet": fleet(10, {"unmanaged -> installed": 10})}
}

test_small_fleet_exempt if {
	# `herd up`: one node, everything it changes is all of the fleet.
	count(gate.deny) == 0 with input as {"catalog": {"resources": []}, "change": upgrade, "fleet": fleet(1, {"1.24 -> 1.26": 1})}
	count(gate.deny) == 0 with input as {"catalog": {"resources": []}, "change": upgrade, "fleet": fleet(2, {"1.24 -> 1.26": 2})}
	count(gate.deny) == 1 with input as {"catalog": {"resources": []}, "change": upgrade, "fleet": fleet(3, {"1.24 -> 1.26": 2})}
}

test_nodes_not_changing_the_package_allowed if {
	# The share is over, but this node's change does not touch nginx.
	other := {"changed": [{"id": "file:/etc/motd", "type": "file", "name": "/etc/motd", "attrs": [{"name": "content"}]}]}
	count(gate.deny) == 0 with input as {"catalog": {"resources": []}, "change": other, "fleet": fleet(10, {"1.24 -> 1.26": 9})}
}
