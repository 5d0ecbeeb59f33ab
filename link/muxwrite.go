package link

import (
	"runtime"
	"sync"
	"time"
)

// muxWriter sends a link's frames. A write queues its frame, header and
// body together, and returns; the link's writer goroutine, woken when
// frames wait, sends everything queued in one write: one frame alone goes
// out at once, and frames that come while a write is under way go out
// together in the next. The writer lasts as long as the link: one started
// for each batch would grow its stack through the TLS write each time, a
// tenth of a busy gateway's processor time. When thousands of sessions are resumed or
// sent a line at once, that is a few large writes rather than a system
// call (and, with TCP_NODELAY, a packet) for each frame.
type muxWriter struct {
	m *Mux

	mu      sync.Mutex
	pending []byte
	spare   []byte
	room    chan struct{} // closed when the writer takes the queue; made by the first write that waits
	kick    chan struct{} // cap 1: frames wait for the writer
	stopped chan struct{} // closed when the writer returns
	writing bool          // the writer has been kicked, or writes
	err     error         // the first write error; every later write fails with it
	closed  bool
}

const (
	// maxQueued bounds what waits for the writer; a write waits beyond
	// it, which is how a link that does not drain pushes back.
	maxQueued = 1 << 20
	// maxQueuedNow bounds what the frames that cannot wait (the answers
	// the reading goroutine sends: pings', resets) may add beyond it (and
	// beyond the largest data frame a write that found room added): past
	// that, a peer that sends and does not read gets no answers.
	maxQueuedNow = maxQueued + streamWindow + muxHeaderLen + 64<<10
	// maxQueuedControl bounds what the streams' control frames may add:
	// far beyond what any peer that reads causes.
	maxQueuedControl = maxQueuedNow + 16<<20
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

func (w *muxWriter) init(m *Mux) {
	w.m = m
	w.kick = make(chan struct{}, 1)
	w.stopped = make(chan struct{})
	go w.run()
}

// queue queues a frame, a and b together, waiting while the queue is
// full, for at most the link's writeWait. A piece of st's data (st not
// nil) is refused if st was closed or reset while it waited for room: its
// close has gone, and data after it would reach a peer that has read the
// stream's end.
func (w *muxWriter) queue(a, b []byte, st *Stream) error {
	w.mu.Lock()
	var t *time.Timer
	for len(w.pending) >= maxQueued && w.err == nil && !w.closed {
		if t == nil {
			t = time.NewTimer(w.m.writeWait)
			defer t.Stop()
		}
		if w.room == nil {
			w.room = make(chan struct{})
		}
		room := w.room
		w.mu.Unlock()
		select {
		case <-room:
		case <-t.C:
			return ErrConnectionWriteTimeout
		}
		w.mu.Lock()
	}
	if st != nil && w.err == nil && !w.closed {
		st.mu.Lock()
		err := st.writeErrLocked()
		st.mu.Unlock()
		if err != nil {
			w.mu.Unlock()
			return err
		}
	}
	return w.appendLocked(a, b)
}

// queueNow queues a frame without waiting, unless the queue is far past
// full: then the frame is dropped. The reading goroutine's answers go
// this way: it must never wait for the writer, whose peer may be waiting
// for it.
func (w *muxWriter) queueNow(a, b []byte) error {
	w.mu.Lock()
	if len(w.pending) >= maxQueuedNow && w.err == nil && !w.closed {
		w.mu.Unlock()
		return ErrConnectionWriteTimeout
	}
	return w.appendLocked(a, b)
}

// queueControl queues a stream's window update, acknowledgement, close or
// reset without waiting, and never drops it: losing one would hang the
// stream. Each is one header, at most one for each half window the peer
// sent, or two for each stream it opens; a peer that opens streams by
// the million and takes in nothing grows the queue past maxQueuedControl,
// and the link ends.
func (w *muxWriter) queueControl(h muxHeader) error {
	w.mu.Lock()
	if len(w.pending) >= maxQueuedControl && w.err == nil && !w.closed {
		w.mu.Unlock()
		// Not here: the caller may hold locks that broken takes.
		go w.m.shut(ErrConnectionWriteTimeout)
		return ErrConnectionWriteTimeout
	}
	return w.appendLocked(h.bytes(), nil)
}

// appendLocked queues a frame and starts the writer if it is not running;
// it releases w.mu.
func (w *muxWriter) appendLocked(a, b []byte) error {
	switch {
	case w.err != nil:
		err := w.err
		w.mu.Unlock()
		return err
	case w.closed:
		w.mu.Unlock()
		return ErrSessionShutdown
	}
	w.pending = append(append(w.pending, a...), b...)
	kick := !w.writing
	w.writing = true
	w.mu.Unlock()
	if kick {
		w.kick <- struct{}{}
	}
	return nil
}

// run is the writer: each time it is kicked it sends what is queued until
// the queue is empty. It returns once the link is closed and what was
// queued has gone, or a write fails.
func (w *muxWriter) run() {
	more, err := true, error(nil)
	for more {
		<-w.kick
		// The goroutines that are ready to run (other sessions' readers
		// and applications, answering at the same moment) add their
		// frames first: one write for all of them, not one each.
		runtime.Gosched()
		more, err = w.write()
	}
	close(w.stopped)
	if err != nil {
		// A peer that dies while frames go out (a backend killed as it
		// hands its players over) fails a write before any read.
		w.m.shut(err)
	}
}

// write sends what is queued until the queue is empty; it reports whether
// the writer goes on, and the write's error.
func (w *muxWriter) write() (bool, error) {
	w.mu.Lock()
	var err error
	for len(w.pending) > 0 && w.err == nil {
		b := w.pending
		w.pending = w.spare[:0]
		w.spare = nil
		if w.room != nil {
			close(w.room)
			w.room = nil
		}
		w.mu.Unlock()
		err = w.writePieces(b)
		if err != nil {
			// broken runs before any stream can learn of the failure
			// from a write of its own (see newMux).
			w.m.runBroken()
		}
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = err
		}
		if cap(b) <= keepSpare {
			w.spare = b[:0]
		}
	}
	w.writing = false
	if w.room != nil {
		close(w.room)
		w.room = nil
	}
	more := w.err == nil && !w.closed
	w.mu.Unlock()
	return more, err
}

// writePieces writes b, drainPiece at a time, and counts each piece
// written: a batch of a megabyte to a peer that reads slowly takes longer
// than keepalive's wait, and the peer is taking it in all along.
func (w *muxWriter) writePieces(b []byte) error {
	for len(b) > 0 {
		n := min(len(b), drainPiece)
		if _, err := w.m.conn.Write(b[:n]); err != nil {
			return err
		}
		if n >= drainedWrite {
			w.m.drained.Add(1)
		}
		b = b[n:]
	}
	return nil
}

// close sends what is queued, waiting at most closeFlush, and closes the
// connection: a link closed here goes right after its last frames, a
// Goodbye among them.
func (w *muxWriter) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	if w.room != nil {
		close(w.room)
		w.room = nil
	}
	if w.writing {
		w.m.conn.SetWriteDeadline(time.Now().Add(closeFlush))
	} else {
		w.writing = true
		w.kick <- struct{}{} // to find the link closed
	}
	w.mu.Unlock()
	<-w.stopped
	w.m.conn.Close()
}
