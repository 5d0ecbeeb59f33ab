package backend

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"holdfast/link"
)

// lines reads a session's lines into a channel until it fails, ending the
// channel with the error's text.
func lines(s *Session) <-chan string {
	c := make(chan string, 16)
	go func() {
		for {
			l, err := s.ReadLine()
			if err != nil {
				c <- "error: " + err.Error()
				close(c)
				return
			}
			c <- l
		}
	}()
	return c
}

func want(t *testing.T, c <-chan string, line string) {
	t.Helper()
	select {
	case got := <-c:
		if got != line {
			t.Fatalf("read %q, want %q", got, line)
		}
	case <-time.After(waitFor):
		t.Fatalf("no line; want %q", line)
	}
}

// readUntil reads frames from fr until one of type typ and returns the
// output seen before it.
func readUntil(t *testing.T, fr *link.Reader, typ link.FrameType) string {
	t.Helper()
	var out string
	for {
		got, p := frame(t, fr)
		if got == typ {
			return out
		}
		if got == link.FrameOutput {
			out += string(p)
		}
	}
}

func noAccept(t *testing.T, l *Listener) {
	t.Helper()
	select {
	case s := <-l.accept:
		t.Fatalf("a moved session was accepted as new: %s", s.ID())
	default:
	}
}

// TestMoveToAnotherGateway moves a session to another gateway's link as
// an upgrading gateway does: the application reads and writes on, output
// written during the move reaches the new link, input the new link
// repeats is not read twice, and no new session is accepted.
func TestMoveToAnotherGateway(t *testing.T) {
	l, g1 := setup(t)
	st1, s := g1.open(l, link.Open{ID: "m1", Resumed: 1, Offset: 10, State: []byte("ada")})
	in := lines(s)
	link.WriteFrame(st1, link.FrameInput, []byte("one\n"))
	want(t, in, "one")
	io.WriteString(s, "before\n")

	link.WriteFrame(g1.ctrl, link.FrameMove, link.AppendMove(nil, []string{"m1", "unknown"}))
	fr1 := link.Reader{R: st1}
	if out := readUntil(t, &fr1, link.FrameMoved); out != "before\n" {
		t.Fatalf("output before Moved: %q", out)
	}
	st1.Close()
	// Written while no stream has the session: kept for the next.
	io.WriteString(s, "during\n")
	s.SetState([]byte("ada moving"))

	g2 := linkGateway(t, l)
	st2, err := g2.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	// The new gateway repeats "one\n", which the old one never saw
	// acknowledged, and brings new facts.
	o := link.Open{ID: "m1", Resumed: 1, Offset: 10, Facts: link.Facts{Terminal: "MOVED"}, State: []byte("ada moving")}
	link.WriteFrame(st2, link.FrameOpen, o.Append(nil))
	link.WriteFrame(st2, link.FrameInput, []byte("one\ntwo\n"))
	want(t, in, "two")
	if s.Resumed() != 1 || string(s.State()) != "ada moving" || s.Facts().Terminal != "MOVED" {
		t.Errorf("after the move: resumed %d, state %q, facts %+v", s.Resumed(), s.State(), s.Facts())
	}
	io.WriteString(s, "after\n")
	fr2 := link.Reader{R: st2}
	// The acknowledgement of "two" goes once the reader (lines) is back to
	// read: with "after", or just after it.
	var out string
	var acked uint64
	for out != "during\nafter\n" || acked < 18 {
		typ, p := frame(t, &fr2)
		switch typ {
		case link.FrameOutput:
			out += string(p)
		case link.FrameAck:
			acked, _ = link.ParseAck(p)
		}
		if len(out) > len("during\nafter\n") {
			break
		}
	}
	if out != "during\nafter\n" {
		t.Fatalf("output on the new stream: %q", out)
	}
	if acked != 18 {
		t.Errorf("acknowledged up to %d on the new stream, want 18", acked)
	}
	noAccept(t, l)
	s.Close()
	if typ, _ := frame(t, &fr2); typ != link.FrameEnd {
		t.Fatalf("Close after the move sent %v, want End on the new stream", typ)
	}
}

