package gateway

import (
	"math"
	"time"

	"go.uber.org/zap"

	"holdfast/link"
)

// Stowing (see Holding in package link): a session whose stream has
// stayed parked for HoldIdle is named in Stow, and the backend, if
// nothing has been written to the stream since its last Parked, holds it
// without a stream and says so in Stowed. An idle player then costs
// neither end a stream; its output comes in HeldFrames, and its next line
// asks for a stream (Want) as any held session's does. A browser page is
// stowed too, by a backend that can (StowKept): its acknowledgements of
// output go on the control stream (HeldOutAck), and so does the news of a
// claim of it through another gateway (HeldTaken).

// defaultHoldIdle is HoldIdle's default: long enough that a player
// between two lines keeps the stream, short against how long most idle
// players stay idle.
const defaultHoldIdle = 10 * time.Second

// holdSweeps returns how many sweeps must find a stream parked before its
// session is stowed, 0 for never.
func (s *Server) holdSweeps() int {
	if s.HoldIdle < 0 {
		return 0
	}
	// At most what parkedSweeps counts to: a longer HoldIdle stows
	// after some 9 hours.
	return min(max(1, int(positive(s.HoldIdle, defaultHoldIdle)/parkInterval)), math.MaxUint16)
}

// stowDue counts a sweep for the session, with s.mu held, and reports
// whether its Stow is due: its stream has been parked for after sweeps on
// a backend that stows, and it is a session that may be held; later, if
// it is such a session whose Stow is to come, or has not been answered.
func (s *session) stowDue(after int) (due, later bool) {
	if s.cond.stream != streamParked || s.cond.phase != phaseLive {
		s.parkedSweeps = 0
		return false, false
	}
	if s.stowing {
		return false, true
	}
	if s.deployed || s.claimToken() != "" || !s.lk.can(link.FeatureStow) || !s.lk.can(link.FeatureHeldFrames) ||
		s.keeps && !s.lk.can(link.FeatureStowKept) {
		return false, false
	}
	if s.parkedSweeps++; int(s.parkedSweeps) < after {
		return false, true
	}
	s.parkedSweeps, s.stowing = 0, true
	return true, false
}

// stow asks the backends to hold the sessions due, by link.
func stow(due map[*backendLink][]*session) {
	for lk, list := range due {
		// A failure is the link's: its end puts the sessions elsewhere.
		if lk.leaving() || lk.sendIDs(link.FrameStow, ids(list)) != nil {
			for _, s := range list {
				s.mu.Lock()
				s.stowing = false
				s.mu.Unlock()
			}
		}
	}
}

// stowed handles the backend's Stowed: each session named with a Parked
// number is held now, its stream closed at the backend after that Parked.
// It returns how many were. Those with input to send ask for a stream
// (Want), and those whose players left meanwhile are dropped, on a
// goroutine of their own: the caller reads the control stream, which
// must not wait for the link's queue.
func (lk *backendLink) stowed(srv *Server, to []link.Parked) int {
	n := 0
	var typed, gone []*session
	for _, r := range to {
		for _, s := range lk.sessionsNamed([]string{r.ID}) {
			switch stowed, left, input := s.stowedOn(lk, r.Park); {
			case left:
				gone = append(gone, s)
			case input:
				typed = append(typed, s)
			case !stowed:
				continue
			}
			n++
		}
	}
	if len(typed)+len(gone) > 0 {
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			if len(gone) > 0 {
				// The Hangup on the stream may not have gone before the
				// backend stowed the session, which waits for a Drop.
				lk.sendIDs(link.FrameDrop, ids(gone))
			}
			for _, s := range typed {
				s.openHeld()
			}
		}()
	}
	return n
}

// stowedOn takes the session off its parked stream on lk, which the
// backend has closed after its Parked number park, and makes it held
// there, as after a move (MoveFrom: the next stream carries it on). It
// reports whether it did, and whether its player has left meanwhile or
// has input to send: what was written to the stream since it was parked
// has gone with the stream, and goes again on the next one. Park 0, a
// Stow refused, leaves it as it was.
func (s *session) stowedOn(lk *backendLink, park uint32) (stowed, left, input bool) {
	s.mu.Lock()
	s.stowing = false
	st := s.st
	if park == 0 || s.lk != lk || st == nil {
		s.mu.Unlock()
		return false, false, false
	}
	if s.cond.stream != streamParked || s.parksSeen != park {
		// The backend stows only a stream with nothing written since
		// that Parked, which the reader has read and stopped at.
		c, seen := s.cond, s.parksSeen
		s.mu.Unlock()
		s.srv.log().Warn("gateway: a stowed session's stream was not parked there", zap.String("session", s.ID),
			zap.Stringer("condition", c), zap.Uint32("parked", seen), zap.Uint32("stowed", park))
		return false, false, false
	}
	left = !s.to(evStowed)
	if left {
		s.to(evDetach)
		s.lk = nil
	}
	s.st, s.sent, s.closedInMove = nil, 0, false
	s.MoveFrom = lk.instance
	s.wanted, s.woken, s.holding = false, false, false
	input = !left && len(s.In) > 0
	s.mu.Unlock()
	lk.unstream(st, s, left)
	st.Close()
	return true, left, input
}

// unstream forgets the parked stream st of s, which has no reader to
// count out; s stays known to the link, held, unless it has gone.
func (lk *backendLink) unstream(st *link.Stream, s *session, gone bool) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	delete(lk.streams, st)
	if gone && lk.byID[s.ID] == s {
		delete(lk.byID, s.ID)
	}
}
