package backend

import (
	"time"

	"go.uber.org/zap"

	"holdfast/link"
)

// A session moves between streams in two ways. A gateway that hands its
// sessions to another gateway process (an upgrade) sends Move on its
// control stream: each session named there sends Moved as its last frame
// on its stream and is away until the other gateway opens it again. A
// session whose stream or link ends without a Hangup is away too, until
// the gateway opens it again on a new link. Either way the application
// notices nothing: reads wait, writes are kept (up to maxPending), and the
// Open that brings the session back says from which input offset the new
// stream starts, so that nothing is read twice. A session not claimed
// within Config.OrphanTimeout ends as if the player had left.

// DefaultOrphanTimeout is how long a session waits for a gateway to claim
// it after its stream or link has gone, when Config.OrphanTimeout is zero.
const DefaultOrphanTimeout = 30 * time.Second

// DefaultKeptTimeout is how long a session that a browser page may claim
// through another gateway waits for it, when Config.KeptTimeout is zero:
// as long as a gateway holds a page that went away (-reconnect-grace).
const DefaultKeptTimeout = 5 * time.Minute

// goAwayLocked marks the session as between streams and starts the clock
// on it. It is called with s.mu held.
func (s *Session) goAwayLocked() {
	if s.away {
		return
	}
	s.away = true
	s.back = make(chan struct{})
	s.startClockLocked()
}

// startClockLocked starts the clock on an away session: unless a gateway
// claims it in time, it ends. s.mu is held.
func (s *Session) startClockLocked() {
	wait := s.l.orphanTimeout()
	if s.keeps.Load() {
		wait = s.l.keptTimeout()
	}
	s.expiry = time.AfterFunc(wait, s.expire)
}

func (s *Session) awayState() (away, ended bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.away, s.ended
}

func (s *Session) isAway() bool {
	away, _ := s.awayState()
	return away
}

// orphan makes the session wait for a gateway: its link has failed.
func (s *Session) orphan() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.hungup || s.isDetached() {
		return
	}
	if s.away {
		s.unholdLocked() // held by the link that failed
		return
	}
	s.goAwayLocked()
	s.cur.SetReadDeadline(time.Now()) // wake the reader out of the stream
}

// beginMove answers the gateway's Move for this session on link gl: the
// acknowledgement and Moved end the stream, and the session is away.
func (s *Session) beginMove(gl *gatewayLink) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	ok := s.gl == gl && !s.away && !s.ended && !s.hungup && !s.isDetached()
	s.mu.Unlock()
	if !ok {
		return
	}
	s.uncorkLocked()
	// Only what the application is done with, as release: the answer to a
	// line it is still working on goes into pending, which is lost if
	// this backend dies before the session's next stream opens here.
	b := s.appendDoneAckLocked(nil)
	// Away before Moved goes out: the gateway closes the stream when it
	// reads Moved, and the reader must find the session away then.
	s.mu.Lock()
	s.goAwayLocked()
	s.mu.Unlock()
	s.wakeLocked()
	s.st.Write(link.AppendFrame(b, link.FrameMoved, nil))
}

// moveParked answers the gateway's Move for this session on link gl
// without a word on its stream, if the stream is parked and nothing waits
// to be written to it: the gateway has read the stream up to its last
// Parked, and nothing more comes, so the session is away at once. It
// returns the number of that Parked, and false if the session must answer
// Moved on its stream instead.
func (s *Session) moveParked(gl *gatewayLink) (park uint32, ok bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gl != gl || s.away || s.ended || s.hungup || s.isDetached() || s.parked != gl || s.cork != nil {
		return 0, false
	}
	s.goAwayLocked()
	s.parked = nil // the gateway knows: no Wake
	return s.parks, true
}

// adopt puts the session on st, the stream a gateway opened for it with
// o. It reports false when the session has ended here, so that the caller
// starts a new one. An Open without a claim from the link a claim took
// the session from is answered Taken: its gateway had not heard of the
// claim when it opened the stream.
func (s *Session) adopt(gl *gatewayLink, st *link.Stream, o *link.Open) bool {
	s.wmu.Lock()
	ok, taken := s.adoptLocked(gl, st, o)
	endTaken(taken)
	return ok
}