// TestMoveLineInProgress: a line the application has taken and not yet
// answered when its session moves is acknowledged neither with Moved nor
// when the next gateway process opens the session, but with its answer:
// until then the answer waits on this backend, and a backend that dies
// first takes it along, so the next backend must get the line again. An
// answer written while the session was away goes on the new stream, with
// its acknowledgement once the application has read again.
func TestMoveLineInProgress(t *testing.T) {
	for _, tc := range []struct {
		name       string
		answerAway bool // the answer is written before the new stream opens
	}{
		{name: "answered after the adoption"},
		{name: "answered while away", answerAway: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corkFor(t, 0)
			l, g1 := setup(t)
			st1, s := g1.open(l, link.Open{ID: "p1"})
			link.WriteFrame(st1, link.FrameInput, []byte("one\ntwo\n"))
			readLine(t, s, "one")
			io.WriteString(s, "1\n")
			readLine(t, s, "two")
			link.WriteFrame(g1.ctrl, link.FrameMove, link.AppendMove(nil, []string{"p1"}))
			fr1 := link.Reader{R: st1}
			if got := frames(t, &fr1, 3); got != "O:1 A:4 M" {
				t.Fatalf("frames up to Moved %q, want the answered line's acknowledgement only", got)
			}
			st1.Close()
			if tc.answerAway {
				io.WriteString(s, "2\n")
				go s.ReadLine() // done with "two"
			}

			g2 := linkGateway(t, l)
			st2, err := g2.mux.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			o := link.Open{ID: "p1", Offset: 4}
			link.WriteFrame(st2, link.FrameOpen, o.Append(nil))
			link.WriteFrame(st2, link.FrameInput, []byte("two\n")) // not acknowledged: the new process repeats it
			if !tc.answerAway {
				// The answer is to go on the stream, not with the adoption.
				eventually(t, "the new stream takes the session back", func() bool { return !s.isAway() })
				io.WriteString(s, "2\n")
				go s.ReadLine() // done with "two"
			}
			fr2 := link.Reader{R: st2}
			if got := frames(t, &fr2, 2); got != "O:2 A:8" {
				t.Fatalf("frames on the new stream %q, want the answer with its acknowledgement", got)
			}
		})
	}
}

// TestLinkLostThenClaimed: a link that breaks leaves its sessions waiting;
// the gateway opens them again on a new link and they carry on.
func TestLinkLostThenClaimed(t *testing.T) {
	l, g1 := setup(t)
	st1, s := g1.open(l, link.Open{ID: "c1"})
	in := lines(s)
	link.WriteFrame(st1, link.FrameInput, []byte("one\n"))
	want(t, in, "one")
	g1.mux.Close()
	// Output written before the backend noticed the loss went with the
	// link; from then on it is kept.
	deadline := time.Now().Add(waitFor)
	for !s.isAway() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	io.WriteString(s, "while away\n")

	g2 := linkGateway(t, l)
	st2, err := g2.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	o := link.Open{ID: "c1", Resumed: 1}
	link.WriteFrame(st2, link.FrameOpen, o.Append(nil))
	link.WriteFrame(st2, link.FrameInput, []byte("one\ntwo\n"))
	want(t, in, "two")
	if s.Resumed() != 1 {
		t.Errorf("resumed %d, want 1", s.Resumed())
	}
	fr2 := link.Reader{R: st2}
	if typ, p := frame(t, &fr2); typ != link.FrameOutput || string(p) != "while away\n" {
		t.Fatalf("first frame on the new stream: %v %q", typ, p)
	}
	noAccept(t, l)
}

