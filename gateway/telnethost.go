package gateway

import (
	"bytes"
	"net"
	"time"

	"holdfast/gateway/telnet"
	"holdfast/link"
)

// negotiationWait bounds how long a new player's session waits for the
// client to answer the telnet offers before the backend sees it.
const negotiationWait = 300 * time.Millisecond

// A client that has said nothing in telnet after negotiationTrips round
// trips, and after the time recent clients took to answer beyond theirs
// (answers.go), is taken for one that never will (a plain TCP client, a
// bot, a crawler), and is not kept waiting as if it were on the far side
// of the world. minNegotiationWait is for what neither shows, a client on
// this machine descheduled at the wrong moment. A client that has spoken
// gets the whole negotiationWait to finish. One that answers later still
// tells the game, in a facts update. A player behind a proxy (a PROXY
// header) may wait the whole negotiationWait: the round trip known is the
// proxy's.
const (
	negotiationTrips   = 4
	minNegotiationWait = 10 * time.Millisecond
)

// silentWait returns how long the client on c gets to say something, and
// its round trip; ok is false where the round trip is not known, and the
// client gets the whole negotiationWait.
func (srv *Server) silentWait(c net.Conn, now time.Time) (wait, rtt time.Duration, ok bool) {
	rtt, ok = roundTrip(c)
	if !ok {
		return negotiationWait, 0, false
	}
	slow := rtt + 2*srv.answers.slowest(now)
	return min(negotiationWait, max(minNegotiationWait, negotiationTrips*rtt, slow)), rtt, true
}

// The GMCP handshake messages kept for each new backend: at most
// maxHello of them and maxHelloBytes in all, for the session's life. A
// client's Core.Hello and Core.Supports.Set are a few hundred bytes; what
// comes past either bound still goes to the backend attached now, and is
// not kept.
const (
	maxHello      = 8
	maxHelloBytes = 4 << 10
)

// factsInterval is the shortest time between two facts updates of one
// session on the link: a client whose window is being dragged sends a
// NAWS for each step, and the game needs only where it stopped.
const factsInterval = 200 * time.Millisecond

// fromPlayer runs the telnet engine over bytes from the player, appends
// the application input to dst, and passes what the engine learnt on to
// the backend. Until holdUntil, while the client's answers to the offers
// are still coming (it answered after its session opened), what it
// learnt is held back for one update once they are all in, or at
// holdUntil: a game told half of them (the client's name for its
// terminal) would act on that. settled reports, while holdUntil is set,
// that they are all in.
func (s *session) fromPlayer(dst, src []byte, holdUntil time.Time) (_ []byte, settled bool) {
	s.tmu.Lock()
	dst = s.engine.Feed(dst, src)
	changed := s.engine.TakeChanged()
	f := s.engine.Facts()
	gmcp := s.engine.TakeGMCP()
	if !holdUntil.IsZero() {
		settled = s.engine.Settled()
	}
	s.tmu.Unlock()
	switch {
	case changed && !settled && time.Now().Before(holdUntil):
		s.holdFacts(holdUntil)
	case changed:
		s.learnt(f)
	}
	if len(gmcp) > 0 && s.holdsInput() {
		s.flushFacts() // the messages go after the input typed before them
	}
	for _, m := range gmcp {
		if isHello(m) {
			s.keepHello(m)
		}
		s.toBackend(link.FrameGMCPIn, m)
	}
	return dst, settled
}

// keepHello keeps a GMCP handshake message for each new backend, within
// the bounds.
func (s *session) keepHello(m []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Hello = keptHello(s.Hello, m)
}

// keptHello returns hello with m added, if the bounds leave room for it.
func keptHello(hello [][]byte, m []byte) [][]byte {
	total := 0
	for _, h := range hello {
		total += len(h)
	}
	if len(hello) < maxHello && total+len(m) <= maxHelloBytes {
		return append(hello, m)
	}
	return hello
}

