package gateway

import (
	"testing"

	"holdfast/epmd"
)

// TestBackendOnAnotherHost: NAME@HOST asks the registry on HOST, at the
// registry port the gateway was given when it has no registry of its own,
// at the usual one (ERL_EPMD_PORT) when it embeds one.
func TestBackendOnAnotherHost(t *testing.T) {
	t.Setenv("ERL_EPMD_PORT", "4999")
	for _, tc := range []struct {
		epmd     string
		embedded bool
		want     string
	}{
		{"127.0.0.1:4370", false, "192.0.2.7:4370"},
		{"127.0.0.1:4370", true, "192.0.2.7:4999"},
		{"", false, "192.0.2.7:4999"},
	} {
		s := &Server{Backend: "game@192.0.2.7", EPMD: tc.epmd}
		if tc.embedded {
			s.Registry = &epmd.Server{}
		}
		name, registry, host := s.backendName()
		if name != "game" || registry != tc.want || host != "192.0.2.7" {
			t.Errorf("%+v: %q %q %q, want game %q 192.0.2.7", tc, name, registry, host, tc.want)
		}
	}
}
