package backend

import (
	"bytes"

	"holdfast/link"
)

// A session that a Move left away here may be held by a gateway's link
// without a stream (see Holding in package link): the link a new gateway
// process opens after an upgrade names its quiet sessions in Hold instead
// of opening each. A held session stops its orphan clock; the first frame
// written to it while held goes to pending, as for any away session, and
// wakes the gateway, which opens it on a stream. Its link failing starts
// the clock again.

// hold answers a gateway's Hold for this session on link gl: it reports
// whether the session is held now, which only an away session with no
// claim to wait for may be.
func (s *Session) hold(gl *gatewayLink) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	ok := s.away && !s.ended && !s.hungup && !s.closed && !s.released && !s.isDetached() && !s.keeps.Load() && !gl.dead.Load()
	if ok {
		if s.expiry != nil {
			s.expiry.Stop()
		}
		s.gl, s.holder = gl, gl
	}
	s.mu.Unlock()
	if !ok {
		return false
	}
	s.held, s.heldSent = gl, 0
	if len(s.pending) > 0 {
		s.wakeHeldLocked() // written while it moved
	}
	return true
}

// heldBudget bounds what a held session sends in HeldFrames before it
// asks for a stream (Wake): the gateway queues those frames for the player
// without waiting, and a stream paces a player who does not read.
const heldBudget = 16 << 10

// heldFor returns the link holding the session, if a broadcast line of n
// bytes may go to it there in a Broadcast as held (Parked number 0), as
// the line's frame would in HeldFrames; the line counts against
// heldBudget. It returns nil while a writer is inside, or for a session
// not held so.
func (s *Session) heldFor(n int) *gatewayLink {
	if !s.wmu.TryLock() {
		return nil
	}
	defer s.wmu.Unlock()
	gl := s.held
	if !s.mayHoldLocked(n) {
		return nil
	}
	s.heldSent += n
	return gl
}

// mayHoldLocked reports, with wmu held, whether n bytes of frames may go
// to the gateway holding the session on the control stream: it is held by
// one that takes HeldFrames, with nothing waiting for a stream, within
// heldBudget.
func (s *Session) mayHoldLocked(n int) bool {
	gl := s.held
	if gl == nil || !gl.heldFrames.Load() || len(s.pending) > 0 || s.heldSent+n > heldBudget {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.away && s.holder == gl && !s.ended && !s.released
}

// sendHeldLocked sends frames, and an acknowledgement of ack if it is new,
// to the gateway holding the session, on the control stream (HeldFrames),
// and reports whether it did. It does, with wmu held, only for a session
// held by a gateway that takes HeldFrames, with nothing waiting for a
// stream, within heldBudget, and for frames that need no stream.
func (s *Session) sendHeldLocked(frames []byte, ack uint64) bool {
	gl := s.held
	if !s.mayHoldLocked(len(frames)) {
		return false
	}
	if link.CheckHeldFrames(frames) != nil {
		return false // a frame that needs a stream
	}
	if ack > s.acked {
		var a [8]byte
		frames = link.AppendFrame(frames[:len(frames):len(frames)], link.FrameAck, link.AppendAck(a[:0], ack))
	}
	if len(frames) == 0 || !gl.queueHeld(s.id, frames) {
		return len(frames) == 0
	}
	s.heldSent += len(frames)
	s.acked = max(s.acked, ack)
	return true
}

// wakeHeldLocked, with wmu held, has the gateway that holds the session
// open it: a frame for it is waiting in pending. Once is enough.
func (s *Session) wakeHeldLocked() {
	if s.held != nil {
		s.held.wake(s.id)
		s.held = nil
	}
}

// unholdLocked, with mu held, ends the hold of an away session whose
// holding link has gone: the orphan clock runs again. It reports whether
// the session was held.
func (s *Session) unholdLocked() bool {
	if s.holder == nil {
		return false
	}
	s.holder, s.releaseAtAdopt = nil, false
	s.startClockLocked()
	return true
}

// moveHeld answers a Move naming a session held on gl: the gateway
// process there hands it to another, which holds or opens it itself; until
// then the orphan clock runs. It reports whether the session was held on
// gl.
func (s *Session) moveHeld(gl *gatewayLink) bool {
	// With wmu, so that a frame on its way to HeldFrames goes before the
	// Move's answer, and none after it: what is written now waits for the
	// next process's stream, which holding it there wakes.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.away || s.holder != gl {
		return false
	}
	s.held = nil
	return s.unholdLocked()
}

// drop answers a gateway's Drop for this session on link gl: the player
// of the held session has gone. Reads return io.EOF, as after a Hangup.
func (s *Session) drop(gl *gatewayLink) {
	s.mu.Lock()
	if !s.away || s.holder != gl || s.ended {
		s.mu.Unlock()
		return
	}
	s.holder = nil
	s.ended, s.hungup = true, true
	close(s.back)
	closed := s.closed
	s.mu.Unlock()
	s.wmu.Lock()
	s.pending, s.held = nil, nil
	s.wmu.Unlock()
	if closed {
		s.l.untrack(s)
	}
}

