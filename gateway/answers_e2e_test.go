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
	// Remembered as late by what it took beyond its round trip, which a
	// loaded machine may make a few milliseconds.
	eventually(t, "the late answer remembered", func() bool { return e.gw.SlowestAnswer() >= late/2 })
	slowest := e.gw.SlowestAnswer()

	t0 := time.Now()
	e.dial() // says nothing
	if waited := (<-opened).Sub(t0); waited < 2*slowest {
		t.Errorf("a silent client was given %v after a client answered %v late", waited, slowest)
	}
}

// lateClient is a telnet client that says nothing until the test has it
// answer the offers: it refuses every option but TTYPE, whose cycle it
// runs an answer at a time.
type lateClient struct {
	*player
	seen []byte
}

const (
	iac, will, wont, dont, sb, se = "\xff", "\xfb", "\xfc", "\xfe", "\xfa", "\xf0"
	ttypeSend                     = iac + sb + "\x18\x01" + iac + se
)

// await reads until want has come, and forgets what came up to its end.
func (c *lateClient) await(want string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(waitFor))
	for !strings.Contains(string(c.seen), want) {
		b := make([]byte, 256)
		n, err := c.conn.Read(b)
		if err != nil {
			c.t.Fatalf("waiting for %q: %v (got %q)", want, err, c.seen)
		}
		c.seen = append(c.seen, b[:n]...)
	}
	c.seen = c.seen[strings.Index(string(c.seen), want)+len(want):]
}

// answer agrees to TTYPE, refuses the rest, and waits for the first SEND.
func (c *lateClient) answer(gmcp bool) {
	c.t.Helper()
	refuse := iac + wont + "\x1f" + iac + wont + "\x27" // NAWS, NEW-ENVIRON
	for _, opt := range []string{"\x19", "\x2a", "\x46", "\x56"} {
		refuse += iac + dont + opt // EOR, CHARSET, MSSP, MCCP2
	}
	if gmcp {
		refuse += iac + "\xfd\xc9" // DO GMCP
	} else {
		refuse += iac + dont + "\xc9"
	}
	c.send(iac + will + "\x18" + refuse)
	c.await(ttypeSend)
}

// is sends a TTYPE IS.
func (c *lateClient) is(v string) { c.send(iac + sb + "\x18\x00" + v + iac + se) }

// recording is a game that tells heard what it learns, in order.
func recording(heard chan<- string) func(*backend.Session) {
	return func(s *backend.Session) {
		f := s.Facts()
		heard <- fmt.Sprintf("open %s %s %d", f.Terminal, f.ClientName, f.MTTS)
		s.OnFacts(func(f backend.Facts) { heard <- fmt.Sprintf("facts %s %s %d", f.Terminal, f.ClientName, f.MTTS) })
		s.OnGMCP(func(pkg string, _ []byte) { heard <- "gmcp " + pkg })
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			heard <- "line " + l
		}
	}
}

// hear returns the next n things the game heard.
func hear(t *testing.T, heard <-chan string, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		select {
		case h := <-heard:
			got = append(got, h)
		case <-time.After(waitFor):
			t.Fatalf("the game heard only %q", got)
		}
	}
	return got
}

// TestLateAnswersHeld: a client that answers the offers after its session
// opened runs its terminal type cycle, a round trip for each answer, and
// types a line in the middle of it; the game hears of the cycle once,
// when it is over, not of the client's name as its terminal after the
// first answer, and reads the line after that: also with the game linked
// in the middle of the cycle, and with a GMCP message after the line.
// (Each case allows for a machine too slow to run the cycle within the
// gateway's wait, which ends the hold.)
func TestLateAnswersHeld(t *testing.T) {
	for _, tc := range []struct {
		name       string
		linkedLate bool // the game links after the first answer
		gmcp       bool // a GMCP message follows the line
		want       []string
	}{
		{"linked", false, false, []string{"open   0", "facts XTERM-256COLOR TESTCLIENT 15", "line look"}},
		{"linked in the middle", true, false, []string{"open   0", "facts XTERM-256COLOR TESTCLIENT 15", "line look"}},
		// The message may not overtake the line: the hold ends for it.
		{"a GMCP message after the line", false, true, []string{"open   0", "facts TESTCLIENT  0", "line look", "gmcp Core.Ping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			heard := make(chan string, 10)
			if !tc.linkedLate {
				e.backend(recording(heard))
				e.waitLog("gateway: backend linked")
			}
			c := &lateClient{player: e.dial()}
			c.await(iac + will) // the offers
			start := time.Now()
			if tc.linkedLate {
				c.await("The game is not running") // it said nothing for a few round trips
			} else if got := hear(t, heard, 1); got[0] != "open   0" {
				t.Fatalf("the session opened as %q before the client answered", got[0])
			}
			c.answer(tc.gmcp)
			c.is("TESTCLIENT")
			c.send("look\r\n") // a trigger, or a player quick at the keys
			// In a read of its own: what one read brings goes in the
			// order the engine hands it out.
			eventually(t, "the line held", func() bool { return e.gw.HeldInput() > 0 })
			var got []string
			if tc.gmcp {
				c.send(iac + sb + "\xc9Core.Ping" + iac + se)
				// The hold ends for it: heard before the next answer, which
				// would otherwise come in the same read.
				got = append([]string{"open   0"}, hear(t, heard, 3)...)
			}
			if tc.linkedLate {
				e.backend(recording(heard))
				got = hear(t, heard, 1) // the session attaches, in the middle of the cycle
			} else if !tc.gmcp {
				got = []string{"open   0"} // heard above
			}
			for _, v := range []string{"XTERM-256COLOR", "MTTS 15"} {
				c.await(ttypeSend)
				c.is(v)
			}
			answered := time.Since(start)
			got = append(got, hear(t, heard, len(tc.want)-len(got))...)
			if answered > 150*time.Millisecond {
				// Near the gateway's whole wait, which began before the
				// client had the offers: it may have ended the hold.
				t.Logf("the machine took %v for the cycle; the game heard %q", answered, got)
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("the game heard %q, want %q", got, tc.want)
			}
		})
	}
}
