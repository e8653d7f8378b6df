# Services do not run as root unless allowed: a service resource without a
# user, or with user "root", is denied unless its name is in
# root_services_allowed.
package herd.gate

# Services allowed to run as root, each with its reason.
root_services_allowed := {
	# The demo web service of roles/web.toml runs without a user; it
	# listens on 8080 and needs no root: give it a user and drop it here.
	"demo-web",
}

deny contains {"message": sprintf("service %s runs as root: set user, or allow it in root_services_allowed (policies/services.rego)", [r.name]), "resource": r.id} if {
	some r in input.judge
	r.type == "service"
	object.get(r.attrs, "user", "root") == "root"
	not r.name in root_services_allowed
}
