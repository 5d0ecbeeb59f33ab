package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"holdfast/link"
)

// TestMovingParkedBroadcastOrder: a session frozen for an upgrade while
// its stream was asked to park. The backend writes Parked 1 and, after
// it, output on the stream, with a Broadcast for after that Parked and
// then a Wake on the control stream, whose reader is another goroutine
// and comes later: the broadcast line still reaches the player first.
func TestMovingParkedBroadcastOrder(t *testing.T) {
	srv := &Server{metrics: newMetrics(), Logger: zap.NewNop(), sessions: map[*session]struct{}{}, perIP: map[netip.Addr]int{}}
	st, far, _ := linkPair(t)
	lk := &backendLink{goodbye: make(chan struct{})}
	c, peer := net.Pipe()
	defer peer.Close()
	s := newSession(srv, "p-1", c, c.RemoteAddr(), netip.Addr{})
	s.out.freeze() // frozen for the move: what is queued stays, to be saved
	s.mu.Lock()
	s.st, s.lk = st, lk
	s.cond.stream, s.cond.phase = streamParkAsked, phaseMoving
	s.mu.Unlock()
	lk.track(st, s)
	srv.wg.Add(1)
	go s.readStream(lk, st)

	b := link.AppendFrame(nil, link.FrameParked, nil)
	b = link.AppendFrame(b, link.FrameOutput, []byte("after\n"))
	if _, err := far.Write(b); err != nil {
		t.Fatal(err)
	}
	queued := func(text string) bool { return bytes.Contains(s.out.save().Buf, []byte(text)) }
	// The session's reader has read the Parked, and stopped there or
	// gone on to the output.
	eventually(t, "the Parked read", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.parksSeen == 1 && (s.cond.stream == streamParked || queued("after"))
	})
	lk.broadcast(link.Broadcast{Text: []byte("line\n"), To: []link.Parked{{ID: "p-1", Park: 1}}})
	lk.wake(srv, []string{"p-1"})
	eventually(t, "both queued", func() bool { return queued("line") && queued("after") })

	got := s.out.save().Buf
	far.Close()
	st.Close()
	srv.wg.Wait()
	if line, after := bytes.Index(got, []byte("line")), bytes.Index(got, []byte("after")); line > after {
		t.Fatalf("queued for the player %q: want the broadcast line before the output written after it", got)
	}
}
