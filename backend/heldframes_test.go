package backend

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"holdfast/link"
)

// heldGateway links a fake gateway that says it takes HeldFrames.
func heldGateway(t *testing.T) (*Listener, *fakeGateway) {
	t.Helper()
	l, g := setupWith(t, Config{OrphanTimeout: time.Hour})
	link.WriteFrame(g.ctrl, link.FrameFeatures, link.AppendFeatures(nil, link.FeatureMovedParked|link.FeatureHeldFrames))
	return l, g
}

// heldFrames reads control frames until a HeldFrames for id, and returns
// its frames; any Wake before it fails the test.
func heldFrames(t *testing.T, g *fakeGateway, id string) []byte {
	t.Helper()
	for {
		typ, p := g.control()
		switch typ {
		case link.FrameWake:
			// Another session's Wake may come first: a Wake is sent
			// after the frames it follows, not in order with frames
			// written on the control stream meanwhile.
			if ids, err := link.ParseMove(p); err != nil || slices.Contains(ids, id) {
				t.Fatalf("Wake %q (%v) before the held frames of %s", ids, err, id)
			}
		case link.FrameHeldFrames:
			got, frames, err := link.ParseHeldFrames(p)
			if err != nil {
				t.Fatal(err)
			}
			if got == id {
				return frames
			}
		}
	}
}

// outputAndAck returns the output in frames and the last Ack's offset.
func outputAndAck(t *testing.T, frames []byte) (string, uint64) {
	t.Helper()
	var out strings.Builder
	var ack uint64
	fr := link.Reader{R: bytes.NewReader(frames)}
	for {
		typ, _, err := fr.Next()
		if err == io.EOF {
			return out.String(), ack
		}
		p, err := fr.Payload()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case link.FrameOutput:
			out.Write(p)
		case link.FrameAck:
			ack, _ = link.ParseAck(p)
		}
	}
}

