package upgrade

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"holdfast/internal/fdmsg"
)

// Receiver is the new process's part in an upgrade: it takes what the old
// one hands over.
type Receiver interface {
	// Receive prepares a batch of sessions, their state and their sockets
	// (which it owns from then on), without starting them
	// (gateway.Server.Receive).
	Receive(state []byte, conns []*os.File) (Arrivals, error)
	// TakeRegistry takes the registry's state and its registrations'
	// connections (which it owns from then on), and serves it.
	TakeRegistry(state []byte, files []*os.File) error
}

// Arrivals are sessions prepared and not yet started (gateway.Arrivals).
type Arrivals interface {
	// Len is how many sessions there are.
	Len() int
	// Start makes them this process's.
	Start()
	// Discard lets go of them, closing only this process's descriptors:
	// they stay with the old process.
	Discard()
}

// Predecessor is the old gateway process, as the new one sees it.
type Predecessor struct {
	// Backend is the address of the backend the old process is linked to,
	// where the sessions that come are held ("" if none): link to it
	// first.
	Backend string

	conn *fdmsg.Conn
	once sync.Once
}

// FromEnv returns the old process this one takes over from, or nil if this
// process was not started by an upgrade. It reads, and clears, the
// environment that says so; the listening sockets the old process passed
// are the caller's to read (from FirstFile on).
func FromEnv() (*Predecessor, error) {
	v := os.Getenv(connEnv)
	if v == "" {
		return nil, nil
	}
	os.Unsetenv(connEnv)
	backend := os.Getenv(backendEnv)
	os.Unsetenv(backendEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("upgrade: %s=%q", connEnv, v)
	}
	syscall.CloseOnExec(fd)
	return FromFile(os.NewFile(uintptr(fd), "upgrade"), backend)
}

// FromFile returns the old process at the other end of f, this process's
// end of the upgrade's socket, which FromFile takes; backend is Backend.
func FromFile(f *os.File, backend string) (*Predecessor, error) {
	conn, err := fdmsg.FromFile(f)
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	return &Predecessor{Backend: backend, conn: conn}, nil
}

// Failed tells the old process why this one will not take over, and
// closes the link: the old process serves on as it was. Only the first
// call says anything.
func (p *Predecessor) Failed(err error) {
	p.once.Do(func() {
		p.conn.SetDeadline(time.Now().Add(time.Second))
		p.conn.Send(byte(Failed), []byte(err.Error()), nil)
		p.conn.Close()
	})
}

// Close closes the link to the old process, which sees this one gone.
func (p *Predecessor) Close() error { return p.conn.Close() }

// Ready tells the old process that this one is ready, with h (a zero
// Protocol says Version), and waits for it to go on. Once Ready returns
// nil, this process serves on the listening sockets, and the old one has
// stopped accepting on them; the sessions follow (Receive).
func (p *Predecessor) Ready(h Hello) error {
	if h.Protocol == 0 {
		h.Protocol = Version
	}
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if err := p.conn.Send(byte(Ready), b, nil); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	kind, payload, files, err := p.conn.Recv()
	closeFiles(files)
	switch {
	case err != nil:
		return fmt.Errorf("upgrade: the old gateway did not go on: %w", err)
	case Kind(kind) == Refused:
		return fmt.Errorf("upgrade: the old gateway refused: %s", payload)
	case Kind(kind) != Accept:
		return fmt.Errorf("upgrade: the old gateway did not go on: %w: it said %v", ErrProtocol, Kind(kind))
	}
	return nil
}

// Receive takes what the old process hands over, through r, until it is
// done, then closes the link, and returns how many sessions arrived. The
// batches prepared start at a Commit, the last offered first (the old
// process offers the busiest last), or are let go of at an Abort. An error
// is the old process gone before it was done: what it had prepared, this
// process starts, since the old one can no longer serve it.
func (p *Predecessor) Receive(r Receiver) (sessions int, err error) {
	defer p.conn.Close()
	var prepared []Arrivals
	start := func() {
		for i := len(prepared) - 1; i >= 0; i-- {
			sessions += prepared[i].Len()
			prepared[i].Start()
		}
		prepared = nil
	}
	defer start()
	for {
		kind, payload, files, err := p.conn.Recv()
		if err != nil {
			return sessions, err
		}
		switch Kind(kind) {
		case Batch:
			a, err := r.Receive(payload, files)
			if err != nil {
				p.conn.Send(byte(Refused), []byte(err.Error()), nil)
				continue
			}
			prepared = append(prepared, a)
			p.conn.Send(byte(Prepared), nil, nil)
		case Commit:
			if len(prepared) == 0 {
				p.conn.Send(byte(Refused), []byte("nothing to commit"), nil)
				continue
			}
			// Said before the sessions start: the old gateway lets go of
			// them only once it has heard it.
			p.conn.Send(byte(Committed), nil, nil)
			start()
		case Abort:
			for _, a := range prepared {
				a.Discard()
			}
			prepared = nil
			p.conn.Send(byte(Aborted), nil, nil)
		case Registry:
			if err := r.TakeRegistry(payload, files); err != nil {
				p.conn.Send(byte(Refused), []byte(err.Error()), nil)
				continue
			}
			p.conn.Send(byte(Taken), nil, nil)
		case Done:
			p.conn.Send(byte(Serving), nil, nil)
			return sessions, nil
		default:
			closeFiles(files)
		}
	}
}
