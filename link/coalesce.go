package link

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// coalescedConn batches yamux's writes to the link connection.
//
// yamux writes every frame as two writes, its 12-byte header and then its
// body, and waits for each before taking the next frame: with TCP_NODELAY
// that is two packets and two system calls per frame, and when thousands
// of sessions are resumed or sent a line at once, the send loop spends its
// time in them. Here a data frame's header is held back until its body
// comes, and whole frames are queued for a writer goroutine that sends
// everything queued in one write: one frame alone goes out at once, and
// frames that come while a write is under way go out together in the
// next. Only yamux's send loop writes to the connection, so the header and
// its body always come in that order, and a frame is never split between
// two writes.
type coalescedConn struct {
	net.Conn
	hdr    [yamuxHeaderLen]byte
	held   bool
	broken func()
	once   sync.Once
	// For keepalive: reads that brought something, and writes of at
	// least drainedWrite that went out: a peer that takes those in is
	// reading, or its kernel is (see deafWait).
	reads   atomic.Uint64
	drained atomic.Uint64

	mu       sync.Mutex
	cond     sync.Cond // the writer took the queue, or stopped
	queue    []byte
	spare    []byte
	writing  bool  // the writer goroutine runs
	err      error // the first write error; every later write fails with it
	closed   bool
	closeErr error
}

const (
	yamuxHeaderLen = 12
	yamuxTypeData  = 0

	// maxQueued bounds what waits for the writer; yamux's send loop waits
	// beyond it, which is how a link that does not drain pushes back.
	maxQueued = 1 << 20
	// keepSpare bounds the buffer kept for the next batch: a busy link
	// queues up to maxQueued between writes, and a buffer grown to that
	// and dropped after each write is most of what a busy gateway
	// allocates. A link keeps two at most.
	keepSpare = 2 * maxQueued
	// closeFlush bounds how long Close waits for queued frames to go out.
	closeFlush = time.Second
	// drainedWrite is the least write that shows keepalive the peer is
	// reading: more than the pings and window updates of an idle link,
	// which a peer's kernel takes in whether the peer reads or not.
	// drainPiece is the most written at once, so that each piece shows it.
	drainedWrite = 4 << 10
	drainPiece   = 64 << 10
)

// Coalesce wraps a link connection before yamux takes it. broken (if not
// nil) runs once, before yamux learns of the end: when a read or a write
// fails, or when yamux closes the connection.
//
// That order matters: yamux v0.1.2 marks a dead session shut down before it
// closes its streams, and in between every goroutine blocked in Stream.Read
// spins. With thousands of sessions the spinners starve the goroutine that
// would close the streams, for minutes. broken lets the owner wake its
// readers with a deadline and wait for them first. A session yamux ends
// itself (its keepalive fails, a frame breaks its rules) or its owner
// closes is marked shut down just before the connection is closed: broken
// runs then, on the goroutine already running, rather than once the
// receive goroutine, among the spinners, is scheduled to see its read fail.
func Coalesce(c net.Conn, broken func()) net.Conn { return newCoalesced(c, broken) }

func newCoalesced(c net.Conn, broken func()) *coalescedConn {
	cc := &coalescedConn{Conn: c, broken: broken}
	cc.cond.L = &cc.mu
	return cc
}

func (c *coalescedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	if err != nil && c.broken != nil {
		c.once.Do(c.broken)
	}
	return n, err
}

func (c *coalescedConn) Write(p []byte) (int, error) {
	n, err := c.write1(p)
	if err != nil && c.broken != nil {
		// A peer that dies while frames go out (a backend killed as it
		// hands its players over) fails a write before any read: yamux
		// then shuts the session down at once, and the readers must be
		// woken first here too.
		c.once.Do(c.broken)
	}
	return n, err
}

func (c *coalescedConn) write1(p []byte) (int, error) {
	if c.held {
		c.held = false
		if err := c.enqueue(c.hdr[:], p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == yamuxHeaderLen && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(c.hdr[:], p)
		c.held = true
		return len(p), nil
	}
	if err := c.enqueue(p, nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// enqueue queues one frame, a and b together, waiting while the queue is
// full, and starts the writer if it is not running.
func (c *coalescedConn) enqueue(a, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) >= maxQueued && c.err == nil && !c.closed {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return c.err
	case c.closed:
		return net.ErrClosed
	}
	c.queue = append(append(c.queue, a...), b...)
	if !c.writing {
		c.writing = true
		go c.write()
	}
	return nil
}

// write sends what is queued until the queue is empty, then returns.
func (c *coalescedConn) write() {
	c.mu.Lock()
	for len(c.queue) > 0 && c.err == nil {
		b := c.queue
		c.queue = c.spare[:0]
		c.spare = nil
		c.cond.Broadcast()
		c.mu.Unlock()
		err := c.writePieces(b)
		c.mu.Lock()
		if err != nil && c.err == nil {
			c.err = err
		}
		if cap(b) <= keepSpare {
			c.spare = b[:0]
		}
	}
	c.writing = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

// writePieces writes b, drainPiece at a time, and counts each piece
// written: a batch of a megabyte to a peer that reads slowly takes longer
// than keepalive's wait, and the peer is taking it in all along.
func (c *coalescedConn) writePieces(b []byte) error {
	for len(b) > 0 {
		n := min(len(b), drainPiece)
		if _, err := c.Conn.Write(b[:n]); err != nil {
			return err
		}
		if n >= drainedWrite {
			c.drained.Add(1)
		}
		b = b[n:]
	}
	return nil
}

// Close runs broken, sends what is queued, waiting at most closeFlush, and
// closes the connection: yamux closes it right after its last frames, a
// Goodbye among them.
func (c *coalescedConn) Close() error {
	if c.broken != nil {
		c.once.Do(c.broken)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.closeErr
	}
	c.closed = true
	if c.writing {
		c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
		for c.writing {
			c.cond.Wait()
		}
	}
	c.closeErr = c.Conn.Close()
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.closeErr
}
