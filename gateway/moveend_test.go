package gateway

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/testnet"
	"holdfast/link"
)

// TestMoveTimeoutParkedReader: a session frozen for an upgrade whose
// stream's reader stopped at a Parked (read before the freeze, or after
// it, the Park asked before); the backend does not answer the Move
// within moveStop. The move gives up on the backend and closes the
// stream, and must not wait on for a reader that is not there.
func TestMoveTimeoutParkedReader(t *testing.T) {
	shortMoveStop(t)
	for _, tc := range []struct {
		name        string
		parkedFirst bool
	}{
		{"parked at the freeze", true},
		{"park asked at the freeze", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lk := silentLink(t)
			srv, s := testSession(t)
			st, far := streamPair(t)
			readOn(s, lk, st, streamParkAsked, phaseLive)
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
		t.Fatalf("the move waits on for the stream's end (%v)", cond)
	}
}

// shortMoveStop has a move give up on the backend's answer soon.
func shortMoveStop(t *testing.T) {
	stop := moveStop
	moveStop = 200 * time.Millisecond
	t.Cleanup(func() { moveStop = stop })
}

// silentLink is a link to a backend that reads what the gateway sends (a
// Move) and answers nothing.
func silentLink(t *testing.T) *backendLink {
	ctrl, backend := streamPair(t)
	go io.Copy(io.Discard, backend)
	lk := &backendLink{ctrl: ctrl, goodbye: make(chan struct{})}
	lk.features.Store(uint32(link.FeatureHeldFrames | link.FeatureMovedParked))
	return lk
}

// readOn puts s on stream st of lk, in the stream state and phase given,
// and starts its reader.
func readOn(s *session, lk *backendLink, st *link.Stream, stream streamState, ph phase) {
	s.mu.Lock()
	s.st, s.lk = st, lk
	s.cond.stream, s.cond.phase = stream, ph
	s.mu.Unlock()
	lk.track(st, s)
	s.srv.wg.Add(1)
	go s.readStream(lk, st)
}

// TestBrokenBeforeParkedRead: the link of a session whose stream was
// asked to park breaks (broken runs) before the reader reads the Parked:
// broken found no parked reader to start. The reader must not stop at
// the Parked, where nothing would start it again, but go on to find the
// link's end: a live session leaves the stream (and tells the player the
// game is away); a moving one's move ends.
func TestBrokenBeforeParkedRead(t *testing.T) {
	shortMoveStop(t)
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

// TestClosedBeforeParkedRead: a move that gives up on the backend closes
// the stream of a session whose reader has just read a Parked and waits
// for the session's lock: once it has it, the reader must not stop at
// that Parked, where nothing would start it again, but read on to the
// stream's end, and the move ends.
func TestClosedBeforeParkedRead(t *testing.T) {
	srv, s := testSession(t)
	st, far, _ := linkPair(t)
	lk := &backendLink{goodbye: make(chan struct{})}
	s.out.freeze()
	done := make(chan struct{})
	s.mu.Lock()
	s.st, s.lk, s.streamDone = st, lk, done
	s.cond.stream, s.cond.phase = streamParkAsked, phaseMoving
	lk.track(st, s)
	srv.wg.Add(1)
	go s.readStream(lk, st)
	if err := link.WriteFrame(far, link.FrameParked, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Parked read", s.streamBusy.Load) // the reader now waits for s.mu
	// What closeStream does to a stream whose reader has not stopped.
	s.closedInMove = true
	st.Close()
	st.SetReadDeadline(time.Now())
	s.mu.Unlock()
	select {
	case <-done:
		srv.wg.Wait()
	case <-time.After(waitFor):
		s.mu.Lock()
		cond := s.cond
		restart := s.to(evWake)
		s.mu.Unlock()
		if restart {
			s.restartStream(lk, st)
		}
		srv.wg.Wait()
		t.Fatalf("the stream closed for the move, its reader stopped at the Parked after (%v): the move waits on", cond)
	}
}

// noticeConn is a player's connection that takes notices itself (as a
// browser page's does), and holds the first until release is closed.
type noticeConn struct {
	net.Conn
	entered, release chan struct{}
	once             sync.Once
}

func (c *noticeConn) Notice(string) bool {
	c.once.Do(func() {
		close(c.entered)
		<-c.release
	})
	return true
}

// TestParkedLinesBeforeRestart: the lines broadcast for a Parked are put
// for the player before its reader stops there: a Wake (or a move that
// gives up and closes the stream) while they are being put starts no
// second reader, whose output after the Parked would overtake them. The
// first line's notice that the game is back is held, to hold the reader
// there.
func TestParkedLinesBeforeRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ph    phase
		close bool
	}{
		{"woken, live", phaseLive, false},
		{"woken, moving", phaseMoving, false},
		{"closed for the move", phaseMoving, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, s := testSession(t)
			nc := &noticeConn{Conn: s.conn, entered: make(chan struct{}), release: make(chan struct{})}
			s.conn = nc
			st, far, _ := linkPair(t)
			lk := &backendLink{goodbye: make(chan struct{})}
			s.out.freeze() // what is put stays queued, in order
			s.Noticed = true
			s.backDue.Store(backWaits)
			readOn(s, lk, st, streamParkAsked, tc.ph)
			lk.broadcast(link.Broadcast{Text: []byte("line\n"), To: []link.Parked{{ID: "p-1", Park: 1}}})
			b := link.AppendFrame(nil, link.FrameParked, nil)
			b = link.AppendFrame(b, link.FrameOutput, []byte("after\n"))
			if _, err := far.Write(b); err != nil {
				t.Fatal(err)
			}
			<-nc.entered // the reader is putting the line
			if tc.close {
				s.closeStream()
			} else {
				lk.wake(srv, []string{"p-1"})
			}
			queued := func(text string) bool { return bytes.Contains(s.out.save().Buf, []byte(text)) }
			if lk.readers.Load() > 1 {
				// A second reader started: it queues the output.
				eventually(t, "the second reader's output", func() bool { return queued("after") })
			}
			close(nc.release)
			eventually(t, "both queued", func() bool { return queued("line") && queued("after") })
			got := s.out.save().Buf
			far.Close()
			st.Close()
			st.SetReadDeadline(time.Now())
			srv.wg.Wait()
			if line, after := bytes.Index(got, []byte("line")), bytes.Index(got, []byte("after")); line > after {
				t.Fatalf("queued for the player %q: want the broadcast line before the output after its Parked", got)
			}
		})
	}
}

