package gateway

import (
	"errors"
	"math"
	"slices"
	"sync"
	"time"
)

var (
	errOutboxClosed = errors.New("gateway: player output closed")
	errSlowPlayer   = errors.New("gateway: player is not reading")
)

// outbox is a player's bounded output queue. Any goroutine may put; a
// writer goroutine, started when there is something to write and gone
// when the queue is empty, drains it to the socket. An idle player has
// no writer: at tens of thousands of held sessions its stack would be a
// large part of what each costs.
type outbox struct {
	mu         sync.Mutex
	buf        []byte
	marks      []mark // where compression starts or stops within buf
	max        int32  // bytes; beside the flags, in one word with them
	closed     bool
	closeAfter bool // the writer closes the socket once buf is written
	writing    bool // a writer is running, or has ended the socket
	// While the session moves to another process, no writer runs and
	// everything queued stays, unbounded but for what the backend's stream
	// window lets in: it goes with the session.
	frozen bool
	start  starter       // starts a writer
	room   chan struct{} // cap 1: the writer took what was queued; made by the first put that waits
	// spare is the buffer the writer last wrote and gave back, for the
	// next put while the writer runs: a player reading a burst costs two
	// buffers in turn, not one for each frame of it. It goes when the
	// writer does, so an idle player keeps none.
	spare []byte

	stopped chan struct{} // closed when the writer has stopped for the freeze, which frozen is set for
	wire    []byte        // what a write cut by the freeze left unwritten, as it goes on the wire

	// game is the session's output offset (record.OutOff) that what is
	// queued reaches, set after each put: a take never hands the writer
	// an offset past its bytes. taken is the offset of the last take.
	game, taken uint64
}

// mark records that MCCP2 compression starts (or stops) at offset at of
// the queued bytes.
type mark struct {
	at       int
	compress bool
}

// starter starts an outbox's writer, and writes what the socket takes at
// once. An interface, not a func: a closure would be one more allocation
// that every idle player keeps.
type starter interface {
	startWriter()
	// writeNow writes what of b the player's socket takes without
	// waiting: nothing if the connection's output must go through the
	// writer (compressed, a page's, not a plain socket).
	writeNow(b []byte) int
}

func newOutbox(max int, start starter) *outbox {
	return &outbox{max: int32(min(max, math.MaxInt32)), start: start}
}

// claim reports whether the caller is to start a writer, with o.mu held.
func (o *outbox) claim() bool {
	if o.writing || o.frozen {
		return false
	}
	o.writing = true
	return true
}

