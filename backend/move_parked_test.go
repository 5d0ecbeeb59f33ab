package backend

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"holdfast/link"
)

// TestMoveParked: to a gateway that said MovedParked, a Move of sessions
// whose streams are parked is answered in one control frame naming each
// with its Parked count, nothing on their streams, and they are away;
// a session whose stream is read answers Moved on it as before; and to a
// gateway that did not say so, every session answers Moved on its stream.
func TestMoveParked(t *testing.T) {
	for _, says := range []bool{true, false} {
		l, g := setup(t)
		if says {
			link.WriteFrame(g.ctrl, link.FrameFeatures, link.AppendFeatures(nil, link.FeatureMovedParked))
		}
		stQuiet, quiet := g.open(l, link.Open{ID: "quiet"})
		stBusy, _ := g.open(l, link.Open{ID: "busy"})
		frQuiet, frBusy := link.Reader{R: stQuiet}, link.Reader{R: stBusy}
		link.WriteFrame(g.ctrl, link.FramePark, link.AppendMove(nil, []string{"quiet"}))
		if typ, _ := frame(t, &frQuiet); typ != link.FrameParked {
			t.Fatalf("answer to Park: %v", typ)
		}

		link.WriteFrame(g.ctrl, link.FrameMove, link.AppendMove(nil, []string{"quiet", "busy"}))
		if typ, _ := frame(t, &frBusy); typ != link.FrameMoved {
			t.Fatalf("the stream read: %v, want Moved", typ)
		}
		if !says {
			if typ, _ := frame(t, &frQuiet); typ != link.FrameMoved {
				t.Fatalf("to a gateway of an earlier version, the parked stream: %v, want Moved", typ)
			}
			continue
		}
		typ, p := g.control()
		b, err := link.ParseBroadcast(p)
		if typ != link.FrameMovedParked || err != nil || len(b.To) != 1 || b.To[0] != (link.Parked{ID: "quiet", Park: 1}) || len(b.Text) != 0 {
			t.Fatalf("control frame %v %+v %v, want MovedParked of quiet after Parked 1", typ, b, err)
		}
		if !quiet.isAway() {
			t.Fatal("the session moved quietly is not away")
		}
		// Written now, it waits for the next gateway's stream.
		io.WriteString(quiet, "later\n")
		g2 := linkGateway(t, l)
		st, err := g2.mux.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "quiet"}).Append(nil))
		fr := link.Reader{R: st}
		if typ, p := frame(t, &fr); typ != link.FrameOutput || string(p) != "later\n" {
			t.Fatalf("on the next stream: %v %q", typ, p)
		}
		noAccept(t, l)
	}
}

// TestReleaseParked: to a gateway that said so (FeatureReleasedParked), a
// deploy's Release of a session whose stream is parked, with nothing more
// to send, is answered in MovedParked with its Parked count, and the
// application reads ErrDetached; one whose stream is read, and one whose
// consumed input is not yet acknowledged, answer Moved on their streams
// (the acknowledgement first); to a gateway that did not say so, every
// session answers Moved on its stream.
func TestReleaseParked(t *testing.T) {
	for _, says := range []bool{true, false} {
		l, g := setup(t)
		if says {
			link.WriteFrame(g.ctrl, link.FrameFeatures, link.AppendFeatures(nil, link.FeatureMovedParked|link.FeatureReleasedParked))
		}
		stQuiet, quiet := g.open(l, link.Open{ID: "quiet"})
		stBusy, _ := g.open(l, link.Open{ID: "busy"})
		stUnacked, unacked := g.open(l, link.Open{ID: "unacked"})
		frQuiet, frBusy, frUnacked := link.Reader{R: stQuiet}, link.Reader{R: stBusy}, link.Reader{R: stUnacked}
		quietIn := lines(quiet)
		// The application is done with "look" (it came back for "west",
		// which it is still working on), and has acknowledged nothing.
		link.WriteFrame(stUnacked, link.FrameInput, []byte("look\nwest\n"))
		for _, want := range []string{"look", "west"} {
			if line, err := unacked.ReadLine(); err != nil || line != want {
				t.Fatalf("ReadLine %q %v, want %q", line, err, want)
			}
		}
		link.WriteFrame(g.ctrl, link.FramePark, link.AppendMove(nil, []string{"quiet", "unacked"}))
		for _, fr := range []*link.Reader{&frQuiet, &frUnacked} {
			if typ, _ := frame(t, fr); typ != link.FrameParked {
				t.Fatalf("answer to Park: %v", typ)
			}
		}

		link.WriteFrame(g.ctrl, link.FrameRelease, link.AppendMove(nil, []string{"quiet", "busy", "unacked"}))
		if typ, _ := frame(t, &frBusy); typ != link.FrameMoved {
			t.Fatalf("the stream read: %v, want Moved", typ)
		}
		var before []string
		for typ, p := frame(t, &frUnacked); typ != link.FrameMoved; typ, p = frame(t, &frUnacked) {
			before = append(before, fmt.Sprintf("%v %x", typ, p))
		}
		if len(before) != 1 || before[0] != "Ack 0000000000000005" {
			t.Fatalf("before Moved on the stream with input to acknowledge: %q, want the Ack of look", before)
		}
		if _, err := unacked.ReadLine(); !errors.Is(err, ErrDetached) {
			t.Fatalf("the released session read %v, want ErrDetached", err)
		}
		if !says {
			if typ, _ := frame(t, &frQuiet); typ != link.FrameMoved {
				t.Fatalf("to a gateway of an earlier version, the parked stream: %v, want Moved", typ)
			}
			continue
		}
		typ, p := g.control()
		for typ == link.FrameWake { // the unacknowledged stream's, woken to end
			typ, p = g.control()
		}
		b, err := link.ParseBroadcast(p)
		if typ != link.FrameMovedParked || err != nil || len(b.To) != 1 || b.To[0] != (link.Parked{ID: "quiet", Park: 1}) {
			t.Fatalf("control frame %v %+v %v, want MovedParked of quiet after Parked 1", typ, b, err)
		}
		want(t, quietIn, "error: "+ErrDetached.Error())
		if !quiet.isReleased() {
			t.Fatal("the session released quietly is not released")
		}
		noAccept(t, l)
	}
}
