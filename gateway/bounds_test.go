package gateway_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"holdfast/backend"
	"holdfast/gateway"
	"holdfast/gateway/telnet"
)

// TestSessionBounds: what one player can make the gateway hold for its
// session stays within the bounds the README's table gives, however much
// the player sends.
func TestSessionBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"GMCP hello kept for each new backend", boundHello},
		{"terminal type and NEW-ENVIRON values", boundFacts},
		{"held input", boundHeldInput},
		{"queued protocol output", boundProtocolOutput},
	} {
		t.Run(tc.name, tc.run)
	}
}

// gmcp is a GMCP message as the client sends it.
func gmcp(msg string) string {
	return string(telnet.AppendSubneg(nil, telnet.OptGMCP, []byte(msg)))
}

// boundHello: a client that sends many large Core.Supports messages has
// at most MaxHello of them, and MaxHelloBytes in all, kept for the next
// backend; the backend attached when they come gets them all.
func boundHello(t *testing.T) {
	e := newEnv(t, nil)
	type seen struct {
		hello, bytes int
		line         string
	}
	got := make(chan seen, 4)
	handle := func(s *backend.Session) {
		var n seen
		s.OnGMCP(func(pkg string, data []byte) {
			if strings.HasPrefix(pkg, "Core.") {
				n.hello++
				n.bytes += len(pkg) + 1 + len(data)
			}
		})
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			n.line = l
			got <- n
		}
	}
	first := e.backend(handle)
	p := e.dial()
	p.send("\xff\xfd\xc9zero\r\n") // DO GMCP
	if a := <-got; a.line != "zero" {
		t.Fatalf("the backend read %q", a.line)
	}
	const sent = 20
	msg := "Core.Supports.Add [\"" + strings.Repeat("x", 1000) + " 1\"]"
	burst := gmcp(`Core.Hello {"client":"test","version":"1"}`)
	for range sent {
		burst += gmcp(msg)
	}
	p.send(burst + "one\r\n")
	a := <-got
	if a.hello != sent+1 {
		t.Fatalf("the backend attached then had %d handshake messages, want all %d", a.hello, sent+1)
	}
	first.Close()
	p.expect("The game is restarting")
	e.backend(handle)
	p.expect("The game is back")
	p.send("two\r\n")
	// Close may have come before the first backend's acknowledgement of
	// "one" went out: then "one" is replayed first, as the guarantee
	// allows, and "two" follows.
	b := <-got
	if b.line == "one" {
		b = <-got
	}
	if b.line != "two" {
		t.Fatalf("the next backend read %q", b.line)
	}
	t.Logf("kept for the next backend: %d messages, %d bytes (of %d sent)", b.hello, b.bytes, sent+1)
	if b.hello == 0 || b.hello > gateway.MaxHello || b.bytes > gateway.MaxHelloBytes {
		t.Errorf("the next backend had %d handshake messages, %d bytes; want 1 to %d, at most %d bytes",
			b.hello, b.bytes, gateway.MaxHello, gateway.MaxHelloBytes)
	}
}

// boundFacts: a terminal type and NEW-ENVIRON values as long as a
// subnegotiation may be reach the backend cut to their bounds.
func boundFacts(t *testing.T) {
	e := newEnv(t, nil)
	facts := make(chan backend.Facts, 1)
	e.backend(func(s *backend.Session) {
		facts <- s.Facts()
		s.ReadLine()
	})
	p := e.dial()
	p.fillFacts()
	var f backend.Facts
	select {
	case f = <-facts:
	case <-time.After(waitFor):
		t.Fatal("the session did not open")
	}
	for _, c := range []struct {
		name  string
		value string
		max   int
	}{
		{"terminal", f.Terminal, telnet.MaxTerminal},
		{"client name", f.ClientName, telnet.MaxEnvValue},
		{"client version", f.ClientVersion, telnet.MaxEnvValue},
		{"reported address", f.ReportedIP, telnet.MaxEnvValue},
	} {
		if len(c.value) == 0 || len(c.value) > c.max {
			t.Errorf("%s of %d bytes, want 1 to %d", c.name, len(c.value), c.max)
		}
	}
}

// boundHeldInput: with no backend to take it, a player's input is held
// up to MaxHeldInput, and then the socket is not read.
func boundHeldInput(t *testing.T) {
	const max = 4 << 10
	e := newEnv(t, &gateway.Server{MaxHeldInput: max})
	p := e.dial()
	p.expect("The game is not running")
	p.fillUntilBlocked()
	held := e.gw.Sessions()[0].HeldInput
	t.Logf("held %d bytes", held)
	if held == 0 || held > max {
		t.Errorf("%d bytes held, want 1 to %d", held, max)
	}
}

// boundProtocolOutput: a client that keeps asking (AYT) and reads none of
// the answers is disconnected once they pass twice the output queue,
// long before its writes time out.
func boundProtocolOutput(t *testing.T) {
	e := newEnv(t, &gateway.Server{OutputQueue: 4 << 10, WriteTimeout: time.Hour, SlowPlayerTimeout: time.Hour})
	d := net.Dialer{}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10) // the answers pile up at the gateway, not here
	deadline := time.Now().Add(waitFor)
	for e.gw.SessionCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no session")
		}
		time.Sleep(5 * time.Millisecond) // polling the session count: there is no event to wait on
	}
	ayt := strings.Repeat("\xff\xf6", 4<<10)
	sent := 0
	for e.gw.SessionCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still connected after %d bytes of AYT with none of the answers read", sent)
		}
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := io.WriteString(c, ayt)
		sent += n
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			break // the gateway closed the connection
		}
	}
	t.Logf("disconnected after %d bytes of AYT", sent)
	deadline = time.Now().Add(waitFor)
	for e.gw.SessionCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the session outlived its connection (%d bytes of AYT sent)", sent)
		}
		time.Sleep(5 * time.Millisecond) // polling the session count: there is no event to wait on
	}
}