// unlock releases o.mu and starts a writer if one was claimed.
func (o *outbox) unlock(start bool) {
	o.mu.Unlock()
	if start {
		o.start.startWriter()
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// put queues b, waiting up to wait for room when the queue is full. An empty
// queue takes b whatever its size, so a large write never waits forever.
func (o *outbox) put(b []byte, wait time.Duration) error {
	var timer *time.Timer
	for {
		o.mu.Lock()
		if o.closed || o.closeAfter {
			o.mu.Unlock()
			return errOutboxClosed
		}
		if o.fitsLocked(b) {
			o.appendLocked(b)
			o.unlock(o.claim())
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		if wait <= 0 {
			o.mu.Unlock()
			return errSlowPlayer
		}
		if o.room == nil {
			o.room = make(chan struct{}, 1)
		}
		room := o.room
		o.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		select {
		case <-room:
		case <-timer.C:
			return errSlowPlayer
		}
	}
}

func (o *outbox) fitsLocked(b []byte) bool {
	return len(o.buf) == 0 || len(o.buf)+len(b) <= int(o.max) || o.frozen
}

func (o *outbox) appendLocked(b []byte) {
	if o.buf == nil && len(b) <= cap(o.spare) {
		o.buf, o.spare = o.spare, nil
	}
	o.buf = append(o.buf, b...)
}

// putNow is put without waiting, for a caller that never waits (the
// link's reading goroutine): it reports false, with nothing queued, if
// there is no room. With nothing queued and no writer running, b goes to
// the socket at once, from the caller, without a writer goroutine started
// for it: what the socket does not take at once, and what is put
// meanwhile, goes to a writer. b is not kept.
func (o *outbox) putNow(b []byte) bool {
	o.mu.Lock()
	if o.closed || o.closeAfter || !o.fitsLocked(b) {
		o.mu.Unlock()
		return false
	}
	if len(o.buf) > 0 || len(o.marks) > 0 || len(o.wire) > 0 || !o.claim() {
		o.appendLocked(b)
		o.unlock(o.claim())
		return true
	}
	o.mu.Unlock()
	n := o.start.writeNow(b)
	o.mu.Lock()
	if rest := b[n:]; len(rest) > 0 {
		// Before whatever was put meanwhile, and the marks with it: a
		// compression that starts after those bytes starts after these.
		// A copy: b is the caller's.
		o.buf = slices.Concat(rest, o.buf)
		for i := range o.marks {
			o.marks[i].at += len(rest)
		}
	}
	switch {
	case o.frozen:
		o.stopLocked() // the move takes what is queued
	case len(o.buf) > 0 || len(o.marks) > 0 || o.closeAfter || o.closed:
		o.unlock(true) // the writer takes the claim over
		return true
	default:
		o.stopLocked()
	}
	o.mu.Unlock()
	return true
}

// putProtocol queues telnet protocol bytes. They may exceed the bound, since
// dropping them would break the protocol, but not twice over: a client that
// keeps asking and never reads gets false, and is to be disconnected.
func (o *outbox) putProtocol(b []byte) bool {
	o.mu.Lock()
	ok := !o.closed && !o.closeAfter && (len(o.buf)+len(b) <= 2*int(o.max) || o.frozen)
	if !ok {
		o.mu.Unlock()
		return false
	}
	o.buf = append(o.buf, b...)
	o.unlock(o.claim())
	return true
}

// putMarked queues protocol bytes, bounded as putProtocol's are, and
// marks that compression starts or stops after them, in one step.
func (o *outbox) putMarked(b []byte, compress bool) bool {
	o.mu.Lock()
	if o.closed || o.closeAfter || len(o.buf)+len(b) > 2*int(o.max) && !o.frozen {
		o.mu.Unlock()
		return false
	}
	o.buf = append(o.buf, b...)
	o.marks = append(o.marks, mark{at: len(o.buf), compress: compress})
	o.unlock(o.claim())
	return true
}

// reached records that what is queued reaches the session's output offset
// game.
func (o *outbox) reached(game uint64) {
	o.mu.Lock()
	o.game = game
	o.mu.Unlock()
}

// takenUpTo is the output offset of what the writer took last.
func (o *outbox) takenUpTo() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.taken
}

// mark records that compression starts or stops after what is queued.
func (o *outbox) mark(compress bool) {
	o.mu.Lock()
	o.marks = append(o.marks, mark{at: len(o.buf), compress: compress})
	o.unlock(o.claim())
}

// finish asks the writer to close the socket after what is queued.
func (o *outbox) finish() {
	o.mu.Lock()
	o.closeAfter = true
	o.unlock(o.claim())
}

// close drops what is queued and wakes everybody; a writer ends the socket.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.buf = nil
	room := o.room
	o.unlock(o.claim())
	signal(room)
}

// take hands the writer what is queued and its marks, leaving the queue
// without a buffer until the next put, and reports whether the socket
// is to be closed after writing it (closeAfter) or at once (closed). With
// nothing to do it returns ok false, and the writer is to end.
func (o *outbox) take() (b []byte, marks []mark, closeAfter, closed, ok bool) {
	o.mu.Lock()
	if o.frozen || len(o.buf) == 0 && len(o.marks) == 0 && len(o.wire) == 0 && !o.closeAfter && !o.closed {
		o.stopLocked()
		o.mu.Unlock()
		return nil, nil, false, false, false
	}
	b, o.buf = o.buf, nil
	marks, o.marks = o.marks, nil
	closeAfter, closed = o.closeAfter, o.closed
	o.taken = o.game
	room := o.room
	o.mu.Unlock()
	signal(room)
	return b, marks, closeAfter, closed, true
}

// recycle gives back a buffer that take handed the writer, once it is
// written and nothing refers to it, for a put while the writer runs.
func (o *outbox) recycle(b []byte) {
	if cap(b) > 2*int(o.max) {
		return
	}
	o.mu.Lock()
	if o.writing && o.spare == nil {
		o.spare = b[:0]
	}
	o.mu.Unlock()
}

// stopLocked records that the writer has ended.
func (o *outbox) stopLocked() {
	o.spare = nil
	o.writing = false
	if o.stopped != nil {
		close(o.stopped)
		o.stopped = nil
	}
}

// freeze stops writing for a move: the returned channel is closed once no
// writer runs. A writer blocked in a write is to be cut short by the
// caller (a write deadline); it then keeps what it did not write (cut).
func (o *outbox) freeze() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.frozen = true
	c := make(chan struct{})
	if o.writing {
		o.stopped = c
	} else {
		close(c)
	}
	return c
}

func (o *outbox) isFrozen() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.frozen
}

// cut is the writer's last act in a freeze: rest is what the cut write did
// not get out, already encoded for the wire.
func (o *outbox) cut(rest []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.wire = append(rest[:len(rest):len(rest)], o.wire...)
	o.stopLocked()
}

// thaw lets output flow again after a move that did not happen.
func (o *outbox) thaw() {
	o.mu.Lock()
	o.frozen = false
	start := (len(o.buf) > 0 || len(o.marks) > 0 || len(o.wire) > 0 || o.closeAfter || o.closed) && o.claim()
	o.unlock(start)
}

// takeWire hands the writer the bytes a move cut short, to go out first.
func (o *outbox) takeWire() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.wire
	o.wire = nil
	return w
}

// outboxState is what a player's queued output carries to another process.
type outboxState struct {
	Buf   []byte
	Marks []markState
	Wire  []byte
}

type markState struct {
	At       int
	Compress bool
}

// save returns the frozen outbox's contents.
func (o *outbox) save() outboxState {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := outboxState{Buf: o.buf, Wire: o.wire}
	for _, m := range o.marks {
		st.Marks = append(st.Marks, markState{At: m.at, Compress: m.compress})
	}
	return st
}

// restore fills a new outbox with what another process had queued, and
// starts a writer if there is anything to write.
func (o *outbox) restore(st outboxState) {
	o.mu.Lock()
	o.buf, o.wire = st.Buf, st.Wire
	for _, m := range st.Marks {
		o.marks = append(o.marks, mark{at: min(max(m.At, 0), len(o.buf)), compress: m.Compress})
	}
	o.unlock((len(o.buf) > 0 || len(o.marks) > 0 || len(o.wire) > 0) && o.claim())
}
