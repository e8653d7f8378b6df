# METADATA
# title: Services run as a non-root user
# description: >-
#   Every service the built-in supervisor runs (provider herd) names a
#   user other than root: a compromised service should not own the host.
# custom:
#   id: services-non-root
#   severity: medium
#   reference: CIS Debian Linux 12 Benchmark, principle of least privilege
#   remediation: Set user = "NAME" on the service resource, with a [[user]] resource of that name.
package herd.audit.services_non_root

violations contains {"message": sprintf("service %s runs as root: %s", [r.name, why]), "resource": r.id} if {
	some r in input.by_type.service
	object.get(r.attrs, "provider", "herd") == "herd"
	user := object.get(r.attrs, "user", "")
	user in {"", "root"}
	why := {"": "it sets no user", "root": "user = \"root\""}[user]
}
