package server

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/herdcm/herd/api/herdv1"
)

// TestEveryMethodHasARow enumerates the services the server registers and
// fails when a method has no row in the authorization table (it would be
// refused, but silently), or a row names no method (a stale rule).
func TestEveryMethodHasARow(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{herdv1.Enroll_ServiceDesc, herdv1.Node_ServiceDesc, herdv1.Admin_ServiceDesc} {
		for _, m := range sd.Methods {
			seen["/"+sd.ServiceName+"/"+m.MethodName] = true
		}
		for _, st := range sd.Streams {
			seen["/"+sd.ServiceName+"/"+st.StreamName] = true
		}
	}
	for m := range seen {
		if _, ok := methodRoles[m]; !ok {
			t.Errorf("method %s has no row in methodRoles", m)
		}
	}
	for m := range methodRoles {
		if !seen[m] {
			t.Errorf("methodRoles names %s, which no service has", m)
		}
	}
	if len(seen) < 14 {
		t.Errorf("found only %d methods: are all services enumerated?", len(seen))
	}
}

func TestJSONDepth(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{
		`{}`: 1, `{"a":{"b":[1,2,{"c":3}]}}`: 4, `{"a":"{{{{[[["}`: 1, `{"a":"\"{"}`: 1, `[]`: 1, `1`: 0,
	} {
		if got := jsonDepth([]byte(in)); got != want {
			t.Errorf("jsonDepth(%s) = %d, want %d", in, got, want)
		}
	}
}

func FuzzJSONDepth(f *testing.F) {
	f.Add([]byte(`{"a":[{"b":"c\"]"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d := jsonDepth(b); d < 0 || d > len(b) {
			t.Fatalf("jsonDepth = %d for %d bytes", d, len(b))
		}
	})
}
