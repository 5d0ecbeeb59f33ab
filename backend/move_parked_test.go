package backend

import (
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
