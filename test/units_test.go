package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnits checks the shipped units with systemd-analyze verify,
// pointing them at the binaries under test. Any complaint fails the test,
// warnings included.
func TestSystemdUnits(t *testing.T) {
	analyze := needTool(t, "systemd-analyze")
	dir := t.TempDir()
	units := []string{
		"../cmd/epmd/epmd.socket", "../cmd/epmd/epmd.service",
		"../cmd/gateway/holdfast-gateway.service", "../cmd/backend/holdfast-backend.service",
		"../cmd/bridge/holdfast-bridge.service",
	}
	var args []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/local/bin/", binDir+"/")
		path := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, args...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
