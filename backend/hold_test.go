package backend

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"holdfast/link"
)

// moveAway opens a session on g and moves it away from g, as the old
// process of a gateway upgrade does, and returns it with its reader.
func moveAway(t *testing.T, l *Listener, g *fakeGateway, o link.Open) (*Session, <-chan string) {
	t.Helper()
	st, s := g.open(l, o)
	link.WriteFrame(g.ctrl, link.FrameMove, link.AppendMove(nil, []string{o.ID}))
	fr := link.Reader{R: st}
	readUntil(t, &fr, link.FrameMoved)
	st.Close()
	return s, lines(s)
}

// hold sends Hold for ids on g, and returns the Unheld answer to them: a
// second Hold naming no session there is answered after the first.
func hold(t *testing.T, g *fakeGateway, ids ...string) []string {
	t.Helper()
	link.WriteFrame(g.ctrl, link.FrameHold, link.AppendMove(nil, ids))
	link.WriteFrame(g.ctrl, link.FrameHold, link.AppendMove(nil, []string{"no such session"}))
	var unheld []string
	for {
		typ, p := g.control()
		if typ != link.FrameUnheld {
			continue
		}
		got, err := link.ParseMove(p)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got, []string{"no such session"}) {
			return unheld
		}
		unheld = append(unheld, got...)
	}
}

// wakes reads g's control stream until a Wake, and returns what it names.
func wakes(t *testing.T, g *fakeGateway) []string {
	t.Helper()
	for {
		typ, p := g.control()
		if typ == link.FrameWake {
			ids, err := link.ParseMove(p)
			if err != nil {
				t.Fatal(err)
			}
			return ids
		}
	}
}

// clockStopped reports whether the session's orphan clock was stopped,
// with it still away and not ended.
func clockStopped(s *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.away && !s.ended && s.expiry != nil && !s.expiry.Stop()
}

// TestHoldWakesOnOutput: a session held by a new gateway's link has no
// orphan clock, and the first thing the application writes wakes it there;
// opened, it carries on with what was written, nothing twice.
func TestHoldWakesOnOutput(t *testing.T) {
	l, g1 := setupWith(t, Config{OrphanTimeout: time.Hour})
	s, in := moveAway(t, l, g1, link.Open{ID: "h1", Offset: 5})
	g2 := linkGateway(t, l)
	if unheld := hold(t, g2, "h1", "gone"); !slices.Equal(unheld, []string{"gone"}) {
		t.Fatalf("Unheld %q, want only the unknown session", unheld)
	}
	if !clockStopped(s) {
		t.Fatal("a held session's orphan clock still runs")
	}
	io.WriteString(s, "tick\n")
	io.WriteString(s, "tock\n")
	if ids := wakes(t, g2); !slices.Equal(ids, []string{"h1"}) {
		t.Fatalf("Wake %q", ids)
	}
	st, err := g2.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "h1", Offset: 5}).Append(nil))
	link.WriteFrame(st, link.FrameInput, []byte("look\n"))
	want(t, in, "look")
	io.WriteString(s, "after\n")
	fr := link.Reader{R: st}
	var out string
	for out != "tick\ntock\nafter\n" && len(out) < 20 {
		if typ, p := frame(t, &fr); typ == link.FrameOutput {
			out += string(p)
		}
	}
	if out != "tick\ntock\nafter\n" {
		t.Fatalf("output on the opened stream %q", out)
	}
	noAccept(t, l)
}

// TestHoldRefused: what may not be held is named in Unheld: a session
// still on a stream, a page's session that may be claimed elsewhere, one
// the application closed while away (its end goes on a stream).
func TestHoldRefused(t *testing.T) {
	l, g1 := setupWith(t, Config{OrphanTimeout: time.Hour})
	g1.open(l, link.Open{ID: "attached"})
	moveAway(t, l, g1, link.Open{ID: "page", Keep: true})
	closed, _ := moveAway(t, l, g1, link.Open{ID: "closed"})
	closed.Close()
	g2 := linkGateway(t, l)
	unheld := hold(t, g2, "attached", "page", "closed")
	if !slices.Equal(unheld, []string{"attached", "page", "closed"}) {
		t.Fatalf("Unheld %q", unheld)
	}
}

