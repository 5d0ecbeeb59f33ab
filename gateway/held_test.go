package gateway_test

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"holdfast/backend"
	"holdfast/gateway"
)

// answering greets a new player, then answers each line after delay; a
// line "ignore" it takes without a word, a line "later" it answers from
// another goroutine, 20 ms after it has gone back to read, and at a line
// "stall" it stops reading until stall is closed (telling took first, if
// not nil).
func answering(delay time.Duration, stall <-chan struct{}, took chan<- string) func(*backend.Session) {
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
			case l == "later":
				time.AfterFunc(20*time.Millisecond, func() { io.WriteString(s, "echo: later\n") })
				continue
			case l == "stall":
				if took != nil {
					took <- l
				}
				<-stall
				continue
			}
			time.Sleep(delay) // the game taking its time over the answer
			io.WriteString(s, "echo: "+l+"\n")
		}
	}
}

// firstRead reads once, on a goroutine of its own, reading already when
// it returns, and sends what came in that read: a write's worth, if the
// player reads it as it comes.
func (p *player) firstRead() <-chan string {
	got := make(chan string, 1)
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	go func() {
		buf := make([]byte, 4096)
		n, err := p.r.Read(buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	return got
}

// TestBackNoticeWithAnswer: a player who typed while the game was away
// gets the notice that the game is back and the game's answer in one
// write, whether the game answers before it reads again (50 ms after the
// resume) or after (from a goroutine of its own); one whose line the game
// takes without a word gets the notice alone once the answer's wait after
// that is over; one whose line the game does not take gets it after the
// whole wait; one who typed nothing gets it at once.
func TestBackNoticeWithAnswer(t *testing.T) {
	const wait, answerWait = 3 * time.Second, time.Second
	gateway.SetBackNoticeWait(t, wait)
	gateway.SetBackAnswerWait(t, answerWait)
	stall := make(chan struct{})
	defer close(stall)
	e := newEnv(t, nil)
	first := e.backend(answering(50*time.Millisecond, stall, nil))
	typist, later, ignored, stalled, quiet := e.dial(), e.dial(), e.dial(), e.dial(), e.dial()
	players := []*player{typist, later, ignored, stalled, quiet}
	for _, p := range players {
		p.expect("hello")
	}
	first.Close()
	for _, p := range players {
		p.expect("The game is restarting")
	}
	typist.send("hi\r\n")
	later.send("later\r\n")
	ignored.send("ignore\r\n")
	stalled.send("stall\r\n")
	typistGot, laterGot := typist.firstRead(), later.firstRead()
	start := time.Now()
	e.backend(answering(50*time.Millisecond, stall, nil))

	quiet.expect("The game is back")
	if waited := time.Since(start); waited >= wait {
		t.Errorf("the quiet player was told after %v, the wait for an answer", waited)
	}

	for _, c := range []struct {
		got    <-chan string
		answer string
	}{{typistGot, "echo: hi"}, {laterGot, "echo: later"}} {
		got := <-c.got
		if !strings.Contains(got, "The game is back") || !strings.Contains(got, c.answer) {
			t.Fatalf("first read after the resume: %q, want the notice and %q together", got, c.answer)
		}
		if strings.Index(got, "The game is back") > strings.Index(got, c.answer) {
			t.Fatalf("the answer came before the notice: %q", got)
		}
	}

	ignored.expect("The game is back")
	if waited := time.Since(start); waited >= wait {
		t.Errorf("the notice to a player whose line the game took came after %v, the wait for a game that does not read", waited)
	}

	stalled.expect("The game is back")
	if waited := time.Since(start); waited < wait {
		t.Errorf("the notice to a player whose line the game has not taken came after %v, before the wait", waited)
	}
}

// TestBackNoticeNotWhileAway: a backend that goes before it has taken the
// line of a player who typed while the game was away has not brought the
// game back: the player is not told it is back until the next backend is.
func TestBackNoticeNotWhileAway(t *testing.T) {
	// Long against the second backend's close, which must come first.
	const wait = time.Second
	gateway.SetBackNoticeWait(t, wait)
	stall := make(chan struct{})
	defer close(stall)
	took := make(chan string, 1)
	e := newEnv(t, nil)
	first := e.backend(answering(0, stall, nil))
	p := e.dial()
	p.expect("hello")
	first.Close()
	p.expect("The game is restarting")
	p.send("stall\r\n")
	second := e.backend(answering(0, stall, took))
	select {
	case <-took:
	case <-time.After(waitFor):
		t.Fatal("the second backend never got the line")
	}
	second.Close()
	// Nothing comes while no backend is up, the notice's wait and more.
	p.conn.SetReadDeadline(time.Now().Add(2 * wait))
	if l, err := p.r.ReadString('\n'); err == nil || !os.IsTimeout(err) {
		t.Fatalf("with no backend up the player read %q (%v)", l, err)
	}
	e.backend(func(s *backend.Session) {
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			io.WriteString(s, "echo: "+l+"\n")
		}
	})
	p.expect("The game is back")
	p.expect("echo: stall")
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
