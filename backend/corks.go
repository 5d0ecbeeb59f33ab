package backend

import (
	"sync"
	"time"
)

// corks sends what sessions have corked for longer than corkDelay. Most
// corks go within microseconds, when the application comes back to read;
// a timer armed for each would wake the runtime's poller for each answer.
// One timer for the Listener runs only while corks wait, and finds those
// that waited too long.
type corks struct {
	mu     sync.Mutex
	queued []*Session // corked when queued; each at most once (inCorks)
	armed  bool
	timer  *time.Timer
	delay  time.Duration // corkDelay when last armed: the sweep does not read it
}

// add queues s, whose cork was just made, and arms the timer if it is
// not armed. It is called with s.wmu held.
func (c *corks) add(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queueLocked(s)
	if !c.armed {
		c.armed, c.delay = true, corkDelay
		if c.timer == nil {
			c.timer = time.AfterFunc(c.delay, c.sweep)
		} else {
			c.timer.Reset(c.delay)
		}
	}
}

// queueLocked queues s, once, with c.mu held.
func (c *corks) queueLocked(s *Session) {
	if !s.inCorks {
		s.inCorks = true
		c.queued = append(c.queued, s)
	}
}

// sweep sends the corks that have waited corkDelay, each on a goroutine
// of its own (a write may wait for a slow player's window, and must not
// hold up the others), and arms the timer again for those that have not.
// A session whose writer is inside is looked at again next time: that
// writer sends the cork if it writes to the stream.
func (c *corks) sweep() {
	c.mu.Lock()
	queued, delay := c.queued, c.delay
	c.queued = nil
	for _, s := range queued {
		s.inCorks = false
	}
	c.mu.Unlock()
	now := time.Now()
	next := delay
	for _, s := range queued {
		if !s.wmu.TryLock() {
			c.requeue(s)
			continue
		}
		corked, wait := s.cork != nil, delay-now.Sub(s.corkedAt)
		s.wmu.Unlock()
		switch {
		case !corked:
		case wait > 0:
			c.requeue(s)
			next = min(next, wait)
		default:
			go s.uncork()
		}
	}
	c.mu.Lock()
	if len(c.queued) == 0 {
		c.armed = false
	} else {
		c.timer.Reset(next)
	}
	c.mu.Unlock()
}

// requeue queues s again, leaving the timer to sweep.
func (c *corks) requeue(s *Session) {
	c.mu.Lock()
	c.queueLocked(s)
	c.mu.Unlock()
}
