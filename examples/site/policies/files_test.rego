package herd.gate_test

import data.herd.gate

file(path, mode) := {"id": concat(":", ["file", path]), "type": "file", "name": path, "attrs": {"path": path, "mode": mode}}

# catalog is the input of a node the policies never judged: every
# resource of its catalog is to be judged.
catalog(resources) := {"catalog": {"resources": resources}, "judge": resources}

test_world_writable_under_etc_denied if {
	denied := gate.deny with input as catalog([file("/etc/motd", "0666"), file("/etc/ok", "0644")])
	denied == {{
		"message": "/etc/motd is world-writable (mode 0666): files under /etc must not be",
		"resource": "file:/etc/motd",
	}}
}

test_world_writable_three_digits_and_sticky_dir_denied if {
	count(gate.deny) == 2 with input as catalog([file("/etc/a", "777"), file("/etc/tmpdir", "1777")])
}

test_group_writable_and_outside_etc_allowed if {
	count(gate.deny) == 0 with input as catalog([
		file("/etc/a", "0664"),
		file("/tmp/x", "0666"),
		file("/etcetera/x", "0666"),
	])
}

test_links_and_unset_modes_allowed if {
	link := {"id": "file:/etc/l", "type": "file", "name": "/etc/l", "attrs": {"path": "/etc/l", "ensure": "link", "target": "/x", "mode": "0777"}}
	no_mode := {"id": "file:/etc/n", "type": "file", "name": "/etc/n", "attrs": {"path": "/etc/n"}}
	count(gate.deny) == 0 with input as catalog([link, no_mode])
}

test_only_what_is_to_be_judged if {
	# A node these policies judged before: its world-writable file is
	# not in input.judge, only what the change adds or changes is.
	count(gate.deny) == 0 with input as {"catalog": {"resources": [file("/etc/motd", "0666")]}, "judge": []}
}
