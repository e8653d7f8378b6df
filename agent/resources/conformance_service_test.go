package resources

import "testing"

// serviceConformance returns the service type's conformance cases: the
// herd provider against the fake supervisor of service_test.go, and the
// systemd provider against the stand-in systemctl of systemd_test.go.
func serviceConformance(t *testing.T) []conformanceCase {
	return []conformanceCase{
		{
			name: "service/herd running",
			typ:  &Service{},
			res:  res("service", "web", map[string]any{"run": []string{"/usr/bin/web", "--port", "8080"}, "health.tcp": "127.0.0.1:8080"}),
			setup: func(t *testing.T, h *Host, _ *testFiles) {
				h.Services = newFakeServices()
			},
			refresh: true,
		},
		{
			name: "service/systemd unit",
			typ:  &Service{systemd: func(string) error { return nil }},
			res: res("service", "web", map[string]any{
				"provider": "systemd", "run": []string{"/usr/bin/web"}, "env": map[string]string{"PORT": "8080"}, "enable": true,
			}),
			setup: func(t *testing.T, h *Host, _ *testFiles) {
				installFakeSystemctl(t, h)
			},
			refresh: true,
		},
	}
}
