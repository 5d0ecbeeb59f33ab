package link

import (
	"bufio"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// Stream is one stream of a link: a net.Conn-like byte stream, with
// deadlines, whose Close half-closes it (the peer reads io.EOF after the
// last byte written). It has one reader at a time, as every stream of
// holdfast's has; writes may come from several goroutines.
type Stream struct {
	m  *Mux
	id uint32

	wmu sync.Mutex // one Write at a time, so that its pieces go in order

	mu    sync.Mutex
	state uint8
	buf   []byte // received, unread from off
	off   int
	// recvWindow is how much more the peer may send; sendWindow how much
	// more may be sent to it.
	recvWindow, sendWindow uint32
	readDeadline           time.Time
	writeDeadline          time.Time
	closeTimer             *time.Timer

	// deliver, if set, takes frames from the link's reading goroutine
	// while idle: the stream's reader waits for a frame's first byte with
	// nothing buffered. delivering is set while it has some.
	deliver          Deliverer
	idle, delivering bool

	readable, writable chan struct{} // cap 1: something changed for a waiting Read, Write
}

// Stream states, as bits.
const (
	stAckDue       = 1 << iota // opened by the peer, not acknowledged yet
	stLocalClosed              // Close was called
	stRemoteClosed             // the peer closed its side
	stReset                    // reset by the peer, or forgotten after a close
)

func newStream(m *Mux, id uint32, state uint8) *Stream {
	return &Stream{
		m:          m,
		id:         id,
		state:      state,
		recvWindow: streamWindow,
		sendWindow: streamWindow,
		readable:   make(chan struct{}, 1),
		writable:   make(chan struct{}, 1),
	}
}

// notify wakes a waiting Read and Write to look again.
func (s *Stream) notify() {
	wake(s.readable)
	wake(s.writable)
}

// wake signals c, a channel of capacity 1, unless a signal waits already.
func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ackFlagLocked returns the ACK flag if the stream still owes the peer its
// acknowledgement, which then goes with the frame the caller sends.
func (s *Stream) ackFlagLocked() uint16 {
	if s.state&stAckDue == 0 {
		return 0
	}
	s.state &^= stAckDue
	return flagACK
}

// acknowledge tells the peer its stream was accepted.
func (s *Stream) acknowledge() {
	s.mu.Lock()
	f := s.ackFlagLocked()
	s.mu.Unlock()
	if f != 0 {
		s.m.w.queueControl(makeHeader(muxWindow, f, s.id, 0))
	}
}

// Read reads what the peer sent. It returns io.EOF once the peer has
// closed its side (or the link has ended) and nothing is left,
// ErrStreamReset if the peer reset it, and ErrTimeout once the read
// deadline passes. Closing this side does not end reading.
func (s *Stream) Read(p []byte) (int, error) { return s.read(p, false) }

func (s *Stream) readFrameStart(p []byte) (int, error) { return s.read(p, true) }

// read is Read; atFrame says that the caller reads a frame's first byte,
// so that while it waits, whole frames may go to the stream's Deliverer.
func (s *Stream) read(p []byte, atFrame bool) (int, error) {
	s.mu.Lock()
	for {
		if n := len(s.buf) - s.off; n > 0 {
			n = copy(p, s.buf[s.off:])
			s.off += n
			if s.off == len(s.buf) {
				s.buf, s.off = s.buf[:0], 0
			}
			s.updateWindowLocked()
			return n, nil
		}
		switch {
		case s.state&stReset != 0:
			s.mu.Unlock()
			return 0, ErrStreamReset
		case s.state&stRemoteClosed != 0 || s.m.IsClosed():
			s.mu.Unlock()
			return 0, io.EOF
		}
		s.idle = atFrame
		if err := s.wait(s.readable, s.readDeadline); err != nil {
			s.mu.Lock()
			s.leaveIdleLocked()
			s.mu.Unlock()
			return 0, err
		}
		s.leaveIdleLocked()
	}
}

// leaveIdleLocked ends a Read's wait, with s.mu held: frames being
// delivered meanwhile are delivered first, so that whatever the reader
// does next comes after them.
func (s *Stream) leaveIdleLocked() {
	s.idle = false
	for s.delivering {
		s.mu.Unlock()
		<-s.readable // deliverFrom wakes a reader no longer idle
		s.mu.Lock()
	}
}

// wait waits, with s.mu held, for ch or the deadline; it returns with
// s.mu held unless it returns an error.
func (s *Stream) wait(ch chan struct{}, deadline time.Time) error {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			s.mu.Unlock()
			return ErrTimeout
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	s.mu.Unlock()
	select {
	case <-ch:
	case <-s.m.done:
	case <-timeout:
		return ErrTimeout
	}
	s.mu.Lock()
	return nil
}

// updateWindowLocked gives the peer back the window the reader has freed,
// once that is half the window or more (or an acknowledgement is due);
// it releases s.mu.
func (s *Stream) updateWindowLocked() {
	delta := streamWindow - uint32(len(s.buf)-s.off) - s.recvWindow
	f := s.ackFlagLocked()
	if delta < streamWindow/2 && f == 0 || s.state&(stReset|stRemoteClosed) != 0 && f == 0 {
		s.mu.Unlock()
		return
	}
	s.recvWindow += delta
	s.mu.Unlock()
	s.m.w.queueControl(makeHeader(muxWindow, f, s.id, delta))
}

// Write writes p, as much at a time as the peer's window allows. It
// returns ErrStreamClosed after Close, ErrStreamReset if the peer reset
// the stream, ErrSessionShutdown once the link has ended, and ErrTimeout
// once the write deadline passes.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	total := 0
	for len(p) > 0 {
		s.mu.Lock()
		for {
			err := s.writeErrLocked()
			if err == nil && s.m.IsClosed() {
				err = ErrSessionShutdown
			}
			if err != nil {
				s.mu.Unlock()
				return total, err
			}
			if s.sendWindow > 0 {
				break
			}
			if err := s.wait(s.writable, s.writeDeadline); err != nil {
				return total, err
			}
		}
		n := min(uint32(len(p)), s.sendWindow)
		s.sendWindow -= n
		f := s.ackFlagLocked()
		s.mu.Unlock()
		h := makeHeader(muxData, f, s.id, n)
		if err := s.m.w.queue(h.bytes(), p[:n], s); err != nil {
			s.unsent(n, f, total > 0 && errors.Is(err, ErrConnectionWriteTimeout))
			return total, err
		}
		total += int(n)
		p = p[n:]
	}
	return total, nil
}

