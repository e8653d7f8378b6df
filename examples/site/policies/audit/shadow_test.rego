package herd.audit.shadow_perms_test

import data.herd.audit.shadow_perms

shadow(attrs) := input_of([{"id": "file:/etc/shadow", "type": "file", "name": "/etc/shadow", "attrs": object.union({"path": "/etc/shadow"}, attrs)}])

# input builds the input of a catalog of rs, with the indexes the server
# adds: input.resources (by id) and input.by_type.
input_of(rs) := {
	"catalog": {"resources": rs},
	"resources": {r.id: r | some r in rs},
	"by_type": {t: [r | some r in rs; r.type == t] | some t in {r.type | some r in rs}},
}


test_strict_modes_pass if {
	every mode in ["0640", "640", "0600", "0400", "0000", "0440"] {
		count(shadow_perms.violations) == 0 with input as shadow({"mode": mode, "owner": "root"})
	}
}

test_loose_modes_fail if {
	every mode in ["0644", "0660", "0740", "4640", "0641", "0700"] {
		v := shadow_perms.violations with input as shadow({"mode": mode, "owner": "root"})
		v == {{"message": sprintf("/etc/shadow has mode %s: want 0640 or stricter (no bit beyond rw-r-----)", [mode]), "resource": "file:/etc/shadow"}}
	}
}

test_owner_must_be_root if {
	v := shadow_perms.violations with input as shadow({"mode": "0640", "owner": "alice"})
	v == {{"message": "/etc/shadow is owned by alice: want root", "resource": "file:/etc/shadow"}}
}

test_unset_mode_and_owner_fail if {
	v := shadow_perms.violations with input as shadow({})
	count(v) == 2
}

test_unmanaged_or_absent_passes if {
	count(shadow_perms.violations) == 0 with input as input_of([])
	count(shadow_perms.violations) == 0 with input as shadow({"ensure": "absent"})
}
