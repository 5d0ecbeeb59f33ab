package gateway

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"

	"holdfast/link"
)

// TestHeldPageAcks: a page's acknowledgement of output, while its session
// is held (stowed), goes on the control stream, in HeldOutAck, to a
// backend that stows pages; a backend that does not is asked for a
// stream (Want), as for anything else a held session sends.
func TestHeldPageAcks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features link.Features
		want     link.FrameType
	}{
		{"a backend that stows pages", link.FeatureHeldFrames | link.FeatureStow | link.FeatureStowKept, link.FrameHeldOutAck},
		{"one that does not", link.FeatureHeldFrames | link.FeatureStow, link.FrameWant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrl, peer := streamPair(t)
			lk := &backendLink{ctrl: ctrl, goodbye: make(chan struct{})}
			lk.features.Store(uint32(tc.features))
			c, _ := net.Pipe()
			defer c.Close()
			s := newSession(&Server{}, "p-1", c, c.RemoteAddr(), netip.Addr{})
			s.keeps = true
			s.cond.stream, s.cond.phase = streamHeld, phaseLive
			s.lk = lk
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.outAcked(42)
			}()
			fr := link.Reader{R: peer}
			typ, _, err := fr.Next()
			if err != nil {
				t.Fatal(err)
			}
			p, err := fr.Payload()
			if err != nil {
				t.Fatal(err)
			}
			<-done
			if typ != tc.want {
				t.Fatalf("sent %v, want %v", typ, tc.want)
			}
			switch typ {
			case link.FrameHeldOutAck:
				if id, off, err := link.ParseHeldOutAck(p); err != nil || id != "p-1" || off != 42 {
					t.Errorf("HeldOutAck %q %d %v, want p-1 42", id, off, err)
				}
				if s.wanted {
					t.Error("a stream asked for")
				}
			case link.FrameWant:
				if ids, err := link.ParseMove(p); err != nil || len(ids) != 1 || ids[0] != "p-1" {
					t.Errorf("Want %q %v, want p-1", ids, err)
				}
			}
		})
	}
}

// TestHeldTakenWhileMoving: a page held on a link, frozen in an upgrade
// (its Move's answer awaited), whose session a claim took: the move does
// not wait for an answer that will not come, and leaves the session
// behind, to end here (prepare); it is not ended while frozen.
func TestHeldTakenWhileMoving(t *testing.T) {
	lk := &backendLink{goodbye: make(chan struct{})}
	srv, s := testSession(t)
	s.keeps = true
	s.cond.stream, s.cond.phase = streamHeld, phaseMoving
	s.lk = lk
	done := make(chan struct{})
	s.streamDone = done
	lk.register([]*session{s})
	lk.heldTaken(srv, []string{"p-1"})
	srv.wg.Wait()
	select {
	case <-done:
	default:
		t.Error("the move still waits for the session's answer")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.takenInMove || s.cond.phase != phaseMoving {
		t.Errorf("taken in the move %v, phase %v; want it left for the move to end", s.takenInMove, s.cond.phase)
	}
}

// testSession is a session "p-1" of a server with no listener; what is
// written to its player is read and dropped.
func testSession(t *testing.T) (*Server, *session) {
	t.Helper()
	srv := &Server{metrics: newMetrics(), Logger: zap.NewNop(), sessions: map[*session]struct{}{}, perIP: map[netip.Addr]int{}}
	c, peer := net.Pipe()
	t.Cleanup(func() { peer.Close() })
	go io.Copy(io.Discard, peer)
	return srv, newSession(srv, "p-1", c, c.RemoteAddr(), netip.Addr{})
}

// streamPair returns the two ends of a link's stream on a pipe.
func streamPair(t *testing.T) (near, far *link.Stream) {
	t.Helper()
	near, far, _ = linkPair(t)
	return near, far
}

// linkPair is streamPair with the near stream's link.
func linkPair(t *testing.T) (near, far *link.Stream, client *link.Mux) {
	t.Helper()
	a, b := net.Pipe()
	client = link.Client(a, nil, zap.NewNop())
	t.Cleanup(func() { client.Close() })
	server := link.Server(b, nil, zap.NewNop())
	t.Cleanup(func() { server.Close() })
	var err error
	if near, err = client.OpenStream(); err != nil {
		t.Fatal(err)
	}
	if far, err = server.AcceptStream(); err != nil {
		t.Fatal(err)
	}
	return near, far, client
}

// TestTakenBeforeMoveSent: a page frozen in an upgrade, held, whose
// HeldTaken is read before the Move names it, or on a stream, whose
// stream says Taken before any Moved: the backend answers neither for
// it, and the move does not wait for the answer.
func TestTakenBeforeMoveSent(t *testing.T) {
	stop := moveStop
	moveStop = time.Hour // a move that waited for the answer would wait past the test's deadline
	t.Cleanup(func() { moveStop = stop })
	for _, held := range []bool{true, false} {
		t.Run(map[bool]string{true: "held", false: "on a stream"}[held], func(t *testing.T) {
			ctrl, backend := streamPair(t)
			go io.Copy(io.Discard, backend) // the backend reads the Move, and answers nothing for the page
			lk := &backendLink{ctrl: ctrl, goodbye: make(chan struct{})}
			lk.features.Store(uint32(link.FeatureHeldFrames | link.FeatureMovedParked | link.FeatureStow | link.FeatureStowKept))
			srv, s := testSession(t)
			s.keeps = true
			s.lk = lk
			if held {
				s.cond.stream, s.cond.phase = streamHeld, phaseMoving
				lk.register([]*session{s})
				lk.heldTaken(srv, []string{"p-1"})
				srv.wg.Wait()
			} else {
				st, far := streamPair(t)
				s.cond.stream, s.cond.phase = streamAttached, phaseMoving
				s.st = st
				lk.track(st, s)
				srv.wg.Add(1)
				go s.readStream(lk, st)
				link.WriteFrame(far, link.FrameTaken, nil)
				far.Close()
			}
			moved := make(chan struct{})
			go func() {
				defer close(moved)
				srv.detachForMove([]*session{s})
			}()
			select {
			case <-moved:
			case <-time.After(10 * time.Second):
				t.Fatal("the move waits for an answer that will not come")
			}
			srv.wg.Wait()
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.takenInMove || s.cond.phase != phaseMoving {
				t.Errorf("taken in the move %v, phase %v; want it left for the move to end", s.takenInMove, s.cond.phase)
			}
		})
	}
}
