package netx

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// PauseListener is a listener whose Accept can be paused and resumed
// without closing it. A gateway that hands its listening sockets to a new
// process pauses its own: the kernel's queue, which both processes share,
// is then the new process's alone. If the new process fails, this one
// resumes and nobody finds the port closed. The listener wrapped must
// have SetDeadline (TCP and Unix listeners do).
type PauseListener struct {
	net.Listener
	mu      sync.Mutex
	paused  bool
	resumed chan struct{} // closed by Resume, while paused
}

// Pausable wraps ln.
func Pausable(ln net.Listener) *PauseListener { return &PauseListener{Listener: ln} }

type deadliner interface{ SetDeadline(time.Time) error }

// Accept waits while the listener is paused, then accepts.
func (l *PauseListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.paused {
			wait := l.resumed
			l.mu.Unlock()
			<-wait
			continue
		}
		l.mu.Unlock()
		c, err := l.Listener.Accept()
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// Pause woke it: the deadline is Pause's alone. Looked at
			// again, the listener may be paused, resumed, or closed
			// (whose Accept then says so), whatever came since.
			continue
		}
		return c, err
	}
}

// Pause stops Accept from taking connections until Resume or Close; an
// Accept under way returns to wait (one whose connection arrives as Pause
// is called may still take it: the caller serves it as any other).
func (l *PauseListener) Pause() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused {
		return
	}
	l.paused, l.resumed = true, make(chan struct{})
	if d, ok := l.Listener.(deadliner); ok {
		d.SetDeadline(time.Now())
	}
}

// Resume lets Accept take connections again.
func (l *PauseListener) Resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.paused {
		return
	}
	if d, ok := l.Listener.(deadliner); ok {
		d.SetDeadline(time.Time{})
	}
	l.paused = false
	close(l.resumed)
}

// Close closes the listener; a paused Accept returns the error of the
// closed listener.
func (l *PauseListener) Close() error {
	err := l.Listener.Close()
	l.Resume()
	return err
}
