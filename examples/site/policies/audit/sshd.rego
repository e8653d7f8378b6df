# Helpers of the sshd controls: the sshd configuration files the site
# manages, in the order sshd reads them, and the settings they make.
# Debian's /etc/ssh/sshd_config includes /etc/ssh/sshd_config.d/*.conf on
# its first line, and for each keyword sshd keeps the first value it
# reads: the drop-ins (in name order) come first, then sshd_config.
package herd.audit.lib.sshd

sshd_config := "/etc/ssh/sshd_config"

# files are the managed sshd configuration files, in reading order:
# drop-ins by path, then sshd_config.
files := array.concat(
	[r | some p in sort(object.keys(dropins)); r := dropins[p]],
	[r | r := input.resources[concat(":", ["file", sshd_config])]; present(r)],
)

dropins[r.attrs.path] := r if {
	some r in input.by_type.file
	startswith(r.attrs.path, "/etc/ssh/sshd_config.d/")
	endswith(r.attrs.path, ".conf")
	present(r)
}

present(r) if object.get(r.attrs, "ensure", "file") == "file"

# managed is true when the site manages any sshd configuration file.
managed if count(files) > 0

# lines are the settings of the managed files, in reading order, each
# {"resource", "path", "keyword" (lower case, as sshd compares them),
# "value" (lower case), "line"}: read once per node, whatever the number
# of controls that look.
lines := [s |
	some r in files
	is_string(r.attrs.content)
	some line in regex.find_n(`(?m)^[ \t]*[A-Za-z]+[ \t]+\S+`, r.attrs.content, -1)
	words := regex.split(`[ \t]+`, trim_space(line))
	s := {"resource": r.id, "path": r.attrs.path, "keyword": lower(words[0]), "value": lower(words[1]), "line": trim_space(line)}
]

# settings(keyword) lists the lines that set keyword, in reading order.
settings(keyword) := [s | some s in lines; s.keyword == lower(keyword)]

set(keyword) if some s in settings(keyword)

# unreadable lists the managed files shipped by digest (source): their
# content is not in the catalog, so a control cannot read it.
unreadable contains r if {
	some r in files
	# Not `not is_string(r.attrs.content)`: OPA evaluates the reference
	# outside the negation, and an absent content would fail the rule.
	not is_string(object.get(r.attrs, "content", null))
}

# violations_of(keyword, want) are the violations of a control that wants
# every managed setting of keyword to be want, and the first one to exist.
violations_of(keyword, want) := {v |
	some s in settings(keyword)
	s.value != want
	v := {"message": sprintf("%s sets %q: want %s %s", [s.path, s.line, keyword, want]), "resource": s.resource}
} | {v |
	managed
	not set(keyword)
	count(unreadable) == 0
	paths := concat(", ", [r.attrs.path | some r in files])
	v := sprintf("none of the managed sshd files (%s) sets %s: sshd's default applies; add \"%s %s\"", [paths, keyword, keyword, want])
} | {v |
	some r in unreadable
	v := {"message": sprintf("%s is shipped from files/ (source): its %s cannot be checked; manage it with content or a template", [r.attrs.path, keyword]), "resource": r.id}
}
