package resources

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/herdcm/herd/catalogs"
)

// User is the user resource type: a local account in the host root's
// etc/passwd, managed with useradd, usermod and userdel.
//
// Check reads etc/passwd and etc/group in process and spawns nothing. Only
// the attributes a resource sets are managed: uid, gid (a group name,
// resolved in the root's etc/group, or a number), groups (the exact set of
// supplementary groups, in any order; an empty list means none), home,
// shell and comment. system and managehome shape the account when it is
// created (useradd -r, -m) and are not compared afterwards; managehome
// also moves the home directory when home changes (usermod -m) and removes
// it with the account (userdel -r).
//
// password is a crypt(3) hash, compared with the root's etc/shadow (read
// in process) and set with chpasswd -e, which reads it on its standard
// input: a hash on a command line would be readable by every local user
// in /proc. Its changes are Sensitive, so no report, event or noop output
// carries it. In a sandbox root chpasswd runs with --root (a chroot):
// unlike the other tools it has no --prefix.
//
// Without a gid, useradd follows the root's login.defs: on Debian a group
// named after the user is created. When a group of that name already
// exists (a group resource made it, with its own gid), the user joins it
// instead of failing as useradd alone would.
//
// In a sandbox root the shadow tools run with --prefix, which keeps every
// file they touch under the root: etc/passwd, shadow, group, gshadow, and
// the home directory. Two things --prefix does not cover in shadow 4.13
// are passed explicitly: the skeleton directory (the tools would copy this
// machine's /etc/skel) and the lastlog and faillog records, which a
// sandbox has no use for. And usermod --gid ignores --prefix before
// shadow 4.14, so a usermod that changes the primary group of a sandbox
// account runs with --root (a chroot) instead.
type User struct{}

var _ Type = (*User)(nil)

// Check compares the account in the root's etc/passwd and etc/group with want.
func (t *User) Check(_ context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	name, err := accountName("user", want)
	if err != nil {
		return nil, err
	}
	ensure, err := accountEnsure("user", name, want)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Resource: want}
	if accountIgnores(want, "ensure") {
		return plan, nil
	}
	root := accountRoot(h)
	db, err := readAccountsDB(root)
	if err != nil {
		return nil, fmt.Errorf("checking user %s: %w", name, err)
	}
	u, exists := db.user(name)
	managehome := want.Bool("managehome")

	switch {
	case ensure == "absent" && !exists:
		return plan, nil
	case ensure == "absent":
		plan.Changes = []Change{{Attr: "ensure", From: "present", To: "absent", Action: Delete}}
		argv := shadowArgv(root, "userdel")
		if managehome {
			argv = append(argv, "--remove")
		}
		plan.State = &accountState{doing: "removing user " + name, argv: append(argv, name)}
		return plan, nil
	case !exists:
		return t.create(root, db, name, want, plan)
	}

	var argv []string
	gidChanged := false
	update := func(attr, from, to string, args ...string) {
		plan.Changes = append(plan.Changes, Change{Attr: attr, From: from, To: to, Action: Update})
		argv = append(argv, args...)
	}
	if uid, ok := want.Int("uid"); ok && !accountIgnores(want, "uid") && int64(u.ID) != uid {
		update("uid", strconv.Itoa(u.ID), strconv.FormatInt(uid, 10), "--uid", strconv.FormatInt(uid, 10))
	}
	if gid, ok := userGID(want); ok && !accountIgnores(want, "gid") {
		g, found := db.group(gid)
		if !found || g.ID != u.GID {
			// Named the way the catalog names it, so the change reads
			// "gid users → admins" or "gid 100 → 3000".
			from := db.groupName(u.GID)
			if _, err := strconv.Atoi(gid); err == nil {
				from = strconv.Itoa(u.GID)
			}
			update("gid", from, gid, "--gid", gid)
			gidChanged = true
		}
	}
	if want.Has("groups") && !accountIgnores(want, "groups") {
		have, wantGroups := db.memberships(name), userGroups(db, want)
		if !slices.Equal(have, wantGroups) {
			update("groups", userFormatGroups(have), userFormatGroups(wantGroups), "--groups", strings.Join(wantGroups, ","))
		}
	}
	if home := want.String("home"); home != "" && !accountIgnores(want, "home") && home != u.Home {
		args := []string{"--home", home}
		if managehome {
			args = append(args, "--move-home")
		}
		update("home", u.Home, home, args...)
	}
	if want.Has("shell") && !accountIgnores(want, "shell") && want.String("shell") != u.Shell {
		update("shell", u.Shell, want.String("shell"), "--shell", want.String("shell"))
	}
	if want.Has("comment") && !accountIgnores(want, "comment") && want.String("comment") != u.Comment {
		update("comment", u.Comment, want.String("comment"), "--comment", want.String("comment"))
	}
	pw, err := userPassword(root, name, want)
	if err != nil {
		return nil, err
	}
	if pw != nil {
		plan.Changes = append(plan.Changes, Change{Attr: "password", Action: Update, Sensitive: true})
	}
	if len(argv) > 0 {
		tool := shadowArgv(root, "usermod")
		if root != "/" && gidChanged {
			// usermod before shadow 4.14 resolves --gid through this
			// machine's group database whatever --prefix says
			// (shadow-maint/shadow#691), so a group that exists only in
			// the root "does not exist". --root chroots instead, where
			// glibc's built-in files backend reads the root's etc/group.
			tool = []string{"usermod", "--root", root}
		}
		plan.State = &accountState{doing: "changing user " + name, argv: append(append(tool, argv...), name)}
	}
	if pw != nil {
		if plan.State == nil {
			plan.State = &accountState{doing: "changing user " + name}
		}
		plan.State.(*accountState).passwd = pw
	}
	return plan, nil
}

