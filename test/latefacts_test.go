package test

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"holdfast/gateway/telnet"
)

// TestFactsWhileBackendLinks has prompt MUD clients connect while the
// backend starts, so that the link comes up in the middle of their
// terminal type cycle, round after round. The game must see each new
// session only once the client has answered (as it does when the backend
// is already up): a session opened half-way greets the player as terminal
// HFTEST with MTTS 0, and a client that types ahead of its answers asks
// `session` before the rest arrives. Each client says something in telnet
// as soon as it connects (dialMUD), so it gets the whole wait.
func TestFactsWhileBackendLinks(t *testing.T) {
	sys := startSystem(t)
	const rounds, players = 8, 10
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range players {
			m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptGMCP, telnet.OptMCCP2)
			m.ttypes = []string{"HFTEST", "XTERM-256COLOR", "MTTS 271", "MTTS 271"}
			// Within the gateway's wait for answers, but long enough for
			// the backend to link meanwhile.
			m.slowTerminal = 150 * time.Millisecond
			name := "P" + itoa(round) + "x" + itoa(i)
			wg.Go(func() {
				defer m.conn.Close()
				if err := m.tryExpect("What is your name?"); err != nil {
					t.Error(err)
					return
				}
				m.write([]byte(name + "\r\n")) // the session command follows at once
				f, err := m.tryFacts()
				if err != nil {
					t.Error(err)
					return
				}
				if f["client"] != "HFTEST" || f["terminal"] != "XTERM-256COLOR" || f["mtts"] != "271" || f["width"] != "80" {
					t.Errorf("round %d, %s: the game says %v", round, name, f)
				}
			})
		}
		be := sys.startBackend()
		wg.Wait()
		be.kill(syscall.SIGKILL)
		be.wait()
		be.mu.Lock()
		for _, l := range be.lines {
			if l["msg"] == "talker: new player" && (l["terminal"] != "XTERM-256COLOR" || l["mtts"] != float64(271)) {
				t.Errorf("round %d: the game met a player as %v", round, l)
			}
		}
		be.mu.Unlock()
		if n := be.count("talker: new player"); n != players {
			t.Errorf("round %d: the game met %d players, want %d", round, n, players)
		}
	}
}

// TestLateFacts sends what a client may say after its session has opened:
// a CHARSET and a NEW-ENVIRON answer long after the offers, and window
// sizes while the backend restarts. Each must reach the game that holds
// the session, and every game after it.
func TestLateFacts(t *testing.T) {
	sys := startSystem(t)
	be := sys.startBackend()
	m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptCharset, telnet.OptNewEnviron)
	m.ttypes = []string{"HFTEST", "XTERM-256COLOR", "MTTS 271"}
	m.silent = map[byte]bool{telnet.OptCharset: true, telnet.OptNewEnviron: true} // answered below, late
	m.expect("What is your name?")
	m.line("Late")
	m.expect("Welcome, Late.")
	if f := m.facts(); f["charset"] != "" || f["client"] != "HFTEST" {
		t.Fatalf("before the late answers: %v", f)
	}
	m.send([]byte("\xff\xfa\x2a\x02UTF-8\xff\xf0"))                                                 // CHARSET ACCEPTED UTF-8
	m.send([]byte("\xff\xfa\x27\x00\x00CLIENT_VERSION\x012.5\x00IPADDRESS\x01203.0.113.9\xff\xf0")) // NEW-ENVIRON IS
	want := map[string]string{"charset": "UTF-8", "client": "HFTEST 2.5", "terminal": "XTERM-256COLOR", "mtts": "271"}
	check := func(when string, f map[string]string) {
		t.Helper()
		for k, v := range want {
			if f[k] != v {
				t.Errorf("%s: %s is %q, want %q (all: %v)", when, k, f[k], v, f)
			}
		}
	}
	check("after the late answers", m.facts())

	for i, how := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGKILL} {
		be.kill(how)
		be.wait()
		m.expect("[holdfast] The game is restarting.")
		m.naws(uint16(100+i), uint16(30+i)) // while no game runs
		n := sys.gw.count("gateway: backend linked")
		be = start(t, "backend", sys.env(), "-cookie-file", sys.cookie)
		m.naws(uint16(110+i), uint16(40+i)) // while the game starts and the session resumes
		sys.gw.waitLog("gateway: backend linked", n+1)
		m.expect("[holdfast] The game is back.")
		want["width"], want["height"], want["resumed"] = itoa(110+i), itoa(40+i), itoa(i+1)
		check("after restart "+itoa(i+1), m.facts())
	}
}
