package herd.audit.services_non_root_test

import data.herd.audit.services_non_root

service(name, attrs) := {"id": concat(":", ["service", name]), "type": "service", "name": name, "attrs": attrs}

test_service_with_a_user_passes if {
	count(services_non_root.violations) == 0 with input as input_of([service("db", {"user": "postgres"})])
}

test_systemd_services_are_not_judged if {
	count(services_non_root.violations) == 0 with input as input_of([service("cron", {"provider": "systemd"})])
}

test_root_services_fail if {
	v := services_non_root.violations with input as input_of([service("web", {}), service("batch", {"user": "root"})])
	v == {
		{"message": "service web runs as root: it sets no user", "resource": "service:web"},
		{"message": "service batch runs as root: user = \"root\"", "resource": "service:batch"},
	}
}

# input builds the input of a catalog of rs, with the indexes the server
# adds: input.resources (by id) and input.by_type.
input_of(rs) := {
	"catalog": {"resources": rs},
	"resources": {r.id: r | some r in rs},
	"by_type": {t: [r | some r in rs; r.type == t] | some t in {r.type | some r in rs}},
}