// adoptLocked is adopt with wmu held, which it releases. Of a claim that
// takes the session from a stream, it returns that stream, for the caller
// to end with Taken (endTaken) once it holds no lock: the old gateway's
// window may be full, where its player is the one who left.
func (s *Session) adoptLocked(gl *gatewayLink, st *link.Stream, o *link.Open) (ok bool, taken *link.Stream) {
	s.mu.Lock()
	if s.ended || s.hungup || s.isDetached() || s.closed && !s.away {
		s.mu.Unlock()
		s.wmu.Unlock()
		return false, nil
	}
	claim := o.Claim != ""
	if !claim && gl == s.takenFrom {
		s.mu.Unlock()
		s.wmu.Unlock()
		return true, st
	}
	// A gateway holding it stowed hears that it is taken on its control
	// stream (HeldTaken), after the Stowed: the caller (claim) holds its
	// bcast.
	var stowedAt *gatewayLink
	if claim {
		s.takenFrom = s.ownerLocked()
		if s.takenFrom == gl {
			s.takenFrom = nil
		}
		if s.away {
			stowedAt = s.takenFrom
		} else {
			// The gateway it is on hears that it is taken, after what was
			// written before: it forgets the session without a Hangup.
			// What is corked is kept, and goes to the claim.
			s.wakeLocked()
			taken = s.st
		}
	}
	old := s.cur
	if s.expiry != nil {
		s.expiry.Stop()
	}
	if s.away {
		close(s.back)
	}
	s.away, s.holder = false, nil
	s.gl, s.cur = gl, st
	s.next, s.nextOff, s.nextSkip = st, o.Offset, o.HelloAgain
	s.resumed = int(o.Resumed)
	if o.Facts != s.facts {
		s.facts, s.newFacts = o.Facts, true
	}
	closed := s.closed
	release := s.releaseAtAdopt && !claim // the Release was the old gateway's
	s.releaseAtAdopt = false
	s.mu.Unlock()

	// Acknowledgements start again from where the gateway stands.
	s.held = nil   // opened: nothing to wake
	s.wakeLocked() // the old stream closes
	s.st, s.acked, s.parks = st, o.Offset, 0
	if fb := s.takeCork(); fb != nil {
		// Corked before the session went away: it goes with the rest of
		// what was written meanwhile (which a claim replaces by the
		// output kept, where it is already).
		s.pending = append(s.pending, *fb...)
		s.pendingAck = max(s.pendingAck, s.corkAck)
		putFrameBuf(fb)
	}
	b, pendingAck := s.pending, s.pendingAck
	s.pending, s.pendingAck = nil, 0
	switch {
	case claim:
		// The output kept holds what was written while away, and what
		// the other gateway may not have delivered.
		b = s.claimFramesLocked(nil, o.Output)
	case o.Keep:
		s.kept.on = true
		s.keeps.Store(true)
		if o.Output > s.kept.end() {
			s.kept.ack(o.Output) // a count that went on elsewhere goes on here
		}
	}
	// As beginMove: a line in progress is acknowledged once answered, and
	// an answer written while away goes with its acknowledgement.
	b = s.appendAckLocked(b, max(s.finished, pendingAck))
	if len(b) > 0 {
		st.Write(b) // a failure ends the stream, and the reader sees it
	}
	s.wmu.Unlock()
	if stowedAt != nil {
		stowedAt.control(link.FrameHeldTaken, link.AppendMove(nil, []string{s.id}))
	}
	if old != nil && old != st { // nil: it was opened held
		old.SetReadDeadline(time.Now()) // the reader takes what it holds, then switches
		if old != taken {
			old.Close()
		}
	}
	if closed {
		// The application closed the session while it was away: its end
		// has gone out with the rest.
		st.Close()
		s.l.untrack(s)
	}
	if release {
		s.release(gl) // asked for while it was held: after what was waiting
	}
	return true, taken
}

// expire ends a session that no gateway claimed in time, as if the player
// had left: reads return io.EOF.
func (s *Session) expire() {
	s.mu.Lock()
	if !s.away || s.ended || s.holder != nil || s.isDetached() {
		s.mu.Unlock()
		return
	}
	s.ended, s.hungup = true, true
	close(s.back)
	closed := s.closed
	s.mu.Unlock()
	s.wmu.Lock()
	s.pending = nil
	s.wmu.Unlock()
	s.l.log.Info("backend: session not claimed by a gateway in time; the player has gone", zap.String("session", s.id))
	if closed {
		s.l.untrack(s)
	}
}

// ownerLocked returns, with mu held, the gateway's link that has the
// session: the one whose stream it is on, or that holds it; nil if none.
func (s *Session) ownerLocked() *gatewayLink {
	if s.away {
		return s.holder
	}
	return s.gl
}

// endTaken ends st, a stream a claim took its session from, with Taken.
func endTaken(st *link.Stream) {
	if st == nil {
		return
	}
	st.SetWriteDeadline(time.Now().Add(takenWait))
	link.WriteFrame(st, link.FrameTaken, nil)
	st.Close()
}

// takenWait bounds the write of Taken to a gateway that reads nothing:
// its player has gone elsewhere.
const takenWait = 10 * time.Second
