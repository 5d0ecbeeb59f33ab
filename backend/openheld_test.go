package backend

import (
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"holdfast/link"
)

// openHeld sends one OpenHeld of the sessions given, each with the frames
// after it.
func openHeld(g *fakeGateway, opens ...link.HeldOpen) {
	var p []byte
	for _, h := range opens {
		p = link.AppendHeldOpen(p, &h.Open, h.After)
	}
	link.WriteFrame(g.ctrl, link.FrameOpenHeld, p)
}

// accepted returns the next session the application accepts.
func accepted(t *testing.T, l *Listener) *Session {
	t.Helper()
	select {
	case s := <-l.accept:
		return s
	case <-time.After(waitFor):
		t.Fatal("no session accepted")
		return nil
	}
}

// TestOpenHeld: a session opened held is accepted with its Open's id,
// state and facts and no stream; it reads the frames that came after its
// Open (the client's GMCP hello) first; its orphan clock does not run; the
// first output wakes it, and the stream the gateway opens then carries
// that output and the player's input, nothing twice.
func TestOpenHeld(t *testing.T) {
	l, g := setupWith(t, Config{OrphanTimeout: time.Hour})
	hello := link.AppendFrame(nil, link.FrameGMCPIn, []byte(`Core.Hello {"client":"Mudlet"}`))
	openHeld(g, link.HeldOpen{
		Open:  link.Open{ID: "h1", Resumed: 1, Offset: 7, State: []byte("ann"), Facts: link.Facts{Terminal: "MUDLET", Width: 120}},
		After: hello,
	})
	s := accepted(t, l)
	if s.ID() != "h1" || string(s.State()) != "ann" || s.Resumed() != 1 || s.Facts().Terminal != "MUDLET" || s.Facts().Width != 120 {
		t.Fatalf("accepted %s state %q resumed %d facts %+v", s.ID(), s.State(), s.Resumed(), s.Facts())
	}
	if !s.isAway() || s.expiry != nil {
		t.Fatal("a session opened held is not away with its clock stopped")
	}
	gmcp := make(chan string, 1)
	s.OnGMCP(func(pkg string, data []byte) { gmcp <- pkg + " " + string(data) })
	in := lines(s)
	select {
	case got := <-gmcp:
		if got != `Core.Hello {"client":"Mudlet"}` {
			t.Fatalf("GMCP %q", got)
		}
	case <-time.After(waitFor):
		t.Fatal("the hello after the Open never reached the application")
	}

	io.WriteString(s, "welcome back\n")
	if ids := wakes(t, g); !slices.Equal(ids, []string{"h1"}) {
		t.Fatalf("Wake %q", ids)
	}
	st, err := g.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	// The first stream repeats the hello, which this backend has heard.
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "h1", Resumed: 1, Offset: 7, HelloAgain: 1}).Append(nil))
	st.Write(hello)
	link.WriteFrame(st, link.FrameInput, []byte("look\n"))
	want(t, in, "look")
	select {
	case got := <-gmcp:
		t.Fatalf("the hello repeated on the first stream reached the application again: %q", got)
	default:
	}
	fr := link.Reader{R: st}
	if out := readUntil(t, &fr, link.FrameAck); out != "welcome back\n" {
		t.Fatalf("on the opened stream: %q", out)
	}
	noAccept(t, l)
}

// TestOpenHeldRefusedAndEnds: of an OpenHeld, a session that needs a
// stream (a page's, a claim) is named in Unheld and not started; one the
// backend still has is held as by Hold; a held session's Drop ends it,
// its link's loss starts its orphan clock, and Close wakes it to send its
// end; a payload that does not parse ends the link.
func TestOpenHeldRefusedAndEnds(t *testing.T) {
	l, g1 := setupWith(t, Config{OrphanTimeout: time.Hour})
	known, _ := moveAway(t, l, g1, link.Open{ID: "known"})
	g := linkGateway(t, l)
	openHeld(g,
		link.HeldOpen{Open: link.Open{ID: "page", Keep: true}},
		link.HeldOpen{Open: link.Open{ID: "claim", Claim: "x"}},
		link.HeldOpen{Open: link.Open{ID: "known", State: []byte("not this")}},
		link.HeldOpen{Open: link.Open{ID: "dropped"}},
		link.HeldOpen{Open: link.Open{ID: "lost"}},
		link.HeldOpen{Open: link.Open{ID: "ending"}},
	)
	typ, p := g.control()
	unheld, err := link.ParseMove(p)
	if typ != link.FrameUnheld || err != nil || !slices.Equal(unheld, []string{"page", "claim"}) {
		t.Fatalf("control %v %q %v, want Unheld of page and claim", typ, unheld, err)
	}
	if !clockStopped(known) || string(known.State()) == "not this" {
		t.Fatal("the session the backend had was not held as it was")
	}
	dropped, lost, ending := accepted(t, l), accepted(t, l), accepted(t, l)
	noAccept(t, l)
	droppedIn := lines(dropped)

	ending.Close()
	if ids := wakes(t, g); !slices.Equal(ids, []string{"ending"}) {
		t.Fatalf("Wake %q, want the closed session's", ids)
	}
	st, err := g.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "ending"}).Append(nil))
	fr := link.Reader{R: st}
	readUntil(t, &fr, link.FrameEnd)

	link.WriteFrame(g.ctrl, link.FrameDrop, link.AppendMove(nil, []string{"dropped"}))
	want(t, droppedIn, "error: EOF")

	// A payload cut short: the link ends, and the sessions it held wait
	// on the orphan clock for a gateway.
	bad := link.AppendHeldOpen(nil, &link.Open{ID: "cut"}, nil)
	link.WriteFrame(g.ctrl, link.FrameOpenHeld, bad[:len(bad)-2])
	eventually(t, "the link's held sessions are on the orphan clock, after a bad OpenHeld", func() bool {
		return clockRuns(lost) && clockRuns(known)
	})
	noAccept(t, l)
}