// writeErrLocked returns why nothing more may be written to the stream,
// if anything: it was reset, or closed here.
func (s *Stream) writeErrLocked() error {
	switch {
	case s.state&stReset != 0:
		return ErrStreamReset
	case s.state&stLocalClosed != 0:
		return ErrStreamClosed
	}
	return nil
}

// unsent takes back the window of a piece that could not be queued, and
// the acknowledgement it carried. A write cut after some of its pieces
// went resets the stream: the peer would read a frame of the caller's cut
// short, and whatever followed it as the rest.
func (s *Stream) unsent(n uint32, ack uint16, cut bool) {
	s.mu.Lock()
	s.sendWindow += n
	if ack != 0 {
		s.state |= stAckDue
	}
	if !cut || s.state&stReset != 0 {
		s.mu.Unlock()
		return
	}
	s.resetLocked()
}

// resetLocked resets the stream here: its reads and writes end, it is
// forgotten, and the peer is told to forget it too. It releases s.mu.
func (s *Stream) resetLocked() {
	s.state |= stReset
	s.buf, s.off = nil, 0
	if s.closeTimer != nil {
		s.closeTimer.Stop()
		s.closeTimer = nil
	}
	s.mu.Unlock()
	s.notify()
	s.m.forget(s.id)
	s.m.w.queueControl(makeHeader(muxWindow, flagRST, s.id, 0))
}

// Close closes the stream's sending side: the peer reads io.EOF after
// what was written. A stream the peer has not closed too within
// streamCloseTimeout is reset and forgotten.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.state&(stLocalClosed|stReset) != 0 {
		s.mu.Unlock()
		return nil
	}
	s.state |= stLocalClosed
	f := flagFIN | s.ackFlagLocked()
	done := s.state&stRemoteClosed != 0
	if !done && !s.m.IsClosed() {
		s.closeTimer = time.AfterFunc(streamCloseTimeout, s.closeTimedOut)
	}
	s.mu.Unlock()
	s.notify()
	err := s.m.w.queueControl(makeHeader(muxWindow, f, s.id, 0))
	if done {
		s.m.forget(s.id)
	}
	if errors.Is(err, ErrSessionShutdown) {
		return nil
	}
	return err
}

// closeTimedOut forgets a stream whose peer did not close it after this
// side did, and resets it so that the peer forgets it too.
func (s *Stream) closeTimedOut() {
	s.mu.Lock()
	if s.state&stReset != 0 || s.state&stRemoteClosed != 0 {
		s.mu.Unlock()
		return
	}
	s.resetLocked()
}

// flags takes the flags of a frame from the peer.
func (s *Stream) flags(f uint16) {
	if f&(flagFIN|flagRST) == 0 {
		return
	}
	s.mu.Lock()
	forget := false
	if f&flagFIN != 0 && s.state&stRemoteClosed == 0 {
		s.state |= stRemoteClosed
		forget = s.state&stLocalClosed != 0
	}
	if f&flagRST != 0 {
		s.state |= stReset
		forget = true
	}
	if forget && s.closeTimer != nil {
		s.closeTimer.Stop()
		s.closeTimer = nil
	}
	s.mu.Unlock()
	s.notify()
	if forget {
		s.m.forget(s.id)
	}
}

// grow takes a window update: the peer may be sent n more bytes.
func (s *Stream) grow(n uint32) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	s.sendWindow += n
	s.mu.Unlock()
	wake(s.writable)
}

