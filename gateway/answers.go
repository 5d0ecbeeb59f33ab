package gateway

import (
	"sync"
	"time"
)

// A client answers the telnet offers a round trip after they go out, plus
// the time its machine (and the gateway's) takes to run the answer. The
// round trip is the kernel's to tell; the rest is learnt from the clients
// that answered lately, since a loaded machine answers later than its
// network alone says. A client that has said nothing is given the slowest
// of those answers twice over, as well as its own round trips, before it
// is taken for a raw socket: one whose machine is that slow still tells
// the game, in a facts update, and its answer makes the next client's
// wait longer.
const (
	// answerSamples is how many recent answers are remembered.
	answerSamples = 16
	// answerMemory is how long an answer counts: a burst of load an hour
	// ago does not make today's silent clients wait.
	answerMemory = time.Minute
)

// answerDelays remembers how long the latest clients to answer the offers
// took beyond their round trip. The zero value remembers none.
type answerDelays struct {
	mu   sync.Mutex
	next int
	at   [answerSamples]time.Time
	late [answerSamples]time.Duration
}

// observe records that a client answered late beyond its round trip.
func (a *answerDelays) observe(now time.Time, late time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.at[a.next], a.late[a.next] = now, max(0, late)
	a.next = (a.next + 1) % answerSamples
}

// slowest returns the longest of the answers that still count.
func (a *answerDelays) slowest(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var d time.Duration
	for i, at := range a.at {
		if !at.IsZero() && now.Sub(at) < answerMemory {
			d = max(d, a.late[i])
		}
	}
	return d
}
