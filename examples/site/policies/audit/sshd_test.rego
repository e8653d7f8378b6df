package herd.audit.sshd_test

import data.herd.audit.ssh_password_auth
import data.herd.audit.ssh_root_login

file(path, content) := {"id": concat(":", ["file", path]), "type": "file", "name": path, "attrs": {"path": path, "content": content, "mode": "0600"}}

catalog(resources) := input_of(resources)

# input builds the input of a catalog of rs, with the indexes the server
# adds: input.resources (by id) and input.by_type.
input_of(rs) := {
	"catalog": {"resources": rs},
	"resources": {r.id: r | some r in rs},
	"by_type": {t: [r | some r in rs; r.type == t] | some t in {r.type | some r in rs}},
}


test_hardened_drop_in_passes if {
	hardened := catalog([file("/etc/ssh/sshd_config.d/50-herd.conf", "PermitRootLogin no\nPasswordAuthentication no\n")])
	count(ssh_root_login.violations) == 0 with input as hardened
	count(ssh_password_auth.violations) == 0 with input as hardened
}

test_unmanaged_sshd_passes if {
	count(ssh_root_login.violations) == 0 with input as catalog([file("/etc/motd", "hi\n")])
}

test_permit_root_yes_fails_with_the_file_and_line if {
	v := ssh_root_login.violations with input as catalog([file("/etc/ssh/sshd_config", "Port 22\n  permitrootlogin yes\n")])
	v == {{"message": "/etc/ssh/sshd_config sets \"permitrootlogin yes\": want PermitRootLogin no", "resource": "file:/etc/ssh/sshd_config"}}
}

test_a_later_file_saying_otherwise_fails if {
	v := ssh_password_auth.violations with input as catalog([
		file("/etc/ssh/sshd_config", "PasswordAuthentication yes\n"),
		file("/etc/ssh/sshd_config.d/50-herd.conf", "PasswordAuthentication no\n"),
	])
	{m.resource | some m in v} == {"file:/etc/ssh/sshd_config"}
}

test_managed_without_the_setting_fails if {
	v := ssh_root_login.violations with input as catalog([file("/etc/ssh/sshd_config.d/10-port.conf", "Port 2222\n")])
	v == {"none of the managed sshd files (/etc/ssh/sshd_config.d/10-port.conf) sets PermitRootLogin: sshd's default applies; add \"PermitRootLogin no\""}
}

test_shipped_by_digest_cannot_be_checked if {
	shipped := {"id": "file:/etc/ssh/sshd_config", "type": "file", "name": "/etc/ssh/sshd_config", "attrs": {"path": "/etc/ssh/sshd_config", "source": "files/sshd_config"}}
	v := ssh_root_login.violations with input as catalog([shipped])
	count(v) == 1
	some m in v
	contains(m.message, "cannot be checked")
}
