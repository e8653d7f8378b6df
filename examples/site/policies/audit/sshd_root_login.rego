# METADATA
# title: sshd refuses root logins
# description: >-
#   Where the site manages the sshd configuration, every managed setting
#   of PermitRootLogin says no, and at least one does.
# custom:
#   id: ssh-root-login
#   severity: high
#   reference: CIS Debian Linux 12 Benchmark, "Ensure sshd PermitRootLogin is disabled"
#   remediation: >-
#     Set "PermitRootLogin no" in the managed sshd_config or a drop-in
#     (roles/base.toml, templates/sshd-hardening.conf.tmpl in this site).
package herd.audit.ssh_root_login

import data.herd.audit.lib.sshd

violations contains v if some v in sshd.violations_of("PermitRootLogin", "no")
