package herd.audit.services_non_root_test

import data.herd.audit.services_non_root

service(name, attrs) := {"id": concat(":", ["service", name]), "type": "service", "name": name, "attrs": attrs}

test_service_with_a_user_passes if {
	count(services_non_root.violations) == 0 with input as {"catalog": {"resources": [service("db", {"user": "postgres"})]}}
}

test_systemd_services_are_not_judged if {
	count(services_non_root.violations) == 0 with input as {"catalog": {"resources": [service("cron", {"provider": "systemd"})]}}
}

test_root_services_fail if {
	v := services_non_root.violations with input as {"catalog": {"resources": [service("web", {}), service("batch", {"user": "root"})]}}
	v == {
		{"message": "service web runs as root: it sets no user", "resource": "service:web"},
		{"message": "service batch runs as root: user = \"root\"", "resource": "service:batch"},
	}
}
