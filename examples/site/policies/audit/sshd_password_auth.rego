# METADATA
# title: sshd refuses password logins
# description: >-
#   Where the site manages the sshd configuration, every managed setting
#   of PasswordAuthentication says no, and at least one does: keys only.
# custom:
#   id: ssh-password-auth
#   severity: high
#   reference: CIS Debian Linux 12 Benchmark, "Ensure sshd PasswordAuthentication is disabled"
#   remediation: >-
#     Set "PasswordAuthentication no" in the managed sshd_config or a
#     drop-in, once every admin has a key.
package herd.audit.ssh_password_auth

import data.herd.audit.lib.sshd

violations contains v if some v in sshd.violations_of("PasswordAuthentication", "no")
