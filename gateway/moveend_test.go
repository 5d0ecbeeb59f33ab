package gateway

import (
	"io"
	"testing"
	"time"

	"holdfast/link"
)

// TestMoveTimeoutParkedReader: a session frozen for an upgrade whose
// stream's reader stopped at a Parked (read before the freeze, or after
// it, the Park asked before); the backend does not answer the Move
// within moveStop. The move gives up on the backend and closes the
// stream, and must not wait on for a reader that is not there.
func TestMoveTimeoutParkedReader(t *testing.T) {
	stop := moveStop
	moveStop = 200 * time.Millisecond
	t.Cleanup(func() { moveStop = stop })
	for _, tc := range []struct {
		name        string
		parkedFirst bool
	}{
		{"parked at the freeze", true},
		{"park asked at the freeze", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrl, backend := streamPair(t)
			go io.Copy(io.Discard, backend) // the backend reads the Move, and does not answer in time
			lk := &backendLink{ctrl: ctrl, goodbye: make(chan struct{})}
			lk.features.Store(uint32(link.FeatureHeldFrames | link.FeatureMovedParked))
			srv, s := testSession(t)
			st, far := streamPair(t)
			s.mu.Lock()
			s.st, s.lk = st, lk
			s.cond.stream, s.cond.phase = streamParkAsked, phaseLive
			s.mu.Unlock()
			lk.track(st, s)
			srv.wg.Add(1)
			go s.readStream(lk, st)
			parked := func() {
				link.WriteFrame(far, link.FrameParked, nil)
				eventually(t, "the Parked read", func() bool {
					s.mu.Lock()
					defer s.mu.Unlock()
					return s.parksSeen == 1 && s.cond.stream == streamParked
				})
			}
			if tc.parkedFirst {
				parked()
			}
			s.mu.Lock()
			s.to(evFreeze)
			s.mu.Unlock()
			if !tc.parkedFirst {
				parked()
			}
			moveEnds(t, srv, s, lk, st)
		})
	}
}

// moveEnds detaches s for a move and fails if that takes long past
// moveStop; it then starts the stream's reader again, so that the test
// ends.
func moveEnds(t *testing.T, srv *Server, s *session, lk *backendLink, st *link.Stream) {
	t.Helper()
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		srv.detachForMove([]*session{s})
	}()
	select {
	case <-moved:
		srv.wg.Wait()
	case <-time.After(moveStop + waitFor):
		s.mu.Lock()
		cond := s.cond
		restart := s.to(evWake)
		s.mu.Unlock()
		if restart {
			s.restartStream(lk, st)
		}
		<-moved
		srv.wg.Wait()
		t.Fatalf("the move waits on for a stream whose reader stopped at a Parked (%v)", cond)
	}
}

// TestBrokenBeforeParkedRead: the link of a session whose stream was
// asked to park breaks (broken runs) before the reader reads the Parked:
// broken found no parked reader to start. The reader must not stop at
// the Parked, where nothing would start it again, but go on to find the
// link's end: a live session leaves the stream (and tells the player the
// game is away); a moving one's move ends.
func TestBrokenBeforeParkedRead(t *testing.T) {
	stop := moveStop
	moveStop = 200 * time.Millisecond
	t.Cleanup(func() { moveStop = stop })
	for _, ph := range []phase{phaseLive, phaseMoving} {
		t.Run(ph.String(), func(t *testing.T) {
			lk := &backendLink{goodbye: make(chan struct{})}
			srv, s := testSession(t)
			st, far, mux := linkPair(t)
			s.mu.Lock()
			s.st, s.lk = st, lk
			s.cond.stream, s.cond.phase = streamParkAsked, ph
			s.mu.Unlock()
			lk.track(st, s)
			link.WriteFrame(far, link.FrameParked, nil)
			lk.broken()
			srv.wg.Add(1)
			go s.readStream(lk, st)
			eventually(t, "the Parked read", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.parksSeen == 1
			})
			mux.Close()
			if ph == phaseMoving {
				moveEnds(t, srv, s, lk, st)
				return
			}
			eventually(t, "the stream left", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.st == nil
			})
			srv.wg.Wait()
		})
	}
}
