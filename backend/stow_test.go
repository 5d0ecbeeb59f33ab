package backend

import (
	"errors"
	"io"
	"slices"
	"testing"

	"holdfast/link"
)

// stowAnswer sends a Stow naming ids and returns the Stowed that answers
// it, skipping the Wakes and other frames that come before it.
func stowAnswer(t *testing.T, g *fakeGateway, ids ...string) []link.Parked {
	t.Helper()
	link.WriteFrame(g.ctrl, link.FrameStow, link.AppendMove(nil, ids))
	for {
		typ, p := g.control()
		if typ == link.FrameHeldFrames {
			t.Fatalf("HeldFrames %x before the Stowed", p)
		}
		if typ == link.FrameStowed {
			b, err := link.ParseBroadcast(p)
			if err != nil || len(b.Text) != 0 {
				t.Fatalf("Stowed %+v %v", b, err)
			}
			return b.To
		}
	}
}

// parkStream has the backend park the stream of id (Park), reads its
// Parked, and waits until the backend's writer has let go of the session
// after it, as a gateway's Stow a sweep later would find it.
func parkStream(t *testing.T, l *Listener, g *fakeGateway, id string, fr *link.Reader) {
	t.Helper()
	link.WriteFrame(g.ctrl, link.FramePark, link.AppendMove(nil, []string{id}))
	if typ, _ := frame(t, fr); typ != link.FrameParked {
		t.Fatalf("answer to Park: %v", typ)
	}
	eventually(t, id+" is parked after its Parked", func() bool {
		gl, _, _ := l.lookup(id).parkedOn()
		return gl != nil
	})
}

// TestStow: a Stow is answered in one Stowed naming every session of it:
// the one whose stream is parked with nothing written since, with its
// Parked number, and it is held from then on: its stream ends at that
// Parked, input written to it before the gateway closed it is read, and
// what the application writes (the answer, its acknowledgement) comes in
// HeldFrames after the Stowed; a broadcast reaches it held (park 0); a
// Want wakes it and a stream opened then carries it on, from the Open's
// offset, without a new session. A session written to since its Parked,
// one whose stream is read, and an unknown one are named with park 0 and
// stay as they were.
func TestStow(t *testing.T) {
	l, g := heldGateway(t)
	stIdle, idle := g.open(l, link.Open{ID: "idle"})
	stWritten, written := g.open(l, link.Open{ID: "written"})
	g.open(l, link.Open{ID: "read"})
	frIdle, frWritten := link.Reader{R: stIdle}, link.Reader{R: stWritten}
	parkStream(t, l, g, "idle", &frIdle)
	parkStream(t, l, g, "written", &frWritten)
	io.WriteString(written, "news\n") // wakes it

	got := stowAnswer(t, g, "idle", "written", "read", "nobody")
	if w := []link.Parked{{ID: "idle", Park: 1}, {ID: "written"}, {ID: "read"}, {ID: "nobody"}}; !slices.Equal(got, w) {
		t.Fatalf("Stowed %+v, want %+v", got, w)
	}
	if typ, p := frame(t, &frWritten); typ != link.FrameOutput || string(p) != "news\n" {
		t.Fatalf("the stream written to: %v %q, want its output", typ, p)
	}
	if !idle.isAway() || written.isAway() {
		t.Fatal("the stowed session is not away, or the other is")
	}

	// Typed before the gateway read the Stowed: read, and answered held.
	in := lines(idle)
	link.WriteFrame(stIdle, link.FrameInput, []byte("look\n"))
	stIdle.Close()
	if _, _, err := frIdle.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("the stowed stream after its Parked: %v, want its end", err)
	}
	want(t, in, "look")
	io.WriteString(idle, "You see a room.\n")
	var out string
	var ack uint64
	for out == "" || ack == 0 {
		o, a := outputAndAck(t, heldFrames(t, g, "idle"))
		out, ack = out+o, max(ack, a)
	}
	if out != "You see a room.\n" || ack != 5 {
		t.Fatalf("held: output %q, ack %d; want the answer and 5", out, ack)
	}

	if err := l.Broadcast([]*Session{idle}, []byte("shout\n")); err != nil {
		t.Fatal(err)
	}
	for {
		typ, p := g.control()
		if typ == link.FrameWake {
			t.Fatalf("Wake %q for a broadcast line", p)
		}
		if typ == link.FrameBroadcast {
			b, _ := link.ParseBroadcast(p)
			if !slices.Equal(b.To, []link.Parked{{ID: "idle"}}) || string(b.Text) != "shout\n" {
				t.Fatalf("Broadcast %+v, want shout to idle held", b)
			}
			break
		}
	}

	link.WriteFrame(g.ctrl, link.FrameWant, link.AppendMove(nil, []string{"idle"}))
	for {
		typ, p := g.control()
		if ids, _ := link.ParseMove(p); typ == link.FrameWake && slices.Equal(ids, []string{"idle"}) {
			break
		}
	}
	st, err := g.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "idle", Offset: 0}).Append(nil))
	link.WriteFrame(st, link.FrameInput, []byte("look\nsmile\n")) // from the offset: "look" again
	want(t, in, "smile")
	io.WriteString(idle, "You smile.\n")
	if out := readUntilOutput(t, &link.Reader{R: st}); out != "You smile.\n" {
		t.Fatalf("on the new stream: %q", out)
	}
	noAccept(t, l)

	// The read stream: still read, and not held.
	if l.lookup("read").isAway() {
		t.Fatal("a session whose stream is read was stowed")
	}
}

