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

// TestParkWakeBroadcast speaks the gateway's side of parking frame by
// frame: Park is answered with Parked on the stream; a Broadcast to parked
// sessions goes in one control frame naming each with its Parked count,
// nothing on their streams; a write to a parked session sends Wake, and
// once woken the session gets broadcasts on its stream; a Park for a
// session the backend does not hold is ignored.
func TestParkWakeBroadcast(t *testing.T) {
	l, g := setup(t)
	st1, s1 := g.open(l, link.Open{ID: "a-1"})
	st2, s2 := g.open(l, link.Open{ID: "a-2"})
	fr1, fr2 := link.Reader{R: st1}, link.Reader{R: st2}

	if err := link.WriteFrame(g.ctrl, link.FramePark, link.AppendMove(nil, []string{"a-1", "nobody", "a-2"})); err != nil {
		t.Fatal(err)
	}
	for _, fr := range []*link.Reader{&fr1, &fr2} {
		if typ, _ := frame(t, fr); typ != link.FrameParked {
			t.Fatalf("answer to Park: frame %v, want Parked", typ)
		}
	}
	// The Parked is on the wire a moment before the session counts itself
	// parked; a broadcast meanwhile finds it busy, and writes on its stream.
	for _, s := range []*Session{s1, s2} {
		eventually(t, s.id+" parked", func() bool { gl, _, busy := s.parkedOn(); return gl != nil && !busy })
	}

	if err := l.Broadcast([]*Session{s1, s2}, []byte("all\n")); err != nil {
		t.Fatal(err)
	}
	typ, p := g.control()
	b, err := link.ParseBroadcast(p)
	want := []link.Parked{{ID: "a-1", Park: 1}, {ID: "a-2", Park: 1}}
	if typ != link.FrameBroadcast || err != nil || string(b.Text) != "all\n" ||
		!slices.Equal(slices.SortedFunc(slices.Values(b.To), func(x, y link.Parked) int { return strings.Compare(x.ID, y.ID) }), want) {
		t.Fatalf("broadcast: frame %v %+v %v, want Broadcast of %q to %+v", typ, b, err, "all\n", want)
	}

	if _, err := s1.Write([]byte("you\n")); err != nil {
		t.Fatal(err)
	}
	if typ, p := frame(t, &fr1); typ != link.FrameOutput || string(p) != "you\n" {
		t.Fatalf("after the wake: frame %v %q, want the output", typ, p)
	}
	typ, p = g.control()
	if ids, err := link.ParseMove(p); typ != link.FrameWake || err != nil || !slices.Equal(ids, []string{"a-1"}) {
		t.Fatalf("control frame %v %q %v, want Wake of a-1", typ, ids, err)
	}

	// a-1 is read again: a broadcast goes on its stream; a-2 is still parked.
	if err := l.Broadcast([]*Session{s1, s2}, []byte("again\n")); err != nil {
		t.Fatal(err)
	}
	typ, p = g.control()
	if b, err := link.ParseBroadcast(p); typ != link.FrameBroadcast || err != nil || !slices.Equal(b.To, []link.Parked{{ID: "a-2", Park: 1}}) {
		t.Fatalf("second broadcast: frame %v %+v %v, want it to a-2 alone", typ, b, err)
	}
	if typ, p := frame(t, &fr1); typ != link.FrameOutput || string(p) != "again\n" {
		t.Fatalf("a-1's stream: frame %v %q, want the broadcast", typ, p)
	}
}

// TestBroadcastStuckLast: a session whose write waits for room (its
// player reads nothing, so the gateway does not read its stream) gets a
// broadcast after the others, which do not wait for it.
func TestBroadcastStuckLast(t *testing.T) {
	l, g := setup(t)
	stA, a := g.open(l, link.Open{ID: "a-1"})
	stB, b := g.open(l, link.Open{ID: "a-2"})
	written := make(chan error, 1)
	go func() {
		_, err := a.Write(bytes.Repeat([]byte("x"), 1<<20)) // past the stream's window
		written <- err
	}()
	deadline := time.Now().Add(waitFor)
	for _, _, busy := a.parkedOn(); !busy; _, _, busy = a.parkedOn() {
		if time.Now().After(deadline) {
			t.Fatal("the writer never waited for room")
		}
		time.Sleep(time.Millisecond) // polling: the writer's wait has no event to wait on
	}
	done := make(chan error, 1)
	go func() { done <- l.Broadcast([]*Session{a, b}, []byte("all\n")) }()
	frB := link.Reader{R: stB}
	if typ, p := frame(t, &frB); typ != link.FrameOutput || string(p) != "all\n" {
		t.Fatalf("a-2's stream: frame %v %q, want the broadcast", typ, p)
	}
	select {
	case err := <-written:
		t.Fatalf("a-1's write ended (%v) before its stream was read", err)
	default:
	}
	go io.Copy(io.Discard, stA) // the player reads again
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
