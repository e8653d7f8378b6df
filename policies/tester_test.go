package policies

import (
	"context"
	"strings"
	"testing"
)

const gatePolicy = `package herd.gate

deny contains sprintf("%s is world-writable", [r.id]) if {
	some r in input.catalog.resources
	r.type == "file"
	r.attrs.mode == "0666"
}
`

func TestRunTests(t *testing.T) {
	t.Parallel()
	src := files(
		"policies/gate.rego", gatePolicy,
		"policies/gate_test.rego", `package herd.gate_test

import data.herd.gate

test_denied if {
	gate.deny == {"file:/x is world-writable"} with input as {"catalog": {"resources": [{"id": "file:/x", "type": "file", "attrs": {"mode": "0666"}}]}}
}

test_wrong if {
	print("resources:", 1)
	count(gate.deny) == 0 with input as {"catalog": {"resources": [{"id": "file:/x", "type": "file", "attrs": {"mode": "0666"}}]}}
}

test_error if {
	to_number("x") == 1
}

todo_test_later if {
	false
}
`)
	results, err := RunTests(context.Background(), src)
	if err != nil {
		t.Fatalf("RunTests: %v", err)
	}
	type row struct {
		name    string
		line    int
		passed  bool
		skipped bool
		errHas  []string
	}
	want := []row{
		{"test_denied", 5, true, false, nil},
		{"test_wrong", 9, false, false, []string{"policies/gate_test.rego:11: failed: count(gate.deny) == 0", "printed:\nresources: 1"}},
		{"test_error", 14, false, false, []string{"policies/gate_test.rego:15", "to_number"}},
		{"todo_test_later", 18, false, true, nil},
	}
	if len(results) != len(want) {
		t.Fatalf("RunTests() = %d results, want %d: %+v", len(results), len(want), results)
	}
	for i, w := range want {
		r := results[i]
		if r.Name != w.name || r.Line != w.line || r.Passed != w.passed || r.Skipped != w.skipped ||
			r.File != "policies/gate_test.rego" || r.Package != "herd.gate_test" {
			t.Errorf("result %d = %+v, want %s at policies/gate_test.rego:%d passed=%v skipped=%v in herd.gate_test", i, r, w.name, w.line, w.passed, w.skipped)
		}
		for _, s := range w.errHas {
			if !strings.Contains(r.Error, s) {
				t.Errorf("%s: Error = %q, want it to contain %q", r.Name, r.Error, s)
			}
		}
		if w.passed && r.Error != "" {
			t.Errorf("%s passed with Error %q", r.Name, r.Error)
		}
	}
}

func TestRunTestsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   []string
		wantErr string
	}{
		{"broken test file", []string{"policies/gate.rego", gatePolicy, "policies/gate_test.rego", "package herd.gate_test\n\ntest_x if {"}, "policies/gate_test.rego:3"},
		{"broken policy", []string{"policies/gate.rego", "package herd.gate\ndeny contains x if true", "policies/gate_test.rego", "package herd.gate_test\ntest_x if true"}, "policies/gate.rego:2"},
		{"unknown function in a test", []string{"policies/gate_test.rego", "package herd.gate_test\n\n\ntest_x if http.send({}).status_code == 200"}, "policies/gate_test.rego:4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := RunTests(context.Background(), files(tt.files...))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("RunTests() = %+v, %v; want an error containing %q", res, err, tt.wantErr)
			}
		})
	}
	res, err := RunTests(context.Background(), files("policies/gate.rego", gatePolicy))
	if err != nil || len(res) != 0 {
		t.Errorf("RunTests(no test files) = %+v, %v; want nothing", res, err)
	}
}
