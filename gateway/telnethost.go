package gateway

import (
	"bytes"
	"time"

	"holdfast/gateway/telnet"
	"holdfast/link"
)

// negotiationWait bounds how long a new player's session waits for the
// client to answer the telnet offers before the backend sees it.
const negotiationWait = 300 * time.Millisecond

// maxHello bounds the GMCP handshake messages kept for each new backend.
const maxHello = 16

// fromPlayer runs the telnet engine over bytes from the player, appends
// the application input to dst, and passes what the engine learnt on to
// the backend.
func (s *session) fromPlayer(dst, src []byte) []byte {
	s.tmu.Lock()
	dst = s.engine.Feed(dst, src)
	changed := s.engine.TakeChanged()
	f := s.engine.Facts()
	gmcp := s.engine.TakeGMCP()
	s.tmu.Unlock()
	if changed {
		s.mu.Lock()
		s.facts = mergeFacts(s.facts, f)
		facts := s.facts
		s.mu.Unlock()
		s.toBackend(link.FrameFacts, facts.Append(nil))
	}
	for _, m := range gmcp {
		if isHello(m) {
			s.mu.Lock()
			if len(s.hello) < maxHello {
				s.hello = append(s.hello, m)
			}
			s.mu.Unlock()
		}
		s.toBackend(link.FrameGMCPIn, m)
	}
	return dst
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
// not leaving; otherwise the attach will carry the news.
func (s *session) toBackend(typ byte, payload []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	st, lk, moving := s.st, s.lk, s.moving
	s.mu.Unlock()
	if st != nil && !moving && !lk.leaving() {
		link.WriteFrame(st, typ, payload)
	}
}

func (s *session) settled() bool {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	return s.engine.Settled()
}

func (s *session) isGone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
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

func (s *session) StartCompress() { s.out.mark(true) }
func (s *session) StopCompress()  { s.out.mark(false) }
func (s *session) MSSP() []byte   { return s.srv.mssp(s) }

// fromBackend handles the frames by which the application asks for
// protocol actions. It reports whether typ was one of them.
func (s *session) fromBackend(typ byte, p []byte) bool {
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