// TestHeldFrames: a session opened held with the input typed while the
// game was away reads that input, and its answer and the acknowledgement
// of the input reach a gateway that takes HeldFrames on the control
// stream, without a Wake; so do a prompt and state. Past heldBudget, the
// session asks for a stream (Wake) and what it writes waits for that
// stream, where it comes after everything sent held. A Want wakes a held
// session, and one for a session the backend does not hold is answered
// Unheld.
func TestHeldFrames(t *testing.T) {
	l, g := heldGateway(t)
	openHeld(g, link.HeldOpen{
		Open:  link.Open{ID: "h1", Resumed: 1, Offset: 10},
		After: link.AppendFrame(nil, link.FrameInput, []byte("look\n")),
	})
	s := accepted(t, l)
	in := lines(s)
	want(t, in, "look")
	io.WriteString(s, "You see a room.\n")
	// The acknowledgement goes once the reader (lines) is back to read:
	// with the answer, or in HeldFrames of its own just after.
	var out string
	var ack uint64
	for out == "" || ack < 15 {
		o, a := outputAndAck(t, heldFrames(t, g, "h1"))
		out, ack = out+o, max(ack, a)
	}
	if out != "You see a room.\n" || ack != 15 {
		t.Fatalf("held frames: output %q, ack %d; want the answer and 15", out, ack)
	}
	s.Prompt("> ")
	if err := s.SetState([]byte("st")); err != nil {
		t.Fatal(err)
	}
	var types []link.FrameType
	for len(types) < 3 {
		fr := link.Reader{R: bytes.NewReader(heldFrames(t, g, "h1"))}
		for {
			typ, _, err := fr.Next()
			if err != nil {
				break
			}
			types = append(types, typ)
		}
	}
	if !slices.Equal(types, []link.FrameType{link.FrameOutput, link.FramePrompt, link.FrameState}) {
		t.Fatalf("held frames %v, want Output, Prompt, State", types)
	}

	// Past the budget: a Wake, and the rest waits for the stream.
	big := strings.Repeat("x", heldBudget/2) + "\n"
	sent := ""
	for range 3 {
		io.WriteString(s, big)
	}
	for {
		typ, p := g.control()
		if typ == link.FrameWake {
			if ids, _ := link.ParseMove(p); !slices.Equal(ids, []string{"h1"}) {
				t.Fatalf("Wake %q", ids)
			}
			break
		}
		if typ == link.FrameHeldFrames {
			_, frames, _ := link.ParseHeldFrames(p)
			o, _ := outputAndAck(t, frames)
			sent += o
		}
	}
	if sent == "" || len(sent) > heldBudget {
		t.Fatalf("%d bytes sent held before the Wake; want some, at most %d", len(sent), heldBudget)
	}
	st, err := g.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "h1", Resumed: 1, Offset: 15}).Append(nil))
	fr := link.Reader{R: st}
	rest := ""
	for len(sent)+len(rest) < 3*len(big) {
		typ, p := frame(t, &fr)
		if typ == link.FrameOutput {
			rest += string(p)
		}
	}
	if sent+rest != big+big+big {
		t.Fatalf("the output held and on the stream, %d bytes, is not what was written in order", len(sent+rest))
	}

	// Want: a held session is woken; one not held is Unheld.
	moveAwayHeld := func(id string) *Session {
		st, s := g.open(l, link.Open{ID: id})
		link.WriteFrame(g.ctrl, link.FrameMove, link.AppendMove(nil, []string{id}))
		fr := link.Reader{R: st}
		readUntil(t, &fr, link.FrameMoved)
		st.Close()
		if unheld := hold(t, g, id); len(unheld) != 0 {
			t.Fatalf("Unheld %q", unheld)
		}
		return s
	}
	moveAwayHeld("h2")
	link.WriteFrame(g.ctrl, link.FrameWant, link.AppendMove(nil, []string{"h2", "nobody"}))
	var woke, unheld []string
	for woke == nil || unheld == nil {
		typ, p := g.control()
		ids, _ := link.ParseMove(p)
		switch typ {
		case link.FrameWake:
			woke = ids
		case link.FrameUnheld:
			unheld = ids
		}
	}
	if !slices.Equal(woke, []string{"h2"}) || !slices.Equal(unheld, []string{"nobody"}) {
		t.Fatalf("Want: Wake %q, Unheld %q; want h2 woken and nobody unheld", woke, unheld)
	}
}

// TestHeldMoveAnswered: a Move naming a held session is answered, for a
// gateway that takes HeldFrames, in MovedParked after the frames the
// session sent held, and the session is on the orphan clock again; what it
// writes then waits for its next stream.
func TestHeldMoveAnswered(t *testing.T) {
	l, g := heldGateway(t)
	openHeld(g, link.HeldOpen{Open: link.Open{ID: "m1", Resumed: 1}})
	s := accepted(t, l)
	io.WriteString(s, "before the move\n")
	link.WriteFrame(g.ctrl, link.FrameMove, link.AppendMove(nil, []string{"m1"}))
	out, _ := outputAndAck(t, heldFrames(t, g, "m1"))
	if out != "before the move\n" {
		t.Fatalf("held output %q", out)
	}
	typ, p := g.control()
	b, err := link.ParseBroadcast(p)
	if typ != link.FrameMovedParked || err != nil || len(b.To) != 1 || b.To[0] != (link.Parked{ID: "m1"}) {
		t.Fatalf("control %v %+v %v, want MovedParked of m1, park 0", typ, b, err)
	}
	if clockStopped(s) {
		t.Fatal("the moved session's orphan clock is stopped")
	}
	io.WriteString(s, "after the move\n")
	s.wmu.Lock()
	pending := string(s.pending)
	s.wmu.Unlock()
	if !strings.Contains(pending, "after the move") {
		t.Fatalf("output after the move not kept for the next stream: %q", pending)
	}
}

