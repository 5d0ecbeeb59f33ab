package test

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reiver/go-telnet"
)

// TestGoTelnetHandlers runs games written as github.com/reiver/go-telnet
// handlers behind holdfast (examples/gotelnet: go-telnet's own EchoHandler,
// and a handler that answers lines) and types across a SIGKILL of that
// backend: every line is answered once, in order, on a connection that
// never drops, including the line typed while no game ran.
func TestGoTelnetHandlers(t *testing.T) {
	for _, tc := range []struct {
		name, handler string
		sessions      bool // the handler is given the session itself
		answer        func(string) string
	}{
		{"echo", "echo", false, func(l string) string { return l }},
		{"lines", "lines", false, func(l string) string { return "you said: " + l }},
		{"lines with sessions", "lines", true, func(l string) string { return "you said: " + l }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := startSystem(t)
			game := func() *proc {
				n := sys.gw.count("gateway: backend linked")
				args := []string{"-handler", tc.handler, "-cookie-file", sys.cookie}
				if tc.sessions {
					args = append(args, "-sessions")
				}
				p := start(t, "gotelnet", sys.env(), args...)
				sys.gw.waitLog("gateway: backend linked", n+1)
				return p
			}
			be := game()
			p := dial(t, sys.telnet, "player")
			if tc.handler == "lines" {
				p.expect("Type a line and it comes back.")
			}
			next := 0
			typeLine := func() {
				t.Helper()
				next++
				p.send(fmt.Sprintf("line %d of the %s game", next, tc.handler))
			}
			answered := func() {
				t.Helper()
				want := tc.answer(fmt.Sprintf("line %d of the %s game", next, tc.handler))
				got := p.until(func(l string) bool { return strings.Contains(l, " of the ") })
				if last := got[len(got)-1]; last != want {
					t.Fatalf("answer %q, want %q (lines %q)", last, want, got)
				}
			}
			for range 3 {
				typeLine()
				answered()
			}
			for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
				be.kill(sig)
				be.wait()
				p.expect("[holdfast] The game is restarting.")
				typeLine() // held by the gateway
				be = game()
				switch {
				case tc.sessions:
					// The handler was given the session: it knows the
					// player, and how many lines came before the held one.
					p.expect(fmt.Sprintf("Welcome back; you have typed %d lines.", next-1))
				case tc.handler == "lines":
					// go-telnet's wrappers hide the session: the handler
					// meets the player as new.
					p.expect("Type a line and it comes back.")
				}
				answered()
				for range 2 {
					typeLine()
					answered()
				}
			}
		})
	}
}

// goTelnetPlayer is a player on go-telnet's client, which answers no
// telnet offer and whose reader returns only once its buffer is full: it
// reads a byte at a time.
type goTelnetPlayer struct {
	t    *testing.T
	conn *telnet.Conn
	text []byte
}

func (g *goTelnetPlayer) send(line string) {
	g.t.Helper()
	if _, err := g.conn.Write([]byte(line + "\r\n")); err != nil {
		g.t.Fatalf("go-telnet client: %v", err)
	}
}

func (g *goTelnetPlayer) expect(s string) {
	g.t.Helper()
	start := len(g.text)
	done := make(chan error, 1)
	go func() {
		var b [1]byte
		for !bytes.Contains(g.text[start:], []byte(s)) {
			if _, err := g.conn.Read(b[:]); err != nil {
				done <- err
				return
			}
			g.text = append(g.text, b[0])
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			g.t.Fatalf("go-telnet client waiting for %q: %v (read %q)", s, err, g.text[start:])
		}
	case <-time.After(waitFor):
		g.conn.Close()
		<-done
		g.t.Fatalf("go-telnet client waiting for %q: read %q", s, g.text[start:])
	}
}

// TestGoTelnetClient has go-telnet's client play the demo game beside a
// raw telnet player, across a backend SIGKILL.
func TestGoTelnetClient(t *testing.T) {
	sys := startSystem(t)
	be := sys.startBackend()
	conn, err := telnet.DialTo(sys.telnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	g := &goTelnetPlayer{t: t, conn: conn}
	g.expect("What is your name?")
	g.send("Reiver")
	g.expect("Welcome, Reiver.")

	ada := dial(t, sys.telnet, "Ada")
	ada.login()
	g.send("say hello from go-telnet")
	ada.expect("Reiver says: hello from go-telnet")
	ada.send("say hello back")
	g.expect("Ada says: hello back")

	be.kill(syscall.SIGKILL)
	be.wait()
	g.expect("[holdfast] The game is restarting.")
	g.send("echo typed while the game was away")
	sys.startBackend()
	g.expect("echo: typed while the game was away")
	// The two sessions resume side by side: Ada is in the game again
	// once she is answered, and only then does `who` have to list her.
	ada.send("echo Ada is back")
	ada.expect("echo: Ada is back")
	g.send("who")
	g.expect("online: Ada, Reiver")
	g.send("session")
	g.expect("resumed: 1")
}
