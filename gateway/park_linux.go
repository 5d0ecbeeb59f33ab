package gateway

import (
	"errors"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// parker waits for idle players' sockets to become readable without a
// goroutine each: a held player types now and then, and a reader goroutine
// blocked in Read for every idle player is half of what a session costs.
// A reader that has read all there was parks its session here and returns;
// the socket in the parker's epoll set, once readable (input, or the player
// leaving), gets a new reader.
type parker struct {
	epfd   int
	stopfd int // an eventfd in the set, written to stop

	mu    sync.Mutex
	next  int32
	byTok map[int32]*session
	reg   map[*session]*parked
}

// parked is a session's socket in the epoll set: armed until its one-shot
// event fires, then left in the set, disarmed, for the next park.
type parked struct {
	fd    int
	tok   int32
	armed bool
}

func newParker() *parker {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil // readers block in Read instead
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err == nil {
		err = unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, stop, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: stopToken})
	}
	if err != nil {
		unix.Close(fd)
		return nil
	}
	return &parker{epfd: fd, stopfd: stop, byTok: make(map[int32]*session), reg: make(map[*session]*parked)}
}

// selfParking is a connection that reads its own socket above the
// kernel's (a browser's WebSocket, gateway/web's Conn) and knows when it
// holds nothing the socket's readiness would not announce: ParkFD gives
// its socket then, or -1 when not now, and ok false when it never can.
// Parked, once the parker has the socket, hands it wake, which the
// connection calls when it needs its reader for anything else (a new
// socket, its end); false when it changed since ParkFD.
//
// Its socket may close while parked (the page's WebSocket breaks, or is
// replaced), and its number go to another player: the parker never
// deletes such a socket from the set by number, since the set forgot it
// when it closed.
type selfParking interface {
	ParkFD() (fd int, ok bool)
	Parked(fd int, wake func()) bool
}

// errNotNow is park's answer for a self-parking connection that has
// something for its reader already.
var errNotNow = errors.New("gateway: the connection cannot park now")

// parkable returns the descriptor of a connection that can park: a plain
// socket, which buffers nothing above the kernel's (TLS keeps records, a
// PROXY reader keeps bytes the kernel no longer has), or a self-parking
// connection (then fd may be -1: it can, but not now).
func parkable(c net.Conn) (fd int, ok bool) {
	if sp, is := c.(selfParking); is {
		return sp.ParkFD()
	}
	sc := plainSocket(c)
	if sc == nil {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	fd = -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd, fd >= 0
}

// park arms the session's socket for one readiness event.
func (p *parker) park(s *session, fd int) error {
	if sp, ok := s.conn.(selfParking); ok {
		return p.parkSelf(s, sp, fd)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.reg[s]
	op := unix.EPOLL_CTL_MOD
	if r == nil || r.fd != fd {
		if r != nil {
			unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, r.fd, nil)
			delete(p.byTok, r.tok)
		}
		p.next++
		r = &parked{fd: fd, tok: p.next}
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: r.tok}
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		return err
	}
	r.armed = true
	p.reg[s], p.byTok[r.tok] = r, s
	return nil
}

// parkSelf parks a self-parking connection's socket. A registration is
// made first, unarmed, so that a wake from the connection between Parked
// and the arming is not lost: it takes the registration, and the arming
// finds it gone.
func (p *parker) parkSelf(s *session, sp selfParking, fd int) error {
	if fd < 0 {
		return errNotNow
	}
	p.mu.Lock()
	if old := p.reg[s]; old != nil {
		delete(p.byTok, old.tok) // its socket, if closed, left the set by itself
	}
	p.next++
	r := &parked{fd: fd, tok: p.next}
	p.reg[s], p.byTok[r.tok] = r, s
	p.mu.Unlock()
	if !sp.Parked(fd, func() { p.kick(s, r) }) {
		p.forget(s, r)
		return errNotNow
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reg[s] != r {
		return errNotNow // woken already
	}
	// The socket may be in the set from its last park, disarmed, with
	// the token it had then.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: r.tok}
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	if errors.Is(err, unix.ENOENT) {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		delete(p.reg, s)
		delete(p.byTok, r.tok)
		return err
	}
	r.armed = true
	return nil
}

// kick is a self-parking connection's wake for registration r: the
// session gets a reader if r was armed.
func (p *parker) kick(s *session, r *parked) {
	p.mu.Lock()
	if p.reg[s] != r {
		p.mu.Unlock()
		return
	}
	delete(p.reg, s)
	delete(p.byTok, r.tok)
	armed := r.armed
	p.mu.Unlock()
	if armed {
		s.wake()
	}
}

// forget drops registration r, unarmed.
func (p *parker) forget(s *session, r *parked) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reg[s] == r {
		delete(p.reg, s)
		delete(p.byTok, r.tok)
	}
}

// unpark takes the session's socket out of the set, before the socket is
// closed or passed on. It reports whether it was armed: no reader was
// started for it.
func (p *parker) unpark(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.reg[s]
	if r == nil {
		return false
	}
	if _, self := s.conn.(selfParking); !self {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, r.fd, nil)
	}
	delete(p.reg, s)
	delete(p.byTok, r.tok)
	return r.armed
}

// take returns the session an event names, disarmed; nil when it was
// unparked meanwhile.
func (p *parker) take(tok int32) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.byTok[tok]
	if s == nil || !p.reg[s].armed {
		return nil
	}
	p.reg[s].armed = false
	return s
}

// stopToken is the event of the parker's own eventfd, which stop writes;
// the sessions' tokens start at 1.
const stopToken = 0

// run wakes the sessions whose sockets became readable until stop.
func (p *parker) run(wake func(*session)) {
	defer unix.Close(p.epfd)
	defer unix.Close(p.stopfd)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			if ev.Fd == stopToken {
				return
			}
			// The socket was disarmed by its one-shot event; a session
			// unparked meanwhile is not found.
			if s := p.take(ev.Fd); s != nil {
				wake(s)
			}
		}
	}
}

// stop ends run.
func (p *parker) stop() {
	unix.Write(p.stopfd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}