// TestUnclaimedSessionEnds: a session whose gateway is gone for good ends
// after OrphanTimeout as if the player had left, and Close releases it.
func TestUnclaimedSessionEnds(t *testing.T) {
	l, g := setupWith(t, Config{OrphanTimeout: 100 * time.Millisecond})
	_, s := g.open(l, link.Open{ID: "gone"})
	in := lines(s)
	start := time.Now()
	g.mux.Close()
	want(t, in, "error: EOF")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("ended after %v, before the timeout", d)
	}
	if _, err := io.WriteString(s, "to nobody\n"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write to an ended session: %v, want net.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if l.lookup("gone") != nil {
		t.Error("the ended session is still held")
	}
}

// TestClosedWhileAway: the application ends a session while it moves; the
// end reaches the gateway that claims it.
func TestClosedWhileAway(t *testing.T) {
	l, g1 := setup(t)
	st1, s := g1.open(l, link.Open{ID: "q"})
	link.WriteFrame(g1.ctrl, link.FrameMove, link.AppendMove(nil, []string{"q"}))
	fr1 := link.Reader{R: st1}
	readUntil(t, &fr1, link.FrameMoved)
	io.WriteString(s, "Goodbye.\n")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	g2 := linkGateway(t, l)
	st2, _ := g2.mux.OpenStream()
	o := link.Open{ID: "q"}
	link.WriteFrame(st2, link.FrameOpen, o.Append(nil))
	fr2 := link.Reader{R: st2}
	if out := readUntil(t, &fr2, link.FrameEnd); out != "Goodbye.\n" {
		t.Fatalf("output before End: %q", out)
	}
	deadline := time.Now().Add(waitFor)
	for l.lookup("q") != nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if l.lookup("q") != nil {
		t.Error("the closed session is still held")
	}
}

// TestDetachWhileAway: a backend that shuts down while a session moves
// releases it with ErrDetached.
func TestDetachWhileAway(t *testing.T) {
	l, g := setup(t)
	_, s := g.open(l, link.Open{ID: "d"})
	in := lines(s)
	g.mux.Close()
	go l.Close()
	select {
	case got := <-in:
		if got != "error: "+ErrDetached.Error() {
			t.Fatalf("read %q, want ErrDetached", got)
		}
	case <-time.After(waitFor):
		t.Fatal("read did not return")
	}
}

// TestReleaseKeepsLineInProgress: a session handed to the successor while
// the game works on a line acknowledges only what came before it, so that
// the successor gets that line; the game's late answer fails.
func TestReleaseKeepsLineInProgress(t *testing.T) {
	l, g := setup(t)
	st, s := g.open(l, link.Open{ID: "r", Offset: 0})
	link.WriteFrame(st, link.FrameInput, []byte("one\ntwo\n"))
	if line, err := s.ReadLine(); err != nil || line != "one" {
		t.Fatalf("ReadLine = %q, %v", line, err)
	}
	io.WriteString(s, "answer one\n")
	if line, err := s.ReadLine(); err != nil || line != "two" {
		t.Fatalf("ReadLine = %q, %v", line, err)
	}
	// The game is working on "two" when the gateway releases the session.
	link.WriteFrame(g.ctrl, link.FrameRelease, link.AppendMove(nil, []string{"r"}))
	fr := link.Reader{R: st}
	var acked uint64
	for {
		typ, p := frame(t, &fr)
		if typ == link.FrameAck {
			acked, _ = link.ParseAck(p)
		}
		if typ == link.FrameMoved {
			break
		}
	}
	if acked != 4 {
		t.Errorf("acknowledged up to %d before Moved, want 4: the second line was still being worked on", acked)
	}
	if _, err := io.WriteString(s, "answer two\n"); !errors.Is(err, ErrDetached) {
		t.Errorf("the game's answer after the release: %v, want ErrDetached", err)
	}
	if _, err := s.ReadLine(); !errors.Is(err, ErrDetached) {
		t.Errorf("reading after the release: %v, want ErrDetached", err)
	}
}
