package herd.gate_test

import data.herd.gate

config(path, content) := {"id": concat(":", ["file", path]), "type": "file", "name": path, "attrs": {"path": path, "content": content, "mode": "0600"}}

test_sshd_config_with_permit_root_login_no_allowed if {
	count(gate.deny) == 0 with input as catalog([config("/etc/ssh/sshd_config", "Port 22\nPermitRootLogin no\nUsePAM yes\n")])
	count(gate.deny) == 0 with input as catalog([config("/etc/ssh/sshd_config", "  permitrootlogin   no\n")])
}

test_sshd_config_without_the_line_denied if {
	denied := gate.deny with input as catalog([config("/etc/ssh/sshd_config", "Port 22\n#PermitRootLogin no\n")])
	denied == {{
		"message": "/etc/ssh/sshd_config lacks the line \"PermitRootLogin no\"",
		"resource": "file:/etc/ssh/sshd_config",
	}}
}

test_sshd_config_permitting_root_denied if {
	denied := gate.deny with input as catalog([config("/etc/ssh/sshd_config", "PermitRootLogin no\nMatch User x\n  PermitRootLogin yes\n")])
	{m.message | some m in denied} == {"/etc/ssh/sshd_config sets PermitRootLogin other than no: \"  PermitRootLogin yes\""}
}

test_drop_in_permitting_root_denied if {
	denied := gate.deny with input as catalog([config("/etc/ssh/sshd_config.d/50-herd-hardening.conf", "PermitRootLogin prohibit-password\n")])
	count(denied) == 1
}

test_drop_in_without_the_setting_allowed if {
	count(gate.deny) == 0 with input as catalog([config("/etc/ssh/sshd_config.d/10-port.conf", "Port 2222\n")])
}

test_sshd_config_shipped_by_digest_denied if {
	shipped := {"id": "file:/etc/ssh/sshd_config", "type": "file", "name": "/etc/ssh/sshd_config", "attrs": {"path": "/etc/ssh/sshd_config", "source": "files/sshd_config"}}
	count(gate.deny) == 1 with input as catalog([shipped])
}

test_unmanaged_sshd_config_allowed if {
	count(gate.deny) == 0 with input as catalog([])
}