// TestOpenHeldRacesStream: a gateway may open a session on a stream (its
// player typed) while the OpenHeld that opens it held is still on its
// way, and the two are read by different goroutines: there is still one
// session for each id, and the stream carries it on.
func TestOpenHeldRacesStream(t *testing.T) {
	l, g := setupWith(t, Config{OrphanTimeout: time.Hour})
	const n = 200
	var p []byte
	for i := range n {
		p = link.AppendHeldOpen(p, &link.Open{ID: fmt.Sprint("r", i)}, nil)
	}
	accepted := make(chan *Session, 2*n)
	go func() {
		for {
			s, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- s
		}
	}()
	go func() {
		for i := range n {
			st, err := g.mux.OpenStream()
			if err != nil {
				t.Error(err)
				return
			}
			link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: fmt.Sprint("r", i)}).Append(nil))
		}
	}()
	link.WriteFrame(g.ctrl, link.FrameOpenHeld, p)
	ids := map[string]int{}
	for len(ids) < n {
		select {
		case s := <-accepted:
			ids[s.ID()]++
		case <-time.After(waitFor):
			t.Fatalf("%d sessions accepted, want %d", len(ids), n)
		}
	}
	// Every stream's Open has been read once every session is on a stream.
	onStreams := func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, s := range l.byID {
			s.mu.Lock()
			cur := s.cur
			s.mu.Unlock()
			if cur == nil {
				return false
			}
		}
		return true
	}
	eventually(t, "the sessions are all carried on on their streams", onStreams)
	l.mu.Lock()
	tracked := len(l.sessions)
	l.mu.Unlock()
	if tracked != n || len(accepted) != 0 {
		t.Fatalf("%d sessions for %d ids, %d accepted twice", tracked, n, len(accepted))
	}
}

// TestTrackOneSessionPerID: a session is recorded only in place of the
// one its starter found; one started meanwhile by another goroutine (an
// OpenHeld and a stream's Open at once) is taken instead.
func TestTrackOneSessionPerID(t *testing.T) {
	l, g := setup(t)
	_, first := g.open(l, link.Open{ID: "x"})
	o := link.Open{ID: "x"}
	second, third := newHeldSession(l, nil, &o, nil), newHeldSession(l, nil, &o, nil)
	if err := l.track(second, nil); err != errRaced {
		t.Fatalf("a second session of an id found free: %v, want errRaced", err)
	}
	if err := l.track(second, first); err != nil || l.lookup("x") != second {
		t.Fatalf("in place of the one found: %v", err)
	}
	if err := l.track(third, first); err != errRaced {
		t.Fatalf("in place of one replaced since: %v, want errRaced", err)
	}
	l.stop()
	if err := l.track(third, second); err != errStopping {
		t.Fatalf("while stopping: %v, want errStopping", err)
	}
}

// TestHelloAgainFirst: the first stream of a session opened held, read
// before its OpenHeld, starts the session with the hello it repeats.
func TestHelloAgainFirst(t *testing.T) {
	l, g := setup(t)
	st, err := g.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "fresh", Resumed: 1, HandedOver: true, HelloAgain: 1}).Append(nil))
	link.WriteFrame(st, link.FrameGMCPIn, []byte(`Core.Hello {"client":"Mudlet"}`))
	link.WriteFrame(st, link.FrameInput, []byte("look\n"))
	s := accepted(t, l)
	gmcp := make(chan string, 1)
	s.OnGMCP(func(pkg string, data []byte) { gmcp <- pkg })
	if line, err := s.ReadLine(); err != nil || line != "look" || !s.HandedOver() {
		t.Fatalf("ReadLine %q %v, handed over %v", line, err, s.HandedOver())
	}
	select {
	case got := <-gmcp:
		if got != "Core.Hello" {
			t.Fatalf("GMCP %q", got)
		}
	default:
		t.Fatal("a session started from its first stream did not hear the hello")
	}
}
