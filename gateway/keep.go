package gateway

import (
	"go.uber.org/zap"

	"holdfast/link"
)

// A player who may come back through another gateway: a resumable browser
// page, which reconnects by itself, through a balancer, to whichever
// gateway answers. The session is opened with link.Open.Keep, so that the
// backend keeps the output the player has not acknowledged, and with the
// hashes of the page's tokens (link.FrameTokens); the page's
// acknowledgements of output, counted in the game's output offset
// (record.OutOff), go on to the backend (link.FrameOutAck), and the
// backend's of input go on to the page, so that the page keeps what it
// typed until the game has it. If this gateway dies, the page comes back
// to another with its token and the session's id: that gateway claims
// the session (link.Open.Claim), saying how much of the game's output the
// page has (the page counts it: such a session's output is encoded one
// unit a byte, telnet.Encoder.Exact), and the backend sends it the rest.
// If the page comes back elsewhere while this gateway lives, the backend
// says Taken here, and the session ends here without a Hangup.

// keeper is a connection whose player may come back through another
// gateway (gateway/web's resumable Conn).
type keeper interface {
	// Keeps reports whether the player may come back elsewhere.
	Keeps() bool
	// KeepWith gives the connection the session's id, and what to call
	// when the player acknowledges output up to an offset of the game's
	// or when its tokens change.
	KeepWith(id string, outAcked func(game uint64), tokens func())
	// Sent says that what was written to the connection so far reaches
	// the game's output offset game.
	Sent(game uint64)
	// InputAcked says that the game has the player's input up to off.
	InputAcked(off uint64)
	// TokenHashes are the SHA-256 hashes of the tokens that resume the
	// connection now.
	TokenHashes() [][32]byte
	// Claim, for a connection that came back from another gateway, says
	// which session and with which token, the input offset the page keeps
	// its typing from, and the game's output offset the page has.
	Claim() (id, token string, in, out uint64, ok bool)
}

// keeper returns the session's connection as a keeper, or nil.
func (s *session) keeper() keeper {
	if k, ok := s.conn.(keeper); ok && k.Keeps() {
		return k
	}
	return nil
}

// keep hooks the session to its connection, if it is a keeper; the
// session's id is set.
func (s *session) keep() {
	if k := s.keeper(); k != nil {
		k.KeepWith(s.ID, s.outAcked, s.tokensChanged)
	}
}

// outAcked tells the backend that the player has the output up to game:
// on the control stream while the session is held there, so that output
// to an idle page opens no stream.
func (s *session) outAcked(game uint64) {
	s.mu.Lock()
	lk := s.lk
	held := s.st == nil && s.cond.stream == streamHeld && s.cond.phase == phaseLive
	s.mu.Unlock()
	if held && lk != nil && lk.can(link.FeatureStowKept) && !lk.leaving() && lk.send(link.FrameHeldOutAck, link.AppendHeldOutAck(nil, s.ID, game)) == nil {
		return
	}
	s.toBackend(link.FrameOutAck, link.AppendAck(nil, game))
}

// tokensChanged tells the backend which tokens may claim the session now.
func (s *session) tokensChanged() {
	if k := s.keeper(); k != nil {
		s.toBackend(link.FrameTokens, link.AppendTokens(nil, k.TokenHashes()))
	}
}

// keptFrames returns what follows the Open of a kept session's stream:
// its tokens.
func (s *session) keptFrames(b []byte) []byte {
	if k := s.keeper(); k != nil {
		b = link.AppendFrame(b, link.FrameTokens, link.AppendTokens(nil, k.TokenHashes()))
	}
	return b
}

// heldTaken handles the backend's HeldTaken: the sessions named, held on
// lk (stowed), were claimed through another gateway, and their players
// go on there. Each ends here without a Drop, on a goroutine of its own:
// the caller reads the control stream. One opened meanwhile hears Taken on
// its stream too; one frozen in a move is left behind by it (prepare).
func (lk *backendLink) heldTaken(srv *Server, ids []string) {
	var taken []*session
	for _, s := range lk.sessionsNamed(ids) {
		if s.heldOn(lk) {
			taken = append(taken, s)
		}
	}
	if len(taken) == 0 {
		return
	}
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		for _, s := range taken {
			if s.takenWhileMoving() {
				continue
			}
			lk.forget(s)
			s.leave(endTaken)
		}
	}()
}

// takenWhileMoving records, of a session frozen in a move, that a claim
// took it, and reports whether it was moving: no answer to its Move
// comes, and the move waits for none (a held one's wait ends here, a
// streamed one's when its stream does).
func (s *session) takenWhileMoving() bool {
	s.mu.Lock()
	moving := s.cond.phase == phaseMoving
	s.takenInMove = s.takenInMove || moving
	s.mu.Unlock()
	if moving {
		s.moveDone()
	}
	return moving
}

// leave ends the session here for a player who goes on through another
// gateway, without a Hangup: the backend keeps the session for that
// gateway's claim (it closed the stream already if it said Taken). The
// player's connection here, if any is left, is closed.
func (s *session) leave(reason string) {
	s.mu.Lock()
	ended := s.to(evEnd)
	s.stopFactsLocked()
	s.In = nil
	st := s.st
	s.wakeSpace()
	s.mu.Unlock()
	if !ended {
		return
	}
	if st != nil {
		st.Close() // the backend holds the session away, as after a break
	}
	s.out.close()
	s.closeConn()
	s.srv.metrics.disconnects.WithLabelValues(reason).Inc()
	s.srv.log().Info("gateway: player disconnected", zap.String("session", s.ID), zap.String("reason", reason))
}
