package backend

import (
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
	var streams []*link.Stream
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
func (s *Session) stow(gl *gatewayLink) (*link.Stream, uint32, bool) {
	if !gl.heldFrames.Load() || !s.wmu.TryLock() {
		return nil, 0, false
	}
	defer s.wmu.Unlock()
	if s.parked != gl || s.cork != nil {
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
