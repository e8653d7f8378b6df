package resources

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/herdcm/herd/catalogs"
)

// Cron keeps a cron job as one file, /etc/cron.d/<name> (the `cron`
// resource type), owned by root with mode 0644 as cron requires (it
// ignores a file others can write). The file holds a header naming the
// resource, the job's variables and one line: schedule, user, command.
// cron runs the command with /bin/sh. The whole file is Herd's: a hand
// edit is put back, a symbolic link at its name replaced, and ensure =
// absent removes it. Old contents go to the content store.
//
// /etc/cron.d must exist (cron's package makes it): a missing one is an
// error rather than a directory made for a cron that is not there.
//
// The zero Cron is ready to use.
type Cron struct{}

var _ Type = (*Cron)(nil)

// cronDir is where cron jobs live.
const cronDir = "/etc/cron.d"

// cronState is what Check learned and Apply needs.
type cronState struct {
	file   *textFile
	want   []byte // nil: remove the file
	absent bool
}

// cronContent renders a cron resource as its file, checking it as the
// agent receives it (the compiler's checks are made again).
func cronContent(r *catalogs.Resource) ([]byte, error) {
	if err := catalogs.CronName(r.Name); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	schedule, command, user := r.String("schedule"), r.String("command"), r.String("user")
	if user == "" {
		user = "root"
	}
	if err := catalogs.CheckCronSchedule(schedule); err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	if strings.TrimSpace(command) == "" || strings.ContainsAny(command, "\n\r") {
		return nil, fmt.Errorf("command %q: want one non-empty line", command)
	}
	if strings.ContainsAny(user, " \t\n\r") || strings.HasPrefix(user, "-") {
		return nil, fmt.Errorf("user %q: not an account name", user)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by herd (cron:%s): changes made here are put back.\n", r.Name)
	env := r.StringMap("environment")
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := env[k]
		if !validEnvName(k) || strings.ContainsAny(v, "\n\r") {
			return nil, fmt.Errorf("environment %s: want NAME = \"one line\"", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	fmt.Fprintf(&b, "%s %s %s\n", strings.Join(strings.Fields(schedule), " "), user, command)
	return []byte(b.String()), nil
}

// validEnvName is a variable name cron reads as one.
func validEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Check compares the job's file with the resource.
func (c *Cron) Check(ctx context.Context, h *Host, want *catalogs.Resource) (*Plan, error) {
	st := &cronState{}
	switch e := want.String("ensure"); e {
	case "", "present":
	case "absent":
		st.absent = true
	default:
		return nil, fmt.Errorf("ensure %q: want present or absent", e)
	}
	if err := catalogs.CronName(want.Name); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	if !st.absent {
		b, err := cronContent(want)
		if err != nil {
			return nil, err
		}
		st.want = b
	}
	tf, err := readText(h.Root, cronDir+"/"+want.Name)
	if err != nil {
		return nil, err
	}
	st.file = tf
	p := &Plan{Resource: want, State: st}
	p.Changes = ownedFileChanges(tf, st.want, !st.absent)
	return p, nil
}

// ownedFileChanges compares a file Herd owns whole (mode 0644, root)
// with want; present false means the file should not be there.
func ownedFileChanges(tf *textFile, want []byte, present bool) []Change {
	switch {
	case !present && (tf.exists || tf.link != ""):
		return []Change{{Attr: "ensure", From: describeText(tf), To: "absent", Action: Delete}}
	case !present:
		return nil
	case tf.link != "":
		return []Change{{Attr: "ensure", From: describeText(tf), To: "file", Action: Update, Diff: textDiff(tf.path, false, nil, want)}}
	case !tf.exists:
		return []Change{{Attr: "content", To: catalogs.Digest(want), Action: Create, Diff: textDiff(tf.path, false, nil, want)}}
	}
	var cs []Change
	if string(tf.content) != string(want) {
		cs = append(cs, Change{Attr: "content", From: catalogs.Digest(tf.content), To: catalogs.Digest(want), Action: Update, Diff: textDiff(tf.path, true, tf.content, want)})
	}
	if m := tf.stat.Mode & 0o7777; m != fileDefaultMode {
		cs = append(cs, Change{Attr: "mode", From: formatMode(m), To: formatMode(fileDefaultMode), Action: Update})
	}
	if tf.stat.Uid != 0 || tf.stat.Gid != 0 {
		cs = append(cs, Change{Attr: "owner", From: fmt.Sprintf("%d:%d", tf.stat.Uid, tf.stat.Gid), To: "0:0", Action: Update})
	}
	return cs
}

// describeText names what is at a file's path, for a change.
func describeText(tf *textFile) string {
	switch {
	case tf.link != "":
		return "link to " + tf.link
	case tf.exists:
		return "file"
	}
	return "absent"
}

// applyOwnedFile writes (or removes) a file Herd owns whole: mode 0644,
// owned by root, whatever was there.
func applyOwnedFile(ctx context.Context, h *Host, tf *textFile, want []byte, present bool) error {
	if !present {
		return removeText(ctx, h, tf)
	}
	return writeText(ctx, h, tf, want, textWrite{mode: fileDefaultMode, uid: 0, gid: 0, force: true})
}

// Apply writes or removes the job's file.
func (c *Cron) Apply(ctx context.Context, h *Host, p *Plan) error {
	st, ok := p.State.(*cronState)
	if !ok {
		return fmt.Errorf("applying cron: plan has no cron state (%T)", p.State)
	}
	return applyOwnedFile(ctx, h, st.file, st.want, !st.absent)
}
