package herd.audit.last_run_test

import data.herd.audit.last_run

report(events) := {"report": {"run_id": "r-7", "events": events}}

test_clean_run_passes if {
	count(last_run.violations) == 0 with input as report([{"id": "file:/etc/motd", "status": "changed", "error": ""}, {"id": "package:x", "status": "in-sync", "error": ""}])
}

test_failed_resource_fails_with_its_error if {
	v := last_run.violations with input as report([
		{"id": "package:nginx", "status": "failed", "error": "apt-get install: exit status 100"},
		{"id": "service:nginx", "status": "skipped", "error": ""},
	])
	v == {{"message": "package:nginx failed in the last run (r-7): apt-get install: exit status 100", "resource": "package:nginx"}}
}
