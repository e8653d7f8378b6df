# sshd keeps PermitRootLogin no: a managed /etc/ssh/sshd_config must say
# so, and no managed drop-in (/etc/ssh/sshd_config.d/*.conf, read before
# the rest of Debian's sshd_config, first value wins) may say otherwise.
package herd.gate

sshd_config := "/etc/ssh/sshd_config"

# sshd_files are the managed files sshd reads, from the package's files.
sshd_files := [r | some r in files; startswith(r.attrs.path, sshd_config); sshd_file(r.attrs.path)]

permit_root_no := `(?m)^[ \t]*(?i:PermitRootLogin)[ \t]+no[ \t]*$`

permit_root_any := `(?m)^[ \t]*(?i:PermitRootLogin)[ \t]+\S+`

deny contains {"message": sprintf("%s lacks the line \"PermitRootLogin no\"", [sshd_config]), "resource": r.id} if {
	some r in sshd_files
	r.attrs.path == sshd_config
	object.get(r.attrs, "ensure", "file") == "file"
	is_string(r.attrs.content)
	not regex.match(permit_root_no, r.attrs.content)
}

# A file shipped by digest (source) hides its content from the gate.
deny contains {"message": sprintf("%s is shipped from files/ (source): manage it with content or a template, so that the gate can check PermitRootLogin", [r.attrs.path]), "resource": r.id} if {
	some r in sshd_files
	# Not `not is_string(r.attrs.content)`: OPA evaluates the reference
	# outside the negation, and an absent content would fail the rule.
	object.get(r.attrs, "content", null) == null
	object.get(r.attrs, "ensure", "file") == "file"
	r.attrs.source
}

deny contains {"message": sprintf("%s sets PermitRootLogin other than no: %q", [r.attrs.path, line]), "resource": r.id} if {
	some r in sshd_files
	is_string(r.attrs.content)
	some line in regex.find_n(permit_root_any, r.attrs.content, -1)
	not regex.match(permit_root_no, line)
}

sshd_file(p) if p == sshd_config

sshd_file(p) if {
	startswith(p, "/etc/ssh/sshd_config.d/")
	endswith(p, ".conf")
}
