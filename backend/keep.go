package backend

import (
	"crypto/sha256"
	"crypto/subtle"

	"go.uber.org/zap"

	"holdfast/link"
)

// Output kept for a claim. A player whose gateway may die (a browser page,
// which reconnects by itself through a balancer) has the session opened
// with link.Open.Keep: the backend keeps what the session writes (Output
// and broadcast lines) until that gateway says the player has it (OutAck),
// and keeps the hashes of the tokens that prove the player's page (Tokens).
// Another gateway that the page comes back to opens the session with the
// token (link.Open.Claim): the session moves to that gateway's stream, the
// first one hears Taken, and what the player had not acknowledged is sent
// again. The application notices nothing.

// kept is a session's kept output; guarded by the session's wmu.
type kept struct {
	on     bool
	buf    []byte // the output from off on
	off    uint64 // offset of buf[0]
	tokens [][32]byte
}

// end is the session's output offset: every byte written so far.
func (k *kept) end() uint64 { return k.off + uint64(len(k.buf)) }

// add keeps p. Past link.MaxKept the oldest is forgotten, down to
// MaxKept, once a quarter of that has piled up beyond it: forgetting at
// every write would move the whole buffer for each line of a page that
// reads much and acknowledges now and then.
func (k *kept) add(p []byte) {
	if !k.on {
		return
	}
	k.buf = append(k.buf, p...)
	if over := len(k.buf) - link.MaxKept; over > link.MaxKept/4 {
		k.buf = k.buf[:copy(k.buf, k.buf[over:])]
		k.off += uint64(over)
	}
}

// ack forgets the output up to off. An offset past the end is a count
// that goes on from elsewhere (a gateway's, after a deploy): it is taken.
func (k *kept) ack(off uint64) {
	switch {
	case off <= k.off:
	case off >= k.end():
		k.buf, k.off = nil, off
	default:
		// Not moved to the front: the next growth copies only what is
		// left, where moving it at each acknowledgement copied it again
		// and again for a page that reads much.
		k.buf = k.buf[off-k.off:]
		k.off = off
		if len(k.buf) == 0 {
			k.buf = nil // an idle session keeps no buffer
		}
	}
}

// acked forgets the output up to off, a gateway's OutAck: never past the
// end, which would take the count for one from elsewhere, when the page
// acknowledges a broadcast line before it is kept here.
func (k *kept) acked(off uint64) { k.ack(min(off, k.end())) }

// proves reports whether claim is one of the session's tokens.
func (k *kept) proves(claim string) bool {
	h := sha256.Sum256([]byte(claim))
	ok := 0
	for _, t := range k.tokens {
		ok |= subtle.ConstantTimeCompare(h[:], t[:])
	}
	return ok == 1
}

// keepOutput keeps p, written to the session, for a claim; wmu is held.
func (s *Session) keepOutput(p []byte) { s.kept.add(p) }

// keepBroadcast keeps a line broadcast to the session.
func (s *Session) keepBroadcast(p []byte) {
	s.wmu.Lock()
	s.kept.add(p)
	s.wmu.Unlock()
}

// keepFrame takes the gateway's OutAck or Tokens.
func (s *Session) keepFrame(typ link.FrameType, payload []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	switch typ {
	case link.FrameOutAck:
		if off, err := link.ParseAck(payload); err == nil {
			s.kept.acked(off)
		}
	case link.FrameTokens:
		if hs, err := link.ParseTokens(payload); err == nil {
			s.kept.tokens = hs
		}
	}
}

// heldOutAck takes a HeldOutAck from gl, if gl holds the session: the
// page's acknowledgement of output while stowed there. One read once the
// session is on a stream again is let go, as is one that would wait for
// a writer (which may wait for a slow player, and the caller reads the
// control stream): the next goes on the stream, and a claim says what
// the page has.
func (s *Session) heldOutAck(gl *gatewayLink, off uint64) {
	if !s.wmu.TryLock() {
		return
	}
	defer s.wmu.Unlock()
	s.mu.Lock()
	held := s.away && s.holder == gl
	s.mu.Unlock()
	if held {
		s.kept.acked(off)
	}
}

// claimed answers an Open with a claim on st: true once the session has
// moved to st, false (and st ended) when the claim is refused.
func (l *Listener) claimed(gl *gatewayLink, st *link.Stream, o *link.Open) bool {
	s := l.lookup(o.ID)
	ok := s != nil
	if ok {
		s.wmu.Lock()
		ok = s.kept.on && s.kept.proves(o.Claim)
		s.wmu.Unlock()
	}
	if ok {
		ok = s.claim(gl, st, o)
	}
	if !ok {
		l.log.Info("backend: a claim refused: no such session, or not its token", zap.String("session", o.ID))
		link.WriteFrame(st, link.FrameEnd, nil)
		st.Close()
		return false
	}
	l.log.Info("backend: session claimed by another gateway", zap.String("session", o.ID))
	return true
}

// claim adopts the session for a claim through gl, holding the bcast of
// the link that has it, as a Move does: a line broadcast to the session
// there has been kept first, for the claim to send again, and a Stowed
// for it has gone before the HeldTaken. It never waits for wmu holding a
// bcast, nor for a bcast holding wmu: a writer inside may wait for a slow
// player, and a Broadcast, Stow, Move or Release holding the bcast may
// wait for wmu; nothing may be broadcast on any link meanwhile.
func (s *Session) claim(gl *gatewayLink, st *link.Stream, o *link.Open) bool {
	for {
		s.wmu.Lock()
		from := s.owner()
		if from == nil || from.bcast.TryLock() {
			return s.claimLocked(gl, st, o, from)
		}
		s.wmu.Unlock()
		// bcast first, then: Broadcasts that overlap without a pause
		// would fail every TryLock above.
		from.bcast.Lock()
		if s.wmu.TryLock() {
			if owner := s.owner(); owner == from || owner == nil {
				return s.claimLocked(gl, st, o, from)
			}
			s.wmu.Unlock()
		}
		from.bcast.Unlock()
	}
}

// claimLocked adopts the session for a claim, with wmu held and the bcast
// of from, if not nil, and releases both.
func (s *Session) claimLocked(gl *gatewayLink, st *link.Stream, o *link.Open, from *gatewayLink) bool {
	ok, taken := s.adoptLocked(gl, st, o)
	if from != nil {
		from.bcast.Unlock()
	}
	endTaken(taken)
	return ok
}

// owner returns the link that has the session (ownerLocked).
func (s *Session) owner() *gatewayLink {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ownerLocked()
}

// claimFramesLocked returns what goes first on the stream of a claim: the
// application's state, where the output sent again starts, and that
// output: what the player does not have (has is what it says it has), of
// what is kept. wmu is held.
func (s *Session) claimFramesLocked(b []byte, has uint64) []byte {
	s.stateMu.Lock()
	b = link.AppendFrame(b, link.FrameState, s.state)
	s.stateMu.Unlock()
	from := min(max(has, s.kept.off), s.kept.end())
	b = link.AppendFrame(b, link.FrameOutAck, link.AppendAck(nil, from))
	for p := s.kept.buf[from-s.kept.off:]; len(p) > 0; {
		n := min(len(p), link.MaxChunk)
		b = link.AppendFrame(b, link.FrameOutput, p[:n])
		p = p[n:]
	}
	return b
}
