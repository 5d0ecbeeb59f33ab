package gateway

import (
	"bytes"
	"testing"

	"holdfast/link"
)

// TestMovingParkedBroadcastOrder: a session frozen for an upgrade while
// its stream was asked to park. The backend writes Parked 1 and, after
// it, output on the stream, with a Broadcast for after that Parked and
// then a Wake on the control stream, whose reader is another goroutine
// and comes later: the broadcast line still reaches the player first.
func TestMovingParkedBroadcastOrder(t *testing.T) {
	srv, s := testSession(t)
	st, far, _ := linkPair(t)
	lk := &backendLink{goodbye: make(chan struct{})}
	s.out.freeze() // frozen for the move: what is queued stays, to be saved
	readOn(s, lk, st, streamParkAsked, phaseMoving)

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

// TestHeldFramesWhileSaved: the held session's output that the control
// stream's reader encodes while a timed-out move saves the session (or
// opens a stream for it, whose reader encodes from then on): the encoder
// is shared, and the race detector sees it if it is not under the
// session's lock. Output for a session no longer held is dropped.
func TestHeldFramesWhileSaved(t *testing.T) {
	srv, s := testSession(t)
	lk := &backendLink{goodbye: make(chan struct{})}
	s.out.freeze()
	s.mu.Lock()
	s.lk, s.cond.stream, s.cond.phase = lk, streamHeld, phaseMoving
	s.mu.Unlock()
	lk.register([]*session{s})
	held := link.AppendHeldFrames(nil, "p-1", link.AppendFrame(nil, link.FrameOutput, []byte("a\r")))

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			lk.heldFrames(srv, held)
		}
	}()
	for range 100 {
		s.save()
	}
	<-done
	if got := bytes.Count(s.out.save().Buf, []byte("a")); got != 100 {
		t.Fatalf("%d lines queued, want 100", got)
	}

	s.mu.Lock()
	s.cond.stream = streamAttached // let go of, and opened on a stream
	s.mu.Unlock()
	lk.heldFrames(srv, held)
	if got := bytes.Count(s.out.save().Buf, []byte("a")); got != 100 {
		t.Fatalf("%d lines queued after the session left holding, want 100", got)
	}
}
