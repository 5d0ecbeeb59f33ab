package test

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestBackendRestart is the whole path: three players log in, the backend
// is killed, the players type while it is down, a new backend starts, and
// every player is still connected and logged in, with each held line
// answered once and in order. Then the same with a graceful stop.
func TestBackendRestart(t *testing.T) {
	sys := startSystem(t)
	be := sys.startBackend()

	names := []string{"Ada", "Bob", "Cid"}
	var players []*player
	for _, n := range names {
		p := dial(t, sys.telnet, n)
		p.login()
		players = append(players, p)
	}
	for _, p := range players {
		p.who("Ada, Bob, Cid")
	}

	for round, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Logf("round %d: stopping the backend with %v", round+1, sig)
		be.kill(sig)
		be.wait()
		for _, p := range players {
			p.expect("[holdfast] The game is restarting.")
		}
		// Typed while no backend is running: held by the gateway.
		for _, p := range players {
			for k := 1; k <= 5; k++ {
				p.send(fmt.Sprintf("echo %s-%d-%d", p.name, round, k))
			}
		}
		be = sys.startBackend()
		for _, p := range players {
			p.expect("[holdfast] The game is back.")
			p.send("echo end")
			var got []string
			for _, l := range p.until(func(l string) bool { return l == "echo: end" }) {
				if strings.HasPrefix(l, "echo: ") {
					got = append(got, strings.TrimPrefix(l, "echo: "))
				}
			}
			var want []string
			for k := 1; k <= 5; k++ {
				want = append(want, fmt.Sprintf("%s-%d-%d", p.name, round, k))
			}
			want = append(want, "end")
			if !slices.Equal(got, want) {
				t.Errorf("%s after %v: echo answers %q, want %q", p.name, sig, got, want)
			}
			p.who("Ada, Bob, Cid")
			f := p.facts()
			if f["resumed"] != fmt.Sprint(round+1) {
				t.Errorf("%s after %v: session says resumed %q, want %d", p.name, sig, f["resumed"], round+1)
			}
			if f["client_ip"] != "127.0.0.1" {
				t.Errorf("%s: client_ip %q, want 127.0.0.1", p.name, f["client_ip"])
			}
		}
	}
	// The graceful stop went through the goodbye, not a lost link.
	if sys.gw.count("gateway: backend gone; holding sessions") != 2 {
		t.Errorf("gateway saw %d backend departures, want 2", sys.gw.count("gateway: backend gone; holding sessions"))
	}
	if !sys.gw.logged("gateway: backend gone; holding sessions", "reason", "backend said goodbye") {
		t.Error("the SIGTERMed backend did not say goodbye to the gateway")
	}
	if !sys.gw.logged("gateway: backend gone; holding sessions", "reason", "backend link lost") {
		t.Error("the SIGKILLed backend's end was not seen as a lost link")
	}

	// Players still talk to each other on the third backend, and quit ends
	// the session: the gateway closes the socket.
	players[0].send("say hello again")
	for _, p := range players {
		p.expect("Ada says: hello again")
	}
	players[1].send("quit")
	players[1].expect("Goodbye, Bob.")
	players[1].expectClosed()
	players[0].expect("Bob has left.")
}