// boundMoved bounds what a session brings from another gateway process,
// which may be of an earlier version that kept more: its facts, as this
// version learns them, and its GMCP hello, as this version keeps it.
func boundMoved(f link.Facts, hello [][]byte) (link.Facts, [][]byte) {
	f.Terminal = telnet.Printable([]byte(f.Terminal), telnet.MaxTerminal)
	f.Charset = telnet.Printable([]byte(f.Charset), telnet.MaxTerminal)
	f.ClientName = telnet.Printable([]byte(f.ClientName), telnet.MaxEnvValue)
	f.ClientVersion = telnet.Printable([]byte(f.ClientVersion), telnet.MaxEnvValue)
	f.ReportedIP = telnet.Printable([]byte(f.ReportedIP), telnet.MaxEnvValue)
	var kept [][]byte
	for _, m := range hello {
		kept = keptHello(kept, m)
	}
	return f, kept
}

// learnt takes what the engine knows into the session's facts, and sends
// the backend what changed: at once, unless an update went less than
// factsInterval ago; then the timer that interval set sends the latest
// values when it is over.
func (s *session) learnt(t telnet.Facts) {
	s.mu.Lock()
	s.takeFactsLocked(t)
	s.mu.Unlock()
	s.sendFacts(false)
}

// takeFactsLocked takes what the engine knows into the session's facts,
// and marks what changed for the next update; s.mu is held.
func (s *session) takeFactsLocked(t telnet.Facts) {
	f := mergeFacts(s.Facts, t)
	s.factsDirty |= f.Diff(&s.Facts)
	s.Facts = f
}

// holdFacts holds what the engine has learnt from a late client, and the
// input it types meanwhile, until flushFacts, at until at the latest: the
// engine keeps the facts, and the session has them at the flush.
func (s *session) holdFacts(until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.factsHeld || s.cond.phase == phaseGone {
		return
	}
	s.factsHeld = true
	if s.factsTimer != nil {
		s.factsTimer.Stop() // an interval's end would send half of them
	}
	s.factsTimer = time.AfterFunc(time.Until(until), s.flushFacts)
}

// flushFacts ends a hold: the facts held go, then the input held with
// them.
func (s *session) flushFacts() {
	// The engine's facts are read and taken in as one step: a reader
	// that learns the cycle's last answer meanwhile would have it undone.
	s.tmu.Lock()
	f := s.engine.Facts()
	s.mu.Lock()
	s.tmu.Unlock()
	if !s.factsHeld {
		s.mu.Unlock()
		return
	}
	// Taken in before the hold ends: input forwarded from then on goes
	// after them.
	s.takeFactsLocked(f)
	s.factsHeld = false
	if s.factsTimer != nil {
		s.factsTimer.Stop() // this hold's, if it has not fired
		s.factsTimer = nil
	}
	s.mu.Unlock()
	s.sendFacts(false)
	s.forward()
}

