package gateway

import "fmt"

// condition is where a session stands: its phase, how its player's socket
// is read, and how its backend stream is. It changes only in next, through
// session.to, with the session's mu held.
//
// Locks, in the order they are taken: the session's wmu (frames on the
// stream, and attaching), then tmu (the telnet engine, whose host
// callbacks may take mu), then mu (the condition and the record), then the
// outbox's own lock. A goroutine that holds a later one never waits for an
// earlier one.
type condition struct {
	phase  phase
	player playerState
	stream streamState
}

// phase is the session's course as a whole.
type phase uint8

const (
	// phaseNegotiating: the client is answering the gateway's offers. No
	// backend sees the session yet: it would be told half the facts.
	phaseNegotiating phase = iota
	// phaseLive: attached to a backend (stream not streamAway) or away from one.
	phaseLive
	// phaseMoving: being handed to another gateway process. Its reader and
	// writer stop, nothing more goes to the backend, and what it has
	// travels with it; it may come back (thaw).
	phaseMoving
	// phaseGone: the player left, the game ended it, or it moved away for good.
	phaseGone
)

// playerState is how the player's socket is read.
type playerState uint8

const (
	// playerReading: a goroutine reads the socket (or, moving, has stopped).
	playerReading playerState = iota
	// playerParked: the socket waits in the server's parker for the player's
	// next input, with no goroutine.
	playerParked
)

// streamState is the session's backend stream, and its reader (see
// link.FramePark).
type streamState uint8

const (
	// streamAway: no stream; the session waits for a backend.
	streamAway streamState = iota
	// streamAttached: a goroutine reads the stream.
	streamAttached
	// streamParkAsked: Park was sent for the stream; its Parked is not read yet.
	streamParkAsked
	// streamWokenEarly: a Wake came before that Parked: the reader goes on.
	streamWokenEarly
	// streamParked: the reader has stopped at Parked; a Wake restarts it.
	streamParked
	// streamHeld: no stream, but the backend holds the session for the
	// link (see link's Holding): a Wake, or something to send, opens one.
	streamHeld
)

// event is what happens to a session.
type event uint8

const (
	evNegotiated event = iota // the offers are answered, or the wait for them over
	evFreeze                  // a move to another process begins
	evThaw                    // the move did not happen: the session carries on here
	evEnd                     // the session ends
	evPark                    // the player's reader hands the socket to the parker
	evWakePlayer              // the parked socket is readable: a reader again
	evUnpark                  // the socket leaves the parker to be closed or moved
	evAttach                  // a stream to a backend opens
	evDetach                  // the stream ends
	evAskPark                 // the sweep found the stream quiet and sent Park
	evParkedRead              // the stream's reader read Parked
	evWake                    // the backend wrote to a parked stream (Wake), or its link broke
	evHold                    // the session is named in a Hold: a backend holds it without a stream
	evStowed                  // the backend holds the session whose stream was parked (Stowed)
)

// next returns the condition after e, and whether e may happen in s: one that
// may not leaves s as it was, and the caller does nothing more.
func (s condition) next(e event) (condition, bool) {
	n := s
	switch e {
	case evNegotiated:
		if s.phase != phaseNegotiating {
			return s, false
		}
		n.phase = phaseLive
	case evFreeze:
		if s.phase != phaseLive {
			return s, false
		}
		// A parked socket leaves the parker: the move finds no reader.
		n.phase, n.player = phaseMoving, playerReading
	case evThaw:
		if s.phase != phaseMoving {
			return s, false
		}
		n.phase = phaseLive
	case evEnd:
		if s.phase == phaseGone {
			return s, false
		}
		n.phase = phaseGone
	case evPark:
		if s.phase != phaseLive || s.player != playerReading {
			return s, false
		}
		n.player = playerParked
	case evWakePlayer:
		if s.phase != phaseLive || s.player != playerParked {
			return s, false
		}
		n.player = playerReading
	case evUnpark:
		if s.player != playerParked {
			return s, false
		}
		n.player = playerReading
	case evAttach:
		if s.phase != phaseLive || s.stream != streamAway && s.stream != streamHeld {
			return s, false
		}
		n.stream = streamAttached
	case evHold:
		if s.phase != phaseLive || s.stream != streamAway {
			return s, false
		}
		n.stream = streamHeld
	case evStowed:
		if s.phase == phaseGone || s.phase == phaseNegotiating || s.stream != streamParked {
			return s, false
		}
		n.stream = streamHeld
	case evDetach:
		if s.stream == streamAway {
			return s, false
		}
		n.stream = streamAway
	case evAskPark:
		if s.phase != phaseLive || s.stream != streamAttached {
			return s, false
		}
		n.stream = streamParkAsked
	case evParkedRead:
		switch {
		case s.stream == streamParkAsked && (s.phase == phaseLive || s.phase == phaseMoving):
			// Moving too: what follows that Parked on the stream comes
			// after lines broadcast for it on the control stream, and
			// the Wake behind them restarts the reader (or MovedParked
			// ends the stream where it stopped).
			n.stream = streamParked
		case s.stream == streamParkAsked || s.stream == streamWokenEarly:
			// Woken, or ending: the reader goes on, to the
			// next frame or to the stream's end.
			n.stream = streamAttached
		default:
			return s, false
		}
	case evWake:
		switch s.stream {
		case streamParked:
			n.stream = streamAttached // the caller starts the reader
		case streamParkAsked:
			n.stream = streamWokenEarly
		default:
			// A reader runs, and reads what woke it; or, held, the
			// caller opens a stream.
			return s, false
		}
	default:
		return s, false
	}
	return n, true
}

func (p phase) String() string {
	switch p {
	case phaseNegotiating:
		return "negotiating"
	case phaseLive:
		return "live"
	case phaseMoving:
		return "moving"
	case phaseGone:
		return "gone"
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

func (p playerState) String() string {
	switch p {
	case playerReading:
		return "reading"
	case playerParked:
		return "parked"
	}
	return fmt.Sprintf("player(%d)", uint8(p))
}

func (s streamState) String() string {
	switch s {
	case streamAway:
		return "away"
	case streamAttached:
		return "attached"
	case streamParkAsked:
		return "park-asked"
	case streamWokenEarly:
		return "woken-early"
	case streamParked:
		return "parked"
	case streamHeld:
		return "held"
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

func (s condition) String() string {
	return s.phase.String() + "/" + s.player.String() + "/" + s.stream.String()
}

// to applies e to the session's condition, and reports whether it
// applied. s.mu is held.
func (s *session) to(e event) bool {
	n, ok := s.cond.next(e)
	s.cond = n
	return ok
}

// is reports whether the session is in phase p.
func (s *session) is(p phase) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cond.phase == p
}
