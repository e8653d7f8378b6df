package main

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/agent"
	"github.com/herdcm/herd/agent/resources"
	"github.com/herdcm/herd/agent/supervise"
	"github.com/herdcm/herd/api/herdv1"
	"github.com/herdcm/herd/catalogs"
)

// TestCLIDocJSONFields: docs/cli.md names every field of every --json
// output, under the command's own heading, so that a field added to the
// wire or to a report is documented or this fails. Proto messages are
// printed with protojson's names (lowerCamelCase); Go types with their
// json tags.
func TestCLIDocJSONFields(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // "### `herd nodes --json`" heading → its text
	var head string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "### ") {
			head = strings.Trim(strings.TrimPrefix(line, "### "), "`")
			continue
		}
		if head != "" {
			sections[head] += line + "\n"
		}
	}
	tests := []struct {
		heading string
		protos  []proto.Message
		types   []any
		names   []string
	}{
		{heading: "herd nodes --json", protos: []proto.Message{&herdv1.NodeInfo{}, &herdv1.Summary{}}, names: []string{"nodes"}},
		{heading: "herd reports --json", protos: []proto.Message{&herdv1.StoredReport{}, &herdv1.Report{}, &herdv1.Event{}, &herdv1.Change{}, &herdv1.ServiceHealth{}}, names: []string{"reports"}},
		{heading: "herd status --json", protos: []proto.Message{&herdv1.SiteStatusResponse{}}},
		{heading: "herd rollout list --json", protos: []proto.Message{&herdv1.Rollout{}, &herdv1.RolloutStage{}}, names: []string{"rollouts"}},
		{heading: "herd rollout status --json", protos: []proto.Message{&herdv1.GetRolloutResponse{}, &herdv1.RolloutNode{}, &herdv1.PolicyMessage{}}},
		{heading: "herd rollout diff --json", types: []any{catalogs.Change{}, catalogs.ResourceChange{}, catalogs.AttrChange{}}, names: []string{"from", "to", "nodes"}},
		{heading: "herd diff --json", names: []string{"from", "to", "nodes", "failed"}},
		{heading: "herd audit --format json", protos: []proto.Message{&herdv1.AuditResponse{}, &herdv1.AuditControl{}, &herdv1.AuditResult{}, &herdv1.AuditEvidence{}}},
		{heading: "herd ca list --json", protos: []proto.Message{&herdv1.Certificate{}}, names: []string{"certificates"}},
		{heading: "herd ca status --json", protos: []proto.Message{&herdv1.Authority{}}, names: []string{"authorities"}},
		{heading: "herd ca tokens --json", protos: []proto.Message{&herdv1.JoinToken{}}, names: []string{"tokens"}},
		{heading: "herd check --json", names: []string{"site", "version", "gate", "audit_controls", "tests", "passed", "failed", "policy_tests", "policy_passed", "policy_failed", "name", "node", "resources", "denied", "failures", "package", "file", "line", "skipped", "error", "duration_ns"}},
		{heading: "herd lookup --json", types: []any{catalogs.LookupResult{}, catalogs.LookupStep{}}},
		{heading: "herd apply --json", types: []any{agent.Report{}, agent.Summary{}, agent.Event{}, resources.Change{}, agent.ServiceHealth{}}},
		{heading: "herd facts --json", names: []string{"fact", "nodes", "node", "value", "missing"}},
		{heading: "herd services --json", types: []any{supervise.Status{}}},
		{heading: "herd backups --json", types: []any{agent.Backup{}}},
		{heading: "herd version --json", names: []string{"version", "go", "os", "arch"}},
	}
	for _, tt := range tests {
		text, ok := sections[tt.heading]
		if !ok {
			t.Errorf("docs/cli.md has no section ### `%s`", tt.heading)
			continue
		}
		names := slicesClone(tt.names)
		for _, m := range tt.protos {
			fs := m.ProtoReflect().Descriptor().Fields()
			for i := range fs.Len() {
				if fs.Get(i).JSONName() != "nextPageToken" {
					names = append(names, fs.Get(i).JSONName())
				}
			}
		}
		for _, v := range tt.types {
			names = append(names, jsonNames(reflect.TypeOf(v))...)
		}
		for _, n := range names {
			// `name` in the prose, or "name" in a shape.
			if q := regexp.QuoteMeta(n); !regexp.MustCompile("`" + q + "`|\"" + q + "\"").MatchString(text) {
				t.Errorf("docs/cli.md, ### `%s`, does not name the field `%s`", tt.heading, n)
			}
		}
	}
}

// jsonNames is the JSON field names of a struct type, as encoding/json
// writes them.
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out = append(out, name)
	}
	return out
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
