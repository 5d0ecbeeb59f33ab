package backend

// InputOffset returns how many bytes of the player's input have been
// handed to the application over the whole session, on this backend and
// on those before it; at Accept, before the first read, it is where this
// backend's input starts. A program that passes the input on elsewhere
// and hands that on to its successor in a deploy (a bridge to another
// game server, passing its connection) says with it how far it got: the
// gateway gives the successor again what this backend had been handed but
// was not done with, and the successor skips as much of it as was passed
// on. Call it from the goroutine that reads, between reads: it waits for
// a read under way.
func (s *Session) InputOffset() uint64 {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.delivered
}