// fill reads a data frame's body of n bytes from br into the stream. A
// body larger than the window the peer was given breaks the framing.
func (s *Stream) fill(br *bufio.Reader, n uint32) error {
	s.mu.Lock()
	if n > s.recvWindow {
		s.mu.Unlock()
		return errors.Join(errProtocol, errors.New("stream window exceeded"))
	}
	keep := s.state&stReset == 0
	if keep && s.idle && s.deliver != nil && s.off == len(s.buf) && int(n) <= br.Size() {
		// The whole body first, the reader held only after: a reader
		// whose deadline passes while the body is on its way returns.
		s.mu.Unlock()
		if _, err := br.Peek(int(n)); err != nil {
			return err
		}
		s.mu.Lock()
		keep = s.state&stReset == 0
		if keep && s.idle && s.off == len(s.buf) {
			s.delivering = true
			s.mu.Unlock()
			s.deliverFrom(br, n)
			return nil
		}
	}
	if keep {
		s.makeRoomLocked(int(n))
	}
	s.mu.Unlock()
	// The window shrinks as each piece lands, not before: a Read between
	// two pieces gives back what it took, and the window must still count
	// the pieces to come.
	for n > 0 {
		p, err := br.Peek(min(int(n), br.Size()))
		if len(p) == 0 {
			return err
		}
		s.mu.Lock()
		s.recvWindow -= uint32(len(p))
		if keep {
			s.buf = append(s.buf, p...)
		}
		s.mu.Unlock()
		br.Discard(len(p))
		n -= uint32(len(p))
	}
	if keep {
		wake(s.readable)
	}
	return nil
}

// deliverFrom hands the whole frames at the start of a data frame's body
// of n bytes, buffered in br, to the stream's Deliverer, as many as it takes, and
// buffers the rest for the reader. The reader is not woken if nothing is
// left for it: a line of output goes from the link's reading goroutine to
// the player's queue with no goroutine between.
func (s *Stream) deliverFrom(br *bufio.Reader, n uint32) {
	p, _ := br.Peek(int(n)) // buffered already
	rest := s.m.deliverFrames(s.deliver, p, br.Buffered()-len(p))
	s.mu.Lock()
	s.delivering = false
	s.recvWindow -= n
	if s.state&stReset != 0 {
		rest = nil
	}
	if len(rest) > 0 {
		s.makeRoomLocked(len(rest))
		s.buf = append(s.buf, rest...)
	}
	br.Discard(int(n))
	woken := len(rest) > 0 || !s.idle
	s.updateWindowLocked()
	if woken {
		wake(s.readable)
	}
}

// makeRoomLocked makes room for n more bytes, moving what is unread to the
// buffer's start if that saves growing it: the buffer never holds more
// than the window, and what was read.
func (s *Stream) makeRoomLocked(n int) {
	if len(s.buf)+n <= cap(s.buf) {
		return
	}
	if s.off > 0 {
		s.buf = s.buf[:copy(s.buf, s.buf[s.off:])]
		s.off = 0
	}
	s.buf = slices.Grow(s.buf, n)
}

// Shrink lets go of the stream's receive buffer if nothing waits in it: a
// stream that had a burst keeps a buffer that size for the next.
func (s *Stream) Shrink() {
	s.mu.Lock()
	if s.off == len(s.buf) {
		s.buf, s.off = nil, 0
	}
	s.mu.Unlock()
}

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the time after which a Read returns ErrTimeout.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDeadline = t
	s.mu.Unlock()
	wake(s.readable)
	return nil
}

// SetWriteDeadline sets the time after which a Write waiting for the
// peer's window returns ErrTimeout.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.writeDeadline = t
	s.mu.Unlock()
	wake(s.writable)
	return nil
}

// LocalAddr returns the link's local address.
func (s *Stream) LocalAddr() net.Addr { return s.m.conn.LocalAddr() }

// RemoteAddr returns the link's remote address.
func (s *Stream) RemoteAddr() net.Addr { return s.m.conn.RemoteAddr() }

// A Deliverer takes a stream's frames from the link's reading goroutine
// itself, while the stream's reader waits for its next frame (see
// Reader) with nothing left to read: whatever it can handle without
// waiting for anything, it handles there, and the reader is not woken for
// it. Deliver reports whether it handled the frame; a frame it declines,
// and every frame after it, goes to the reader as usual. payload is valid
// only during the call; more says that more than a small tail has been
// read from the link behind the frame (whose work is best left to other
// goroutines while the link reads on); scratch is a buffer the callee
// may use, and keep in *scratch, for the next call. The reader does not
// return from its Read while a Deliver runs.
type Deliverer interface {
	Deliver(typ FrameType, payload []byte, more bool, scratch *[]byte) bool
}

// SetDeliverer gives the stream's frames to d while its reader waits.
func (s *Stream) SetDeliverer(d Deliverer) {
	s.mu.Lock()
	s.deliver = d
	s.mu.Unlock()
}
