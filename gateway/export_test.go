package gateway

import "time"

// FactsInterval is factsInterval, for the tests of package gateway_test.
const FactsInterval = factsInterval

// The bounds on the GMCP handshake messages kept for each new backend.
const (
	MaxHello      = maxHello
	MaxHelloBytes = maxHelloBytes
)

// PlayersParked counts the sessions whose player's socket waits in the
// parker, with no reader.
func (s *Server) PlayersParked() int {
	n := 0
	for _, ss := range s.list() {
		ss.mu.Lock()
		if ss.cond.player == playerParked {
			n++
		}
		ss.mu.Unlock()
	}
	return n
}

// SetBackNoticeWait sets how long the notice that the game is back waits
// for the game's answer, until the test ends.
func SetBackNoticeWait(t interface{ Cleanup(func()) }, d time.Duration) {
	old := backNoticeWait
	backNoticeWait = d
	t.Cleanup(func() { backNoticeWait = old })
}

// SetBackAnswerWait sets how long the notice that the game is back waits
// for the answer to a line the game has taken, until the test ends.
func SetBackAnswerWait(t interface{ Cleanup(func()) }, d time.Duration) {
	old := backAnswerWait
	backAnswerWait = d
	t.Cleanup(func() { backAnswerWait = old })
}

// HeldInput is the input the sessions hold that no backend has
// acknowledged, in bytes.
func (s *Server) HeldInput() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ss := range s.sessions {
		ss.mu.Lock()
		n += len(ss.In)
		ss.mu.Unlock()
	}
	return n
}

// SlowestAnswer is how late, beyond its round trip, the slowest of the
// latest clients answered the telnet offers.
func (s *Server) SlowestAnswer() time.Duration { return s.answers.slowest(time.Now()) }

// WaitFor and Eventually are the waits of the package's own tests.
const WaitFor = waitFor

var Eventually = eventually
