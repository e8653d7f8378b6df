package facts

import (
	"context"
	"os"
	"strconv"
	"strings"
)

// collectIdentity reports who the agent runs as. It describes this process,
// so it is live even under a sandbox root. Names come from /etc/passwd and
// /etc/group read directly, not through NSS, whose LDAP or SSSD modules can
// hang and which would need cgo.
func collectIdentity(_ context.Context, _ *host) (Facts, error) {
	uid, gid := os.Getuid(), os.Getgid()
	id := map[string]any{
		"uid":  int64(uid),
		"gid":  int64(gid),
		"root": os.Geteuid() == 0,
	}
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		id["user"] = nameByID(b, uid)
	}
	if b, err := os.ReadFile("/etc/group"); err == nil {
		id["group"] = nameByID(b, gid)
	}
	return Facts{"identity": id}, nil
}

// nameByID finds the entry with id in passwd(5) or group(5) text, both of
// which have the name first and the id third.
func nameByID(b []byte, id int) string {
	want := strconv.Itoa(id)
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.SplitN(line, ":", 4)
		if len(f) >= 3 && f[2] == want {
			return f[0]
		}
	}
	return ""
}
