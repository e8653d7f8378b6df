package supervise

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSpecNormalize(t *testing.T) {
	t.Parallel()
	got, err := Spec{Name: "web", Argv: []string{"web"}, Health: &HealthCheck{TCP: "127.0.0.1:80", Interval: 2 * time.Second}}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{
		Name: "web", Argv: []string{"web"}, Dir: "/", Restart: RestartAlways,
		StopSignal: syscall.SIGTERM, StopTimeout: 10 * time.Second,
		Health: &HealthCheck{TCP: "127.0.0.1:80", Interval: 2 * time.Second, Timeout: 2 * time.Second, Retries: 3},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("normalize mismatch (-want +got):\n%s", diff)
	}
	// Defaults spelled out or left out mean the same spec.
	if got.digest() != want.digest() {
		t.Errorf("digests differ for the same spec")
	}
	other := want
	other.Env = []string{"A=1"}
	if other.digest() == want.digest() {
		t.Errorf("digests equal for different specs")
	}
}

func TestSpecNormalizeErrors(t *testing.T) {
	t.Parallel()
	ok := Spec{Name: "web", Argv: []string{"/bin/web"}}
	tests := []struct {
		name  string
		tweak func(*Spec)
		want  string
	}{
		{"no name", func(s *Spec) { s.Name = "" }, "name"},
		{"slash in name", func(s *Spec) { s.Name = "a/b" }, "name"},
		{"no argv", func(s *Spec) { s.Argv = nil }, "argv"},
		{"bad env", func(s *Spec) { s.Env = []string{"NOEQUALS"} }, "KEY=VALUE"},
		{"bad restart", func(s *Spec) { s.Restart = "sometimes" }, "restart"},
		{"bad signal", func(s *Spec) { s.StopSignal = 99 }, "stop_signal"},
		{"negative timeout", func(s *Spec) { s.StopTimeout = -1 }, "stop_timeout"},
		{"two probes", func(s *Spec) { s.Health = &HealthCheck{TCP: "a:1", HTTP: "http://a/"} }, "exactly one"},
		{"no probe", func(s *Spec) { s.Health = &HealthCheck{} }, "exactly one"},
		{"bad url", func(s *Spec) { s.Health = &HealthCheck{HTTP: "ftp://a/"} }, "http"},
		{"bad tcp", func(s *Spec) { s.Health = &HealthCheck{TCP: "nohost"} }, "tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := ok
			tt.tweak(&s)
			_, err := s.normalize()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("normalize() = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

func TestSpecNormalizeCopies(t *testing.T) {
	t.Parallel()
	in := Spec{Name: "web", Argv: []string{"/bin/web"}, Env: []string{"A=1"}}
	n, err := in.normalize()
	if err != nil {
		t.Fatal(err)
	}
	in.Argv[0], in.Env[0] = "changed", "B=2"
	if n.Argv[0] != "/bin/web" || n.Env[0] != "A=1" {
		t.Errorf("normalize shares the caller's slices")
	}
}
