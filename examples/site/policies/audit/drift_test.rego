package herd.audit.file_drift_test

import data.herd.audit.file_drift

test_no_drift_passes if {
	count(file_drift.violations) == 0 with input as {"drift": []}
}

test_drifted_file_fails_naming_what_differs if {
	v := file_drift.violations with input as {"drift": [
		{"id": "file:/etc/motd", "attrs": [{"name": "mode", "from": "0666", "to": "0644"}]},
		{"id": "package:nginx", "attrs": [{"name": "ensure", "from": "1.24", "to": "1.26"}]},
	]}
	v == {{"message": "file:/etc/motd differs from its catalog: mode is \"0666\", the catalog says \"0644\"", "resource": "file:/etc/motd"}}
}
