package gateway_test

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"holdfast/backend"
	"holdfast/gateway"
)

// answering greets a new player, then answers each line after delay; a
// line "ignore" it takes without a word, and at a line "stall" it stops
// reading until stall is closed.
func answering(delay time.Duration, stall <-chan struct{}) func(*backend.Session) {
	return func(s *backend.Session) {
		if s.Resumed() == 0 {
			io.WriteString(s, "hello\n")
		}
		for {
			l, err := s.ReadLine()
			switch {
			case err != nil:
				return
			case l == "ignore":
				continue
			case l == "stall":
				<-stall
				continue
			}
			time.Sleep(delay) // the game taking its time over the answer
			io.WriteString(s, "echo: "+l+"\n")
		}
	}
}

// TestBackNoticeWithAnswer: a player who typed while the game was away
// gets the notice that the game is back and the game's answer in one
// write (the answer comes 50 ms after the resume, and the notice waits
// for it); one whose line the game takes without a word gets the notice
// once the game has taken it; one whose line the game does not take gets
// it after backNoticeWait; one who typed nothing gets it at once.
func TestBackNoticeWithAnswer(t *testing.T) {
	gateway.SetBackNoticeWait(t, 2*time.Second)
	stall := make(chan struct{})
	defer close(stall)
	e := newEnv(t, nil)
	first := e.backend(answering(50*time.Millisecond, stall))
	typist, ignored, stalled, quiet := e.dial(), e.dial(), e.dial(), e.dial()
	players := []*player{typist, ignored, stalled, quiet}
	for _, p := range players {
		p.expect("hello")
	}
	first.Close()
	for _, p := range players {
		p.expect("The game is restarting")
	}
	typist.send("hi\r\n")
	ignored.send("ignore\r\n")
	stalled.send("stall\r\n")
	start := time.Now()
	e.backend(answering(50*time.Millisecond, stall))

	quiet.expect("The game is back")
	if waited := time.Since(start); waited >= 2*time.Second {
		t.Errorf("the quiet player was told after %v, the wait for an answer", waited)
	}

	typist.conn.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 4096)
	n, err := typist.r.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	if !strings.Contains(got, "The game is back") || !strings.Contains(got, "echo: hi") {
		t.Fatalf("first read after the resume: %q, want the notice and the answer together", got)
	}
	if strings.Index(got, "The game is back") > strings.Index(got, "echo: hi") {
		t.Fatalf("the answer came before the notice: %q", got)
	}

	ignored.expect("The game is back")
	if waited := time.Since(start); waited >= 2*time.Second {
		t.Errorf("the notice to a player whose line the game took came after %v, the wait for a game that does not read", waited)
	}

	stalled.expect("The game is back")
	if waited := time.Since(start); waited < 2*time.Second {
		t.Errorf("the notice to a player whose line the game has not taken came after %v, before the wait", waited)
	}
}

// TestHeldGMCP: a GMCP message from a player whose session is held (a
// backend restarted, and the player said nothing since) reaches the game:
// it waits for the stream the backend's Wake opens, and goes after the
// Open.
func TestHeldGMCP(t *testing.T) {
	e := newEnv(t, nil)
	got := make(chan string, 8)
	handle := func(s *backend.Session) {
		s.OnGMCP(func(pkg string, data []byte) { got <- pkg })
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			got <- "line " + l
		}
	}
	first := e.backend(handle)
	p := e.dial()
	p.send("\xff\xfd\xc9zero\r\n") // DO GMCP
	if g := <-got; g != "line zero" {
		t.Fatalf("the backend read %q", g)
	}
	first.Close()
	p.expect("The game is restarting")
	e.backend(handle)
	p.expect("The game is back") // opened held on the new backend
	p.send(gmcp(`Char.Skills.Get {"group":"all"}`))
	for {
		select {
		case g := <-got:
			if g == "line zero" {
				continue // not acknowledged before the crash: read again
			}
			if g != "Char.Skills.Get" {
				t.Fatalf("the new backend heard %q, want the GMCP message", g)
			}
			return
		case <-time.After(waitFor):
			t.Fatal("the GMCP message from a held player never reached the game")
		}
	}
}

// TestLargePasteWhileAway: with a held-input bound far above the link's
// frame (an operator's -max-held-input), a player who pasted more than an
// OpenHeld can carry while the game was away is opened on a stream, and
// the next backend reads the whole paste; a player who typed a line is
// opened beside them, and reads it too.
func TestLargePasteWhileAway(t *testing.T) {
	e := newEnv(t, &gateway.Server{MaxHeldInput: 1 << 20})
	got := make(chan string, 16)
	handle := func(s *backend.Session) {
		n := 0
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			if strings.HasPrefix(l, "x") {
				n += len(l) + 1
				continue
			}
			got <- fmt.Sprintf("%s after %d bytes", l, n)
			n = 0
		}
	}
	first := e.backend(handle)
	paster, typist := e.dial(), e.dial()
	paster.send("hello\r\n")
	typist.send("hello\r\n")
	for range 2 {
		<-got
	}
	first.Close()
	paster.expect("The game is restarting")
	typist.expect("The game is restarting")
	line := strings.Repeat("x", 99) + "\r\n"
	paster.send(strings.Repeat(line, 4000) + "done\r\n") // 400 KB: past the link's largest frame
	typist.send("short\r\n")
	deadline := time.Now().Add(waitFor)
	for e.gw.HeldInput() < 4000*100+5+6 {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway holds %d bytes of input", e.gw.HeldInput())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with the deadline above
	}
	e.backend(handle)
	want := map[string]bool{"done after 400000 bytes": true, "short after 0 bytes": true}
	for len(want) > 0 {
		select {
		case g := <-got:
			if g == "hello after 0 bytes" {
				continue // not acknowledged before the crash: read again
			}
			if !want[g] {
				t.Fatalf("the next backend read %q", g)
			}
			delete(want, g)
		case <-time.After(waitFor):
			t.Fatalf("the next backend never read %v", want)
		}
	}
	// Both were placed on the new link as it came, neither after a
	// failed send. (The log follows the placing, and may follow the
	// answers.)
	deadline = time.Now().Add(waitFor)
	for e.logs.FilterMessage("gateway: backend linked").Len() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not log the second link")
		}
		time.Sleep(5 * time.Millisecond) // polling the log, with the deadline above
	}
	if n := e.logs.FilterMessage("gateway: backend linked").All()[1].ContextMap()["sessions"]; n != int64(2) {
		t.Fatalf("the new link had %v sessions placed on it, want 2", n)
	}
}
