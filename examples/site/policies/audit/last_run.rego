# METADATA
# title: The last run applied every resource
# description: >-
#   No resource failed in the node's last real run: a failed resource
#   means the host is not what its catalog says.
# custom:
#   id: last-run-clean
#   severity: medium
#   reference: Herd
#   remediation: Read the failure with `herd reports NODE`, fix the cause on the host or in the site, and let the next run apply it.
package herd.audit.last_run

violations contains {"message": sprintf("%s failed in the last run (%s): %s", [e.id, input.report.run_id, e.error]), "resource": e.id} if {
	some e in input.report.events
	e.status == "failed"
}