// readUntilOutput returns the payload of the next Output on fr.
func readUntilOutput(t *testing.T, fr *link.Reader) string {
	t.Helper()
	for {
		if typ, p := frame(t, fr); typ == link.FrameOutput {
			return string(p)
		}
	}
}

// TestStowMoved: a Move of a stowed session is answered in MovedParked,
// park 0, and it is on the orphan clock again; a Stow from a gateway
// that does not take HeldFrames is refused.
func TestStowMoved(t *testing.T) {
	l, g := heldGateway(t)
	st, s := g.open(l, link.Open{ID: "m"})
	fr := link.Reader{R: st}
	parkStream(t, l, g, "m", &fr)
	if got := stowAnswer(t, g, "m"); !slices.Equal(got, []link.Parked{{ID: "m", Park: 1}}) {
		t.Fatalf("Stowed %+v", got)
	}
	s.mu.Lock()
	clock := s.expiry != nil && s.expiry.Stop()
	s.mu.Unlock()
	if clock {
		t.Fatal("the stowed session's orphan clock runs")
	}
	link.WriteFrame(g.ctrl, link.FrameMove, link.AppendMove(nil, []string{"m"}))
	for {
		typ, p := g.control()
		if typ == link.FrameMovedParked {
			if b, _ := link.ParseBroadcast(p); !slices.Equal(b.To, []link.Parked{{ID: "m"}}) {
				t.Fatalf("MovedParked %+v, want m at park 0", b)
			}
			break
		}
	}
	if clockStopped(s) {
		t.Fatal("the stowed session moved away is not on the orphan clock")
	}

	l2, g2 := setup(t) // says nothing of HeldFrames
	st2, _ := g2.open(l2, link.Open{ID: "o"})
	fr2 := link.Reader{R: st2}
	parkStream(t, l2, g2, "o", &fr2)
	if got := stowAnswer(t, g2, "o"); !slices.Equal(got, []link.Parked{{ID: "o"}}) {
		t.Fatalf("Stowed %+v from a gateway without HeldFrames, want refused", got)
	}
}

// TestStowHangup: a player who left as the session was stowed (the
// Hangup on its stream read after the Stow) has left the game: the
// application reads io.EOF, and the session is gone once it is closed,
// without a Drop.
func TestStowHangup(t *testing.T) {
	l, g := heldGateway(t)
	st, s := g.open(l, link.Open{ID: "gone"})
	fr := link.Reader{R: st}
	parkStream(t, l, g, "gone", &fr)
	if got := stowAnswer(t, g, "gone"); !slices.Equal(got, []link.Parked{{ID: "gone", Park: 1}}) {
		t.Fatalf("Stowed %+v", got)
	}
	in := lines(s)
	link.WriteFrame(st, link.FrameHangup, nil)
	st.Close()
	want(t, in, "error: EOF")
	s.Close()
	if l.lookup("gone") != nil {
		t.Fatal("the session whose player left is still tracked after Close")
	}
}

// TestStowedDetachedAcksNothing: a stowed session whose application took
// a line from the old stream, and then ends after the backend was told to
// shut down, acknowledges nothing: its answer could not go out (a
// detached session's output is refused), so the line must reach the next
// backend.
func TestStowedDetachedAcksNothing(t *testing.T) {
	l, g := heldGateway(t)
	st, s := g.open(l, link.Open{ID: "late"})
	fr := link.Reader{R: st}
	parkStream(t, l, g, "late", &fr)
	if got := stowAnswer(t, g, "late"); len(got) != 1 || got[0].Park == 0 {
		t.Fatalf("Stowed %+v", got)
	}
	link.WriteFrame(st, link.FrameInput, []byte("one\n")) // before the gateway read the Stowed
	readLine(t, s, "one")
	done := make(chan error, 1)
	go func() { done <- l.Shutdown(t.Context()) }()
	eventually(t, "Shutdown detaches the session", s.isDetached)
	if _, err := io.WriteString(s, "answer\n"); err == nil {
		t.Fatal("a detached session's answer was taken")
	}
	s.Close()
	s.wmu.Lock()
	acked := s.acked
	s.wmu.Unlock()
	if acked != 0 {
		t.Fatalf("acknowledged up to %d: the line whose answer was refused would not reach the next backend", acked)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