// TestHeldBroadcast: a line broadcast to sessions held by a gateway that
// takes HeldFrames goes in one Broadcast, each with Parked number 0, and
// wakes none of them; it counts against the held budget, past which the
// line goes to the session as a write, which wakes it.
func TestHeldBroadcast(t *testing.T) {
	l, g := heldGateway(t)
	openHeld(g, link.HeldOpen{Open: link.Open{ID: "b1", Resumed: 1}}, link.HeldOpen{Open: link.Open{ID: "b2", Resumed: 1}})
	s1, s2 := accepted(t, l), accepted(t, l)
	s2.wmu.Lock()
	s2.parks = 3 // as after a stream parked three times before it was held
	s2.wmu.Unlock()
	if err := l.Broadcast([]*Session{s1, s2}, []byte("hello all\n")); err != nil {
		t.Fatal(err)
	}
	typ, p := g.control()
	b, err := link.ParseBroadcast(p)
	if typ != link.FrameBroadcast || err != nil || string(b.Text) != "hello all\n" ||
		!slices.Equal(b.To, []link.Parked{{ID: "b1"}, {ID: "b2"}}) {
		t.Fatalf("control %v %+v %v, want a Broadcast to b1 and b2 at park 0", typ, b, err)
	}
	s1.wmu.Lock()
	s1.heldSent = heldBudget
	s1.wmu.Unlock()
	if err := l.Broadcast([]*Session{s1, s2}, []byte("again\n")); err != nil {
		t.Fatal(err)
	}
	var woke []string
	var to []link.Parked
	for woke == nil || to == nil {
		typ, p := g.control()
		switch typ {
		case link.FrameWake:
			woke, _ = link.ParseMove(p)
		case link.FrameBroadcast:
			b, _ := link.ParseBroadcast(p)
			to = b.To
		}
	}
	if !slices.Equal(woke, []string{"b1"}) || !slices.Equal(to, []link.Parked{{ID: "b2"}}) {
		t.Fatalf("past the budget: Wake %q, Broadcast to %+v; want b1 woken, b2 in the Broadcast", woke, to)
	}
}

// TestHeldReleaseAfterWant: a Release of a held session that a Want has
// woken is not answered in MovedParked, though nothing waits for its
// stream: the gateway is opening that stream for the Wake, and the
// session is released there, with Moved.
func TestHeldReleaseAfterWant(t *testing.T) {
	l, g := heldGateway(t)
	openHeld(g, link.HeldOpen{Open: link.Open{ID: "r1", Resumed: 1}}, link.HeldOpen{Open: link.Open{ID: "r2", Resumed: 1}})
	accepted(t, l)
	accepted(t, l)
	link.WriteFrame(g.ctrl, link.FrameWant, link.AppendMove(nil, []string{"r1"}))
	if ids := wakes(t, g); !slices.Equal(ids, []string{"r1"}) {
		t.Fatalf("Wake %q, want r1", ids)
	}
	link.WriteFrame(g.ctrl, link.FrameRelease, link.AppendMove(nil, []string{"r1", "r2"}))
	typ, p := g.control()
	b, err := link.ParseBroadcast(p)
	if typ != link.FrameMovedParked || err != nil || !slices.Equal(b.To, []link.Parked{{ID: "r2"}}) {
		t.Fatalf("control %v %+v %v, want MovedParked of r2 alone", typ, b, err)
	}
	st, err := g.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "r1", Resumed: 1}).Append(nil))
	fr := link.Reader{R: st}
	readUntil(t, &fr, link.FrameMoved)
}

// TestControlUnreadableEndsLink: a control frame past link.MaxFrame ends
// the link, rather than leaving it up with nobody reading its control
// stream (no Move, Park or Want would be answered again).
func TestControlUnreadableEndsLink(t *testing.T) {
	_, g := heldGateway(t)
	g.ctrl.Write(link.AppendFrameHeader(nil, link.FrameOpenHeld, link.MaxFrame+1))
	select {
	case <-g.mux.CloseChan():
	case <-time.After(waitFor):
		t.Fatal("the backend kept a link whose control stream it could not read")
	}
}
