# METADATA
# title: Managed files are as their catalog says
# description: >-
#   The agent's checks between runs found no managed file differing from
#   the catalog: a file changed by hand is not what was reviewed.
# custom:
#   id: no-file-drift
#   severity: medium
#   reference: Herd
#   remediation: >-
#     Find who changed the file and why; put the change in the site, or
#     let the next run (or drift = "watch") put the file back.
package herd.audit.file_drift

violations contains {"message": sprintf("%s differs from its catalog: %s", [d.id, concat(", ", attrs)]), "resource": d.id} if {
	some d in input.drift
	startswith(d.id, "file:")
	attrs := [sprintf("%s is %q, the catalog says %q", [a.name, a.from, a.to]) | some a in d.attrs]
}
