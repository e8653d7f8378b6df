package resources

import (
	"context"
	"fmt"
	"strconv"

	"github.com/herdcm/herd/catalogs"
)

// Group is the group resource type: a local group in the host root's
// etc/group, managed with groupadd, groupmod and groupdel.
//
// Check reads etc/group in process and spawns nothing. gid is managed
// when set; system shapes the group when it is created (groupadd -r, a
// gid below GID_MIN) and is not compared afterwards. Members are the
// business of the users that list the group in their groups.
//
// In a sandbox root the tools run with --prefix, so that they change the
// root's etc/group and etc/gshadow and read its login.defs.
type Group struct{}

var _ Type = (*Group)(nil)

// Check compares the group in the root's etc/group with want.
func (t *Group) Check(_ context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	name, err := accountName("group", want)
	if err != nil {
		return nil, err
	}
	ensure, err := accountEnsure("group", name, want)
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
		return nil, fmt.Errorf("checking group %s: %w", name, err)
	}
	var g Account
	exists := false
	for _, a := range db.groups {
		if a.Name == name {
			g, exists = a, true
			break
		}
	}
	gid, hasGID := want.Int("gid")
	switch {
	case ensure == "absent" && exists:
		plan.Changes = []Change{{Attr: "ensure", From: "present", To: "absent", Action: Delete}}
		plan.State = &accountState{doing: "removing group " + name, argv: append(shadowArgv(root, "groupdel"), name)}
	case ensure == "absent":
	case !exists:
		plan.Changes = []Change{{Attr: "ensure", From: "absent", To: "present", Action: Create}}
		argv := shadowArgv(root, "groupadd")
		if hasGID {
			plan.Changes = append(plan.Changes, Change{Attr: "gid", To: strconv.FormatInt(gid, 10), Action: Create})
			argv = append(argv, "--gid", strconv.FormatInt(gid, 10))
		}
		if want.Bool("system") {
			argv = append(argv, "--system")
		}
		plan.State = &accountState{doing: "creating group " + name, argv: append(argv, name)}
	case hasGID && int64(g.ID) != gid && !accountIgnores(want, "gid"):
		plan.Changes = []Change{{Attr: "gid", From: strconv.Itoa(g.ID), To: strconv.FormatInt(gid, 10), Action: Update}}
		argv := append(shadowArgv(root, "groupmod"), "--gid", strconv.FormatInt(gid, 10), name)
		plan.State = &accountState{doing: "changing group " + name, argv: argv}
	}
	return plan, nil
}

// Apply runs the groupadd, groupmod or groupdel the plan names.
func (t *Group) Apply(ctx context.Context, h *Host, p *Plan) error {
	accountsMu.Lock()
	defer accountsMu.Unlock()
	return shadowApply(ctx, h, p)
}
