package gateway

import (
	"net"
	"net/netip"
	"testing"

	"github.com/hashicorp/yamux"
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
			a, b := net.Pipe()
			client, err := yamux.Client(a, link.YamuxConfig(zap.NewNop()))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := yamux.Server(b, link.YamuxConfig(zap.NewNop()))
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			ctrl, err := client.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			peer, err := server.AcceptStream()
			if err != nil {
				t.Fatal(err)
			}
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
	srv := &Server{metrics: newMetrics(), Logger: zap.NewNop(), sessions: map[*session]struct{}{}, perIP: map[netip.Addr]int{}}
	lk := &backendLink{goodbye: make(chan struct{})}
	c, peer := net.Pipe()
	defer peer.Close()
	s := newSession(srv, "p-1", c, c.RemoteAddr(), netip.Addr{})
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