// sendFacts sends a FactsUpdate with the facts that changed since the
// current stream last had them, and holds the next one back for
// factsInterval. tick is set when that interval is over. With nothing
// changed, or no stream to send on (an attach sends every fact in its
// Open), the interval ends without an update.
func (s *session) sendFacts(tick bool) {
	if !tick {
		s.openHeld()
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if !tick && s.factsTimer != nil || s.factsHeld {
		s.mu.Unlock()
		return // the interval or the hold is not over: its end sends them
	}
	st, lk := s.st, s.lk
	if s.factsDirty == 0 || st == nil || s.cond.phase != phaseLive || lk.leaving() {
		if tick {
			s.factsTimer = nil
		}
		s.mu.Unlock()
		return
	}
	b := link.AppendFrame(nil, link.FrameFactsUpdate, s.Facts.AppendUpdate(nil, s.factsDirty))
	s.factsDirty = 0
	if s.factsTimer == nil {
		s.factsTimer = time.AfterFunc(factsInterval, func() { s.sendFacts(true) })
	} else {
		s.factsTimer.Reset(factsInterval)
	}
	s.mu.Unlock()
	// A failed write means the stream is dying; the next attach sends
	// every fact in its Open.
	st.Write(b)
}

// stopFactsLocked stops the facts timer of a session that has ended;
// s.mu is held.
func (s *session) stopFactsLocked() {
	if s.factsTimer != nil {
		s.factsTimer.Stop()
		s.factsTimer = nil
	}
}

// isHello reports whether a GMCP message is part of the client's
// handshake, which every new backend must see.
func isHello(m []byte) bool {
	return bytes.HasPrefix(m, []byte("Core.Hello")) || bytes.HasPrefix(m, []byte("Core.Supports."))
}

// mergeFacts takes what the engine knows into the session's facts; the
// client address is the gateway's own.
func mergeFacts(f link.Facts, t telnet.Facts) link.Facts {
	f.Terminal, f.MTTS, f.Width, f.Height = t.Terminal, t.MTTS, t.Width, t.Height
	f.Charset, f.ClientName, f.ClientVersion, f.ReportedIP = t.Charset, t.ClientName, t.ClientVersion, t.IPAddress
	return f
}

// toBackend sends a frame on the current stream, if there is one that is
// not leaving; otherwise the attach will carry the news. A held session's
// frame waits for the stream its Want opens, within maxHeldWaiting.
func (s *session) toBackend(typ link.FrameType, payload []byte) {
	s.openHeld()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	st, lk, moving := s.st, s.lk, s.cond.phase == phaseMoving
	if st == nil && s.cond.stream == streamHeld && !moving {
		var waiting []byte
		if s.rare != nil {
			waiting = s.rare.heldWaiting
		}
		if len(waiting)+link.HeaderLen+len(payload) <= maxHeldWaiting {
			s.rareFields().heldWaiting = link.AppendFrame(waiting, typ, payload)
		}
	}
	s.mu.Unlock()
	if st != nil && !moving && !lk.leaving() {
		link.WriteFrame(st, typ, payload)
	}
}

// maxHeldWaiting bounds the frames a held session keeps for its stream:
// the client's GMCP messages, a few hundred bytes each.
const maxHeldWaiting = 16 << 10

func (s *session) spoken() bool {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	return s.engine.Spoken()
}

// holdsInput reports whether input typed by a late client waits for its
// facts.
func (s *session) holdsInput() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.factsHeld && s.sent < len(s.In)
}

func (s *session) awaiting() int {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	return s.engine.Awaiting()
}

func (s *session) settled() bool {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	return s.engine.Settled()
}

// The session is its engine's telnet.Host.

// Send queues protocol bytes. A client that keeps asking while it reads
// nothing overflows even the protocol's allowance and is disconnected.
func (s *session) Send(b []byte) {
	if !s.out.putProtocol(b) {
		s.out.close()
		s.closeConn() // the reader sees the error and ends the session
	}
}

func (s *session) StartCompress(start []byte) {
	if !s.out.putMarked(start, true) {
		s.out.close()
		s.closeConn()
	}
}

func (s *session) StopCompress() { s.out.mark(false) }
func (s *session) MSSP() []byte  { return s.srv.mssp(s) }

// fromBackend handles the frames by which the application asks for
// protocol actions. It reports whether typ was one of them.
func (s *session) fromBackend(typ link.FrameType, p []byte) bool {
	switch typ {
	case link.FrameEcho:
		s.tmu.Lock()
		s.engine.EchoOff(len(p) > 0 && p[0] == 0)
		s.tmu.Unlock()
	case link.FramePrompt:
		s.tmu.Lock()
		end := s.engine.PromptEnd()
		s.tmu.Unlock()
		if len(end) > 0 {
			s.out.put(end, s.srv.slowPlayer())
		}
	case link.FrameGMCPOut:
		s.tmu.Lock()
		s.engine.SendGMCP(p)
		s.tmu.Unlock()
	default:
		return false
	}
	return true
}
