package backend

import (
	"github.com/hashicorp/yamux"

	"holdfast/link"
)

// Stowing (see Holding in package link): a gateway names in Stow the
// sessions whose streams it has long had parked, and the backend holds
// each one whose stream has had nothing written since its last Parked, as
// Hold would, closing the stream.

// stowAll answers a Stow naming ids on gl, in three steps so that nothing
// the gateway reads for a stowed session comes before its Stowed: each is
// made away and held first, but not yet for HeldFrames (what it writes
// meanwhile waits in pending); then the Stowed goes; then each takes
// HeldFrames, and one with frames pending wakes. A broadcast decided
// before goes first (one to a parked stream after the Stowed would find
// no stream at the gateway), and one after finds each held.
func (l *Listener) stowAll(gl *gatewayLink, ids []string) {
	gl.bcast.Lock()
	defer gl.bcast.Unlock()
	answer := link.Broadcast{To: make([]link.Parked, 0, len(ids))}
	var stowed []*Session
	var streams []*yamux.Stream
	for _, id := range ids {
		r := link.Parked{ID: id}
		if s := l.lookup(id); s != nil {
			if st, park, ok := s.stow(gl); ok {
				r.Park = park
				stowed = append(stowed, s)
				streams = append(streams, st)
			}
		}
		answer.To = append(answer.To, r)
	}
	gl.control(link.FrameStowed, answer.Append(nil))
	for _, st := range streams {
		// The reader reads on to the gateway's end of it: input written
		// before the gateway read the Stowed.
		st.Close()
	}
	for _, s := range stowed {
		s.heldAfterStow(gl)
	}
}

// stow makes the session away and held by gl if its stream is parked
// there with nothing written since, and nothing in the way: it returns
// the stream and the number of that Parked. A writer inside means the
// stream is about to be written to (and so woken): no.
func (s *Session) stow(gl *gatewayLink) (*yamux.Stream, uint32, bool) {
	if !gl.heldFrames.Load() || !s.wmu.TryLock() {
		return nil, 0, false
	}
	defer s.wmu.Unlock()
	if s.parked != gl || s.cork != nil || s.keeps.Load() {
		return nil, 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gl != gl || s.away || s.ended || s.hungup || s.closed || s.released || s.isDetached() {
		return nil, 0, false
	}
	s.away, s.back = true, make(chan struct{})
	s.holder = gl // no orphan clock
	s.parked = nil
	return s.st, s.parks, true
}

// heldAfterStow lets a stowed session, still held by gl, send HeldFrames
// there; frames it wrote since it was stowed wake it.
func (s *Session) heldAfterStow(gl *gatewayLink) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	held := s.away && s.holder == gl && !s.ended
	s.mu.Unlock()
	if !held {
		return // moved, dropped or ended since
	}
	s.held, s.heldSent = gl, 0
	if len(s.pending) > 0 {
		s.wakeHeldLocked()
	}
}

// heldInput answers a HeldInput on gl: input for a session held there.
// One away and not held there is named in Unheld, for the gateway to
// open; one on a stream has it again there.
func (l *Listener) heldInput(gl *gatewayLink, id string, off uint64, input []byte) {
	if s := l.lookup(id); s == nil || !s.takeHeldInput(gl, off, input) {
		gl.control(link.FrameUnheld, link.AppendMove(nil, []string{id}))
	}
}

// takeHeldInput keeps input from off for the reader of the session held
// by gl, and reports false if it is away and not held there. One on a
// stream has it again there. One with link.MaxHeldInput unread is woken
// instead, by a goroutine of its own (the caller reads the control
// stream, and a writer may hold wmu): the stream its gateway opens then
// brings the input again. Input for a session woken already is kept all
// the same: read before that stream comes, it is skipped there.
func (s *Session) takeHeldInput(gl *gatewayLink, off uint64, input []byte) bool {
	s.mu.Lock()
	if !s.away {
		s.mu.Unlock()
		return true
	}
	if s.holder != gl || s.ended {
		s.mu.Unlock()
		return false
	}
	ok := s.appendHeldInLocked(off, input)
	ready := s.heldInReady
	s.mu.Unlock()
	if !ok {
		s.l.wg.Add(1)
		go func() {
			defer s.l.wg.Done()
			s.wmu.Lock()
			s.wakeHeldLocked()
			s.wmu.Unlock()
		}()
		return true
	}
	if ready != nil {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	return true
}

// appendHeldInLocked appends input from off to heldIn, without what it
// has already, and reports false if it does not follow on or would be
// past the bound. s.mu is held.
func (s *Session) appendHeldInLocked(off uint64, input []byte) bool {
	if len(s.heldIn) == 0 {
		s.heldIn, s.heldInOff = nil, off
	}
	end := s.heldInOff + uint64(len(s.heldIn))
	switch {
	case off > end:
		return false
	case off+uint64(len(input)) <= end:
		return true // had it
	}
	input = input[end-off:]
	if len(s.heldIn)+len(input) > link.MaxHeldInput {
		return false
	}
	s.heldIn = append(s.heldIn, input...)
	return true
}

// readHeldInput hands the reader, whose stream has ended, the input that
// came on the control stream, without what it has read already; it
// returns how much. It is called with s.rmu held. Input that does not
// follow on from what was read (it cannot come so) wakes the session.
func (s *Session) readHeldInput(p []byte) int {
	s.mu.Lock()
	if len(s.heldIn) == 0 {
		s.mu.Unlock()
		return 0
	}
	if s.heldInOff < s.recv {
		k := min(s.recv-s.heldInOff, uint64(len(s.heldIn)))
		s.heldIn, s.heldInOff = s.heldIn[k:], s.heldInOff+k
	}
	if len(s.heldIn) > 0 && s.heldInOff > s.recv {
		s.heldIn = nil
		s.mu.Unlock()
		s.wmu.Lock()
		s.wakeHeldLocked()
		s.wmu.Unlock()
		return 0
	}
	n := copy(p, s.heldIn)
	s.heldIn, s.heldInOff = s.heldIn[n:], s.heldInOff+uint64(n)
	if len(s.heldIn) == 0 {
		s.heldIn = nil
	}
	s.mu.Unlock()
	s.recv += uint64(n)
	return n
}
