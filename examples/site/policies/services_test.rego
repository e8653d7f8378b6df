package herd.gate_test

import data.herd.gate

service(name, attrs) := {"id": concat(":", ["service", name]), "type": "service", "name": name, "attrs": object.union({"name": name}, attrs)}

test_service_without_user_denied if {
	denied := gate.deny with input as catalog([service("app", {})])
	denied == {{
		"message": "service app runs as root: set user, or allow it in root_services_allowed (policies/services.rego)",
		"resource": "service:app",
	}}
}

test_service_as_root_denied if {
	count(gate.deny) == 1 with input as catalog([service("app", {"user": "root"})])
}

test_service_with_a_user_allowed if {
	count(gate.deny) == 0 with input as catalog([service("app", {"user": "app"})])
}

test_allowed_service_as_root_allowed if {
	count(gate.deny) == 0 with input as catalog([service("demo-web", {})])
	count(gate.deny) == 0 with input as catalog([service("app", {})]) with gate.root_services_allowed as {"app"}
}