// TestHoldDropAndLinkLoss: Drop ends a held session as a Hangup would; a
// held session whose link fails is on the orphan clock again; Close of a
// held session wakes it, to send its end.
func TestHoldDropAndLinkLoss(t *testing.T) {
	l, g1 := setupWith(t, Config{OrphanTimeout: time.Hour})
	dropped, droppedIn := moveAway(t, l, g1, link.Open{ID: "dropped"})
	lost, _ := moveAway(t, l, g1, link.Open{ID: "lost"})
	ending, _ := moveAway(t, l, g1, link.Open{ID: "ending"})
	g2 := linkGateway(t, l)
	if unheld := hold(t, g2, "dropped", "lost", "ending"); len(unheld) != 0 {
		t.Fatalf("Unheld %q", unheld)
	}
	for _, s := range []*Session{dropped, lost, ending} {
		if !clockStopped(s) {
			t.Fatalf("%s: its orphan clock still runs", s.ID())
		}
	}

	ending.Close()
	if ids := wakes(t, g2); !slices.Equal(ids, []string{"ending"}) {
		t.Fatalf("Wake %q, want the closed session's", ids)
	}
	st, err := g2.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "ending"}).Append(nil))
	fr := link.Reader{R: st}
	readUntil(t, &fr, link.FrameEnd)

	link.WriteFrame(g2.ctrl, link.FrameDrop, link.AppendMove(nil, []string{"dropped"}))
	want(t, droppedIn, "error: EOF")

	g2.mux.Close()
	eventually(t, "the held session's orphan clock starts again, its link failed", func() bool { return clockRuns(lost) })
	noAccept(t, l)
}

// clockRuns reports whether the away session's orphan clock runs, and no
// link holds it.
func clockRuns(s *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.away || s.holder != nil || s.expiry == nil || !s.expiry.Stop() {
		return false
	}
	s.expiry.Reset(time.Hour) // as it was
	return true
}

// TestReleaseHeld: a deploy's Release of a held session with nothing
// waiting is answered at once on the control stream (MovedParked, Parked
// 0), and the application reads ErrDetached; one that has been woken for
// output is released on the stream the gateway opens for it, after that
// output, with Moved.
func TestReleaseHeld(t *testing.T) {
	l, g1 := setupWith(t, Config{OrphanTimeout: time.Hour})
	_, quietIn := moveAway(t, l, g1, link.Open{ID: "quiet"})
	woken, _ := moveAway(t, l, g1, link.Open{ID: "woken"})
	g2 := linkGateway(t, l)
	link.WriteFrame(g2.ctrl, link.FrameFeatures, link.AppendFeatures(nil, link.FeatureMovedParked))
	if unheld := hold(t, g2, "quiet", "woken"); len(unheld) != 0 {
		t.Fatalf("Unheld %q", unheld)
	}
	io.WriteString(woken, "last words\n")
	if ids := wakes(t, g2); !slices.Equal(ids, []string{"woken"}) {
		t.Fatalf("Wake %q", ids)
	}

	link.WriteFrame(g2.ctrl, link.FrameRelease, link.AppendMove(nil, []string{"quiet", "woken"}))
	typ, p := g2.control()
	b, err := link.ParseBroadcast(p)
	if typ != link.FrameMovedParked || err != nil || !slices.Equal(b.To, []link.Parked{{ID: "quiet"}}) {
		t.Fatalf("control frame %v %+v %v, want MovedParked of quiet alone", typ, b, err)
	}
	if got := <-quietIn; !strings.Contains(got, ErrDetached.Error()) {
		t.Fatalf("the released session read %q, want ErrDetached", got)
	}

	st, err := g2.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "woken"}).Append(nil))
	fr := link.Reader{R: st}
	if out := readUntil(t, &fr, link.FrameMoved); out != "last words\n" {
		t.Fatalf("before Moved: %q", out)
	}
	if !woken.isReleased() {
		t.Fatal("the woken session was not released once opened")
	}
}

// TestMoveHeld: a Move naming a session held on that link (an upgrade of
// the gateway process holding it) puts it back on the orphan clock, until
// the next process holds it; a Move from another link changes nothing.
func TestMoveHeld(t *testing.T) {
	l, g1 := setupWith(t, Config{OrphanTimeout: time.Hour})
	s, _ := moveAway(t, l, g1, link.Open{ID: "m"})
	g2 := linkGateway(t, l)
	if unheld := hold(t, g2, "m"); len(unheld) != 0 {
		t.Fatalf("Unheld %q", unheld)
	}
	link.WriteFrame(g1.ctrl, link.FrameMove, link.AppendMove(nil, []string{"m"}))
	hold(t, g1) // the Move has been read
	if !clockStopped(s) {
		t.Fatal("a Move from another link let the held session go")
	}
	if unheld := hold(t, g2, "m"); len(unheld) != 0 {
		t.Fatalf("Unheld %q", unheld)
	}
	link.WriteFrame(g2.ctrl, link.FrameMove, link.AppendMove(nil, []string{"m"}))
	hold(t, g2)
	if !clockRuns(s) {
		t.Fatal("after the holding link's Move, the orphan clock does not run")
	}
	g3 := linkGateway(t, l)
	if unheld := hold(t, g3, "m"); len(unheld) != 0 {
		t.Fatalf("the next process could not hold it: Unheld %q", unheld)
	}
}
