package gateway_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"holdfast/backend"
	"holdfast/gateway"
)

// answering greets a new player, then answers each line after delay; a
// line "ignore" it takes without a word.
func answering(delay time.Duration) func(*backend.Session) {
	return func(s *backend.Session) {
		if s.Resumed() == 0 {
			io.WriteString(s, "hello\n")
		}
		for {
			l, err := s.ReadLine()
			if err != nil || l == "ignore" {
				if err != nil {
					return
				}
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
// for it); one whose line the game does not answer gets the notice alone,
// after backNoticeWait; one who typed nothing gets it at once.
func TestBackNoticeWithAnswer(t *testing.T) {
	gateway.SetBackNoticeWait(t, 2*time.Second)
	e := newEnv(t, nil)
	first := e.backend(answering(50 * time.Millisecond))
	typist, ignored, quiet := e.dial(), e.dial(), e.dial()
	for _, p := range []*player{typist, ignored, quiet} {
		p.expect("hello")
	}
	first.Close()
	for _, p := range []*player{typist, ignored, quiet} {
		p.expect("The game is restarting")
	}
	typist.send("hi\r\n")
	ignored.send("ignore\r\n")
	start := time.Now()
	e.backend(answering(50 * time.Millisecond))

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
	if waited := time.Since(start); waited < 2*time.Second {
		t.Errorf("the notice to a player whose line went unanswered came after %v, before the wait", waited)
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
	select {
	case g := <-got:
		if g != "Char.Skills.Get" {
			t.Fatalf("the new backend heard %q, want the GMCP message", g)
		}
	case <-time.After(waitFor):
		t.Fatal("the GMCP message from a held player never reached the game")
	}
}
