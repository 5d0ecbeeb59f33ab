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
	if !s.inCorks {
		s.inCorks = true
		c.queued = append(c.queued, s)
	}
	if !c.armed {
		c.armed, c.delay = true, corkDelay
		if c.timer == nil {
			c.timer = time.AfterFunc(c.delay, c.sweep)
		} else {
			c.timer.Reset(c.delay)
		}
	}
}

// sweep sends the corks that have waited corkDelay, and arms the timer
// again for those that have not, if any.
func (c *corks) sweep() {
	c.mu.Lock()
	queued, delay := c.queued, c.delay
	c.queued = nil
	for _, s := range queued {
		s.inCorks = false
	}
	c.mu.Unlock()
	now := time.Now()
	var next time.Duration
	for _, s := range queued {
		s.wmu.Lock()
		if s.cork != nil {
			if wait := delay - now.Sub(s.corkedAt); wait > 0 {
				c.requeue(s)
				if next == 0 || wait < next {
					next = wait
				}
			} else {
				s.uncorkLocked()
			}
		}
		s.wmu.Unlock()
	}
	c.mu.Lock()
	switch {
	case len(c.queued) == 0:
		c.armed = false
	case next == 0:
		c.timer.Reset(c.delay) // queued meanwhile
	default:
		c.timer.Reset(next)
	}
	c.mu.Unlock()
}

// requeue queues s again, with s.wmu held, leaving the timer to sweep.
func (c *corks) requeue(s *Session) {
	c.mu.Lock()
	if !s.inCorks {
		s.inCorks = true
		c.queued = append(c.queued, s)
	}
	c.mu.Unlock()
}