// releaseHeld answers the gateway's Release for this session, held on gl:
// with nothing waiting for a stream, everything the application wrote has
// reached the gateway, so it is released at once, and reports true; with
// frames waiting, the gateway is opening it (it was woken), and it is
// released on that stream, after them, with Moved as usual.
func (s *Session) releaseHeld(gl *gatewayLink) bool {
	s.wmu.Lock()
	s.mu.Lock()
	ok := s.away && s.holder == gl && !s.ended && !s.hungup && !s.closed && !s.released && !s.isDetached()
	s.mu.Unlock()
	if ok {
		// As release does: what was written before goes first, and the
		// acknowledgement of only what the application is done with, in
		// HeldFrames if they take it.
		s.uncorkLocked()
		if s.finished > s.acked {
			s.sendHeldLocked(nil, s.finished)
		}
	}
	// Quiet: not woken (a Wake may be on its way even with nothing
	// pending, for a Want), and everything sent.
	quiet := ok && s.held == gl && len(s.pending) == 0 && s.finished <= s.acked
	if ok && !quiet {
		s.wakeHeldLocked() // it is released on the stream this opens
	}
	s.mu.Lock()
	switch {
	case quiet:
		s.released, s.holder = true, nil
	case ok:
		s.releaseAtAdopt = true
	}
	s.mu.Unlock()
	s.held = nil
	s.wmu.Unlock()
	if quiet {
		s.detach()
	}
	return quiet
}

// holdAll answers a Hold naming ids on gl: the sessions not held are
// named in Unheld, for the gateway to open.
func (l *Listener) holdAll(gl *gatewayLink, ids []string) {
	var unheld []string
	for _, id := range ids {
		if s := l.lookup(id); s == nil || !s.hold(gl) {
			unheld = append(unheld, id)
		}
	}
	if len(unheld) > 0 {
		gl.control(link.FrameUnheld, link.AppendMove(nil, unheld))
	}
}

// dropAll answers a Drop naming ids on gl.
func (l *Listener) dropAll(gl *gatewayLink, ids []string) {
	for _, id := range ids {
		if s := l.lookup(id); s != nil {
			s.drop(gl)
		}
	}
}

// openHeldAll answers an OpenHeld on gl: each session it opens starts
// held, away from its first moment, as if its stream had been parked and
// closed (see Holding in package link). One this backend still has is
// held as by Hold, and keeps its own state; one it cannot hold is named in
// Unheld, and the gateway opens it on a stream. The application accepts
// the new ones in order, on a goroutine of their own: the control stream
// goes on meanwhile, and a Drop read after this frame finds each session.
func (l *Listener) openHeldAll(gl *gatewayLink, opens []link.HeldOpen) {
	var unheld []string
	var started []*Session
	for i := range opens {
		o := &opens[i].Open
		for {
			if old := l.lookup(o.ID); old != nil {
				switch {
				case !old.hold(gl):
					unheld = append(unheld, o.ID)
				case link.HasFrame(opens[i].After, link.FrameInput):
					// It keeps its own state and what it has read: the
					// input comes again on the stream its Wake opens.
					old.want(gl)
				}
				break
			}
			if o.Claim != "" || o.Keep || gl.dead.Load() {
				unheld = append(unheld, o.ID) // these need a stream, and a dead link none
				break
			}
			s := newHeldSession(l, gl, o, opens[i].After)
			err := l.track(s, nil)
			if err == errRaced {
				continue // opened on a stream meanwhile: held, or named in Unheld, as that one
			}
			if err != nil {
				unheld = append(unheld, o.ID)
				break
			}
			if gl.dead.Load() {
				// The link broke after the check above, and its end may
				// not have seen this session: on the orphan clock.
				s.orphan()
			}
			started = append(started, s)
			break
		}
	}
	if len(unheld) > 0 {
		gl.control(link.FrameUnheld, link.AppendMove(nil, unheld))
	}
	if len(started) == 0 {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for _, s := range started {
			select {
			case l.accept <- s:
			case <-l.done:
				s.detach()
				s.Close()
			}
		}
	}()
}

// newHeldSession returns a session opened held on gl with o: it has no
// stream until a gateway opens one for it (adopt), reads first the frames
// after, and wakes the gateway when the application first writes to it.
func newHeldSession(l *Listener, gl *gatewayLink, o *link.Open, after []byte) *Session {
	s := newSession(l, gl, nil, o)
	s.rst, s.fr = nil, link.Reader{R: bytes.NewReader(after)}
	s.st, s.cur = nil, nil
	s.away, s.back = true, make(chan struct{})
	s.holder, s.held = gl, gl
	return s
}

// wantAll answers a Want naming ids on gl: each session held there is
// woken, after the frames it has sent in HeldFrames; one away and not
// held there is named in Unheld, for the gateway to open.
func (l *Listener) wantAll(gl *gatewayLink, ids []string) {
	var unheld []string
	for _, id := range ids {
		if s := l.lookup(id); s == nil || !s.want(gl) {
			unheld = append(unheld, id)
		}
	}
	if len(unheld) > 0 {
		gl.control(link.FrameUnheld, link.AppendMove(nil, unheld))
	}
}

// want wakes the session if gl holds it, and reports false if it is away
// and gl does not hold it. A session on a stream is left alone (its
// writer may be waiting for a slow player, and the caller reads the
// control stream).
func (s *Session) want(gl *gatewayLink) bool {
	if !s.isAway() {
		return true
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	away, held := s.away, s.holder == gl && !s.ended
	s.mu.Unlock()
	if held {
		s.wakeHeldLocked() // once: a woken session has sent its Wake
	}
	return held || !away
}