// TestMoveEndsSessionGone: a session that ends (the server closing)
// while a move that gave up on the backend waits for its stream's end:
// the end still tells the move.
func TestMoveEndsSessionGone(t *testing.T) {
	shortMoveStop(t)
	lk := silentLink(t)
	srv, s := testSession(t)
	st, _ := streamPair(t)
	readOn(s, lk, st, streamAttached, phaseMoving)
	s.abort()
	moveEnds(t, srv, s, lk, st)
}

// TestPrepareSkipsSessionGone: a session that ends while its batch is
// taken off the backend (its player found too slow, the server closing)
// is left out of the batch: its socket is closed, and offering it would
// fail the whole upgrade.
func TestPrepareSkipsSessionGone(t *testing.T) {
	_, server := testnet.TCPPair(t)
	srv := &Server{metrics: newMetrics(), Logger: zap.NewNop(), sessions: map[*session]struct{}{}, perIP: map[netip.Addr]int{}}
	s := newSession(srv, "p-1", server, server.RemoteAddr(), netip.Addr{})
	lk := silentLink(t)
	st, far := streamPair(t)
	readOn(s, lk, st, streamAttached, phaseLive)

	type prepared struct {
		o   *offer
		err error
	}
	done := make(chan prepared, 1)
	go func() {
		o, _, err := srv.prepare(context.Background(), []*session{s})
		done <- prepared{o, err}
	}()
	eventually(t, "the move waiting for the stream's end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.streamDone != nil
	})
	s.abort()
	far.Close() // the stream ends
	p := <-done
	srv.wg.Wait()
	if p.err != nil || p.o != nil && len(p.o.sessions) > 0 {
		t.Fatalf("prepare: %v, offered %v", p.err, p.o)
	}
}
