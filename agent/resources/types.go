package resources

// Types returns a fresh implementation of every resource type, by name.
// It is the one explicit list (no init-time registry); a run takes a new
// set, so that per-run caches (the dpkg status file, account files) start
// empty.
func Types() map[string]Type {
	return map[string]Type{
		"file":    &File{},
		"package": &Package{},
		"service": &Service{},
		"exec":    &Exec{},
		"user":    &User{},
		"group":   &Group{},
		"line":    &Line{},
		"ini":     &INI{},
		"cron":    &Cron{},
		"sysctl":  &Sysctl{},
		"mount":   &Mount{},

		"authorized_key": &AuthorizedKey{},
		"apt_repository": &AptRepository{},
	}
}
