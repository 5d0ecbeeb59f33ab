package gateway_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"holdfast/backend"
)

// TestSlowAnswerLengthensSilentWait: a client that answers the offers
// 50 ms after they came, after the game has seen it, makes the gateway
// wait for the next silent client at least twice that before the game
// sees it, where a silent client alone waits a few of its round trips.
func TestSlowAnswerLengthensSilentWait(t *testing.T) {
	const late = 50 * time.Millisecond
	e := newEnv(t, nil)
	opened := make(chan time.Time, 2)
	e.backend(func(s *backend.Session) {
		opened <- time.Now()
		s.ReadLine()
	})
	e.waitLog("gateway: backend linked")

	slow := e.dial()
	slow.conn.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := slow.r.ReadByte(); err != nil { // the offers have come
		t.Fatal(err)
	}
	time.Sleep(late)          // the client's machine is slow to answer
	slow.send("\xff\xfc\x18") // WONT TTYPE
	// The game has likely seen it before it answered, since it said
	// nothing for a few round trips; the answer counts all the same.
	<-opened
	eventually(t, "the late answer remembered", func() bool { return e.gw.SlowestAnswer() >= late-5*time.Millisecond })

	t0 := time.Now()
	e.dial() // says nothing
	if waited := (<-opened).Sub(t0); waited < 2*(late-5*time.Millisecond) {
		t.Errorf("a silent client was given %v after a client answered %v late", waited, late)
	}
}

// TestLateAnswersOneUpdate: a client that answers the offers after its
// session opened runs its terminal type cycle, a round trip for each
// answer, and types a line in the middle of it; the game hears of the
// cycle once, when it is over, not of the client's name as its terminal
// after the first answer, and reads the line after that.
func TestLateAnswersOneUpdate(t *testing.T) {
	e := newEnv(t, nil)
	heard := make(chan string, 10)
	opened := make(chan backend.Facts, 1)
	e.backend(func(s *backend.Session) {
		s.OnFacts(func(f backend.Facts) { heard <- fmt.Sprintf("facts %s %s %d", f.Terminal, f.ClientName, f.MTTS) })
		opened <- s.Facts()
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			heard <- "line " + l
		}
	})
	e.waitLog("gateway: backend linked")
	p := e.dial()
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	var seen []byte
	await := func(want string) {
		t.Helper()
		for !strings.Contains(string(seen), want) {
			b := make([]byte, 256)
			n, err := p.conn.Read(b)
			if err != nil {
				t.Fatalf("waiting for %q: %v (got %q)", want, err, seen)
			}
			seen = append(seen, b[:n]...)
		}
		seen = seen[strings.Index(string(seen), want)+len(want):]
	}
	const iac, will, wont, dont, sb, se = "\xff", "\xfb", "\xfc", "\xfe", "\xfa", "\xf0"
	ttypeSend, is := iac+sb+"\x18\x01"+iac+se, func(v string) string { return iac + sb + "\x18\x00" + v + iac + se }

	await(iac + will) // the offers
	start := time.Now()
	if f := <-opened; f.Terminal != "" {
		t.Fatalf("the session opened with terminal %q before the client answered", f.Terminal)
	}
	refuse := iac + wont + "\x1f" + iac + wont + "\x27" // NAWS, NEW-ENVIRON
	for _, opt := range []string{"\x19", "\x2a", "\x46", "\x56", "\xc9"} {
		refuse += iac + dont + opt // EOR, CHARSET, MSSP, MCCP2, GMCP
	}
	p.send(iac + will + "\x18" + refuse)
	for i, v := range []string{"TESTCLIENT", "XTERM-256COLOR", "MTTS 15"} {
		await(ttypeSend)
		p.send(is(v))
		if i == 0 {
			p.send("look\r\n") // a trigger, or a player quick at the keys
		}
	}
	answered := time.Since(start)
	var got []string
	for len(got) < 2 {
		select {
		case h := <-heard:
			got = append(got, h)
		case <-time.After(waitFor):
			t.Fatalf("the game heard only %q", got)
		}
	}
	if answered > 150*time.Millisecond {
		// Near the gateway's whole wait, which began before the client
		// had the offers: it may have sent what it had then.
		t.Logf("the machine took %v for the cycle; the game heard %q", answered, got)
		return
	}
	if want := []string{"facts XTERM-256COLOR TESTCLIENT 15", "line look"}; !slices.Equal(got, want) {
		t.Errorf("the game heard %q, want %q", got, want)
	}
}
