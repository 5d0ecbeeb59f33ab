package gateway

import "time"

// clockStart is micros's zero.
var clockStart = time.Now()

// micros is the time since the process started in microseconds, on the
// monotonic clock, wrapping every 71 minutes: four bytes in a session.
func micros() uint32 { return uint32(time.Since(clockStart) / time.Microsecond) }

// burstGap is how soon after one write sendNow leaves the next to a
// writer.
const burstGap = 200 * time.Microsecond

// inBurst reports whether a write at now follows the one at last within
// burstGap, on micros's clock: across a wrap too.
func inBurst(now, last uint32) bool { return now-last < uint32(burstGap/time.Microsecond) }

// sendNow writes b to the player on the caller's goroutine when nothing is
// queued or being written, as much as the socket takes at once; what it
// does not take is left to a writer goroutine. A line's answer then costs
// no goroutine and no wake-up, and a player who does not read holds up
// nobody: the write never waits. It reports false, having done nothing,
// when b is to be queued as usual: output is waiting or being written, or
// went out this way just before; the session is moving or ending; the
// connection is not a plain socket; or the session keeps its
// output for a player who may come back (its writer tells the backend
// what went out).
//
// A write that follows the last one within burstGap waits for a writer
// too: output that close behind is most likely more of a burst, which a
// writer takes in writes of everything queued meanwhile rather than one
// for each frame.
//
// Only a session's own stream reader writes this way: the control
// stream's reader, which delivers a broadcast or held sessions' output to
// thousands at once, would write to them one after the other, where
// their writers write side by side.
func (s *session) sendNow(b []byte) bool {
	now := micros()
	if s.keeps || !canWriteNow(s.conn) || inBurst(now, s.sentNowAt.Load()) || !s.out.claimIdle() {
		return false
	}
	s.sentNowAt.Store(now)
	// This goroutine is the player's writer until release.
	wire := b
	if s.compressing {
		wire = s.comp.Append(nil, b)
	}
	n := writeNow(s.conn, wire)
	s.bytesOut.Add(uint64(n))
	s.srv.metrics.bytesOut.Add(float64(n))
	if s.out.release(wire[n:]) {
		s.startWriter()
	}
	return true
}