// userPassword returns what chpasswd -e must read to set the wanted
// password hash, or nil when the root's etc/shadow has it already (or the
// resource does not manage the password).
func userPassword(root, name string, want *catalogs.Resource) ([]byte, error) {
	if !want.Has("password") || accountIgnores(want, "password") {
		return nil, nil
	}
	hash := want.String("password")
	if err := checkCryptField(hash); err != nil {
		return nil, fmt.Errorf("checking user %s: password: %w", name, err)
	}
	have, found, err := readShadowHash(root, name)
	if err != nil {
		return nil, fmt.Errorf("checking user %s: %w", name, err)
	}
	if found && have == hash {
		return nil, nil
	}
	return []byte(name + ":" + hash + "\n"), nil
}

// create plans the useradd of a missing account. The plan lists every
// attribute the account gets, so that noop says what would be created.
func (t *User) create(root string, db *accountsDB, name string, want *catalogs.Resource, plan *Plan) (*Plan, error) {
	plan.Changes = []Change{{Attr: "ensure", From: "absent", To: "present", Action: Create}}
	argv := shadowArgv(root, "useradd")
	set := func(attr, to string, args ...string) {
		plan.Changes = append(plan.Changes, Change{Attr: attr, To: to, Action: Create})
		argv = append(argv, args...)
	}
	if uid, ok := want.Int("uid"); ok {
		set("uid", strconv.FormatInt(uid, 10), "--uid", strconv.FormatInt(uid, 10))
	}
	if gid, ok := userGID(want); ok {
		set("gid", gid, "--gid", gid)
	} else if _, ok := db.group(name); ok {
		// useradd would refuse to create the user private group over an
		// existing one; joining it is what was meant.
		argv = append(argv, "--gid", name)
	}
	if want.Has("groups") {
		if gs := userGroups(db, want); len(gs) > 0 {
			set("groups", userFormatGroups(gs), "--groups", strings.Join(gs, ","))
		}
	}
	if home := want.String("home"); home != "" {
		set("home", home, "--home-dir", home)
	}
	if want.Has("shell") {
		set("shell", want.String("shell"), "--shell", want.String("shell"))
	}
	if want.Has("comment") {
		set("comment", want.String("comment"), "--comment", want.String("comment"))
	}
	if want.Bool("system") {
		argv = append(argv, "--system")
	}
	var passwd []byte
	if want.Has("password") && !accountIgnores(want, "password") {
		hash := want.String("password")
		if err := checkCryptField(hash); err != nil {
			return nil, fmt.Errorf("checking user %s: password: %w", name, err)
		}
		plan.Changes = append(plan.Changes, Change{Attr: "password", Action: Create, Sensitive: true})
		passwd = []byte(name + ":" + hash + "\n")
	}
	if want.Bool("managehome") {
		argv = append(argv, "--create-home")
		if root != "/" {
			argv = append(argv, "--skel", filepath.Join(root, "etc/skel"))
		}
	} else {
		// Explicitly, so that login.defs' CREATE_HOME does not decide.
		argv = append(argv, "--no-create-home")
	}
	if root != "/" {
		argv = append(argv, "--no-log-init")
	}
	plan.State = &accountState{doing: "creating user " + name, argv: append(argv, name), passwd: passwd}
	return plan, nil
}

// Apply runs the useradd, usermod or userdel the plan names.
func (t *User) Apply(ctx context.Context, h *Host, p *Plan) error {
	accountsMu.Lock()
	defer accountsMu.Unlock()
	return shadowApply(ctx, h, p)
}

// userGID returns the wanted primary group as the catalog gives it: a
// name, or a number (an integer is accepted too).
func userGID(r *catalogs.Resource) (string, bool) {
	if s := r.String("gid"); s != "" {
		return s, true
	}
	if n, ok := r.Int("gid"); ok {
		return strconv.FormatInt(n, 10), true
	}
	return "", false
}

// userGroups returns the wanted supplementary groups as names, sorted and
// without duplicates; a number names the root's group with that gid.
func userGroups(db *accountsDB, r *catalogs.Resource) []string {
	var out []string
	for _, g := range r.Strings("groups") {
		if a, ok := db.group(g); ok {
			g = a.Name
		}
		out = append(out, g)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// userFormatGroups renders a group set for a change: "[adm sudo]".
func userFormatGroups(gs []string) string {
	return "[" + strings.Join(gs, " ") + "]"
}
