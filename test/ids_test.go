package test

import (
	"syscall"
	"testing"
)

// TestSessionIDsUnique checks that a session id names one player only:
// not the same as a player's before the gateway restarted, nor as a
// player's on another gateway linked to the same backend.
func TestSessionIDsUnique(t *testing.T) {
	sys := startSystem(t)
	be := sys.startBackend()
	first := dial(t, sys.telnet, "Ada")
	first.login()
	seen := map[string]string{first.facts()["id"]: "Ada, on the first gateway"}

	// A second gateway on the same registry links to the same backend.
	second := start(t, "gateway", sys.env(), "-listen", "127.0.0.1:0", "-cookie-file", sys.cookie)
	second.waitLog("gateway: backend linked", 1)
	other := dial(t, second.waitLog("gateway: telnet listening", 1)["addr"].(string), "Bob")
	other.login()
	note := func(id, who string) {
		t.Helper()
		if id == "" {
			t.Fatalf("%s has no session id", who)
		}
		if was, ok := seen[id]; ok {
			t.Errorf("%s has session id %q, as %s had", who, id, was)
		}
		seen[id] = who
	}
	note(other.facts()["id"], "Bob, on the second gateway")

	// The first gateway restarts; its new players get new ids.
	sys.gw.kill(syscall.SIGKILL)
	sys.gw.wait()
	be.kill(syscall.SIGKILL)
	be.wait()
	sys = startSystem(t)
	sys.startBackend()
	for _, name := range []string{"Cy", "Di"} {
		p := dial(t, sys.telnet, name)
		p.login()
		note(p.facts()["id"], name+", after the gateway restarted")
	}
}
