package link

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Mux is one end of a link: many streams over one connection, in yamux's
// framing (see muxheader.go).
//
// It is the link's own rather than the yamux library's because of what a
// line costs on the way through: the library hands every frame written to
// its send goroutine and waits for it, and that goroutine hands it on to
// a writer. Here a write queues its frame itself and returns; the link's
// one writer goroutine sends all that is queued in one write (see
// muxwrite.go). And a link that ends wakes every stream's reader and
// writer at once: nothing waits on a stream of a link that is gone.
//
// One goroutine reads the connection and hands each stream its bytes; it
// never waits for a stream, so a stream whose reader is slow holds up no
// other: the window (streamWindow) bounds what a stream's reader has not
// taken, and the peer waits for its window updates.
type Mux struct {
	conn   net.Conn
	log    *zap.Logger
	broken func()
	once   sync.Once // runs broken
	// writeWait bounds how long a write waits for room in the queue, and
	// a ping for its answer.
	writeWait time.Duration

	// For keepalive: reads that brought something, and writes of at
	// least drainedWrite that went out: a peer that takes those in is
	// reading, or its kernel is (see deafWait).
	reads   atomic.Uint64
	drained atomic.Uint64

	w muxWriter

	// scratch is the reading goroutine's, lent to each Deliver.
	scratch []byte

	mu       sync.Mutex
	streams  map[uint32]*Stream
	nextID   uint32
	accepts  []*Stream     // opened by the peer, not accepted yet
	accepted chan struct{} // cap 1: accepts has something
	pings    map[uint32]chan struct{}
	pingID   uint32
	goneAway bool // the peer takes no more streams
	closed   bool
	done     chan struct{} // closed when the link ends
	recvDone chan struct{} // closed when the reading goroutine has returned
}

const (
	// acceptBacklog bounds the streams the peer opened that wait to be
	// accepted; one more is reset. Every held session opens at once when
	// a backend comes back, so it is large.
	acceptBacklog = 1 << 16
	// streamCloseTimeout bounds how long a stream closed here waits for
	// the peer's close before it is forgotten (and reset).
	streamCloseTimeout = 30 * time.Second
	// muxReadBuffer is the connection's read buffer: a data frame's body
	// goes from it to its stream's buffer, this much at a time.
	muxReadBuffer = 64 << 10
)

// newMux starts a link's multiplexing on c. broken (if not nil) runs once,
// before any stream learns that the link has ended: when a read or a
// write fails, the peer breaks the framing, or the link is closed.
func newMux(c net.Conn, client bool, broken func(), log *zap.Logger, writeWait time.Duration) *Mux {
	m := &Mux{
		conn:      c,
		log:       log,
		broken:    broken,
		writeWait: writeWait,
		streams:   make(map[uint32]*Stream),
		accepted:  make(chan struct{}, 1),
		pings:     make(map[uint32]chan struct{}),
		done:      make(chan struct{}),
		recvDone:  make(chan struct{}),
	}
	m.w.init(m)
	m.nextID = 2
	if client {
		m.nextID = 1
	}
	go m.recv()
	return m
}

// CloseChan is closed when the link has ended.
func (m *Mux) CloseChan() <-chan struct{} { return m.done }

// IsClosed reports whether the link has ended.
func (m *Mux) IsClosed() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// OpenStream opens a stream. It does not wait for the peer: what is
// written to it goes at once, up to the stream's window.
func (m *Mux) OpenStream() (*Stream, error) {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return nil, ErrSessionShutdown
	case m.goneAway:
		m.mu.Unlock()
		return nil, ErrRemoteGoAway
	case m.nextID > 1<<32-3:
		m.mu.Unlock()
		return nil, ErrStreamsExhausted
	}
	st := newStream(m, m.nextID, 0)
	m.nextID += 2
	m.streams[st.id] = st
	m.mu.Unlock()
	h := makeHeader(muxWindow, flagSYN, st.id, 0)
	if err := m.w.queue(h.bytes(), nil, nil); err != nil {
		m.forget(st.id)
		return nil, err
	}
	return st, nil
}

// AcceptStream waits for a stream the peer opens, and acknowledges it.
func (m *Mux) AcceptStream() (*Stream, error) {
	for {
		m.mu.Lock()
		if len(m.accepts) > 0 {
			st := m.accepts[0]
			m.accepts[0] = nil
			m.accepts = m.accepts[1:]
			if len(m.accepts) == 0 {
				m.accepts = nil
			}
			m.mu.Unlock()
			st.acknowledge()
			return st, nil
		}
		closed := m.closed
		m.mu.Unlock()
		if closed {
			return nil, ErrSessionShutdown
		}
		select {
		case <-m.accepted:
		case <-m.done:
		}
	}
}

// Ping asks the peer for an answer and returns how long it took.
func (m *Mux) Ping() (time.Duration, error) {
	ch := make(chan struct{})
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return 0, ErrSessionShutdown
	}
	id := m.pingID
	m.pingID++
	m.pings[id] = ch
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.pings, id)
		m.mu.Unlock()
	}()
	start := time.Now()
	h := makeHeader(muxPing, flagSYN, 0, id)
	if err := m.w.queue(h.bytes(), nil, nil); err != nil {
		return 0, err
	}
	t := time.NewTimer(m.writeWait)
	defer t.Stop()
	select {
	case <-ch:
		return time.Since(start), nil
	case <-t.C:
		return 0, ErrTimeout
	case <-m.done:
		return 0, ErrSessionShutdown
	}
}

// Close ends the link: broken runs, what is queued is sent (for at most
// closeFlush), the connection closes, and every stream's reader and
// writer returns. It returns once the link's goroutines have.
func (m *Mux) Close() error {
	m.shut(nil)
	<-m.recvDone
	return nil
}

// runBroken runs broken, once.
func (m *Mux) runBroken() {
	if m.broken != nil {
		m.once.Do(m.broken)
	}
}

// shut ends the link for err (nil: closed here).
func (m *Mux) shut(err error) {
	m.runBroken()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	streams := make([]*Stream, 0, len(m.streams))
	for _, st := range m.streams {
		streams = append(streams, st)
	}
	m.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		m.log.Warn("link: ended", zap.Error(err))
	}
	m.w.close()
	close(m.done)
	for _, st := range streams {
		st.notify()
	}
}

// forget drops a stream from the link's table.
func (m *Mux) forget(id uint32) {
	m.mu.Lock()
	delete(m.streams, id)
	m.mu.Unlock()
}

func (m *Mux) stream(id uint32) *Stream {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streams[id]
}

// countingReader counts the connection's reads that bring something.
type countingReader struct{ m *Mux }

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.m.conn.Read(p)
	if n > 0 {
		r.m.reads.Add(1)
	}
	return n, err
}

// recv reads frames until the connection or the framing fails.
func (m *Mux) recv() {
	defer close(m.recvDone)
	br := bufio.NewReaderSize(countingReader{m}, muxReadBuffer)
	var h muxHeader
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			m.shut(err)
			return
		}
		if err := m.frame(br, &h); err != nil {
			if errors.Is(err, errProtocol) {
				g := makeHeader(muxGoAway, 0, 0, goAwayProtocol)
				m.w.queueNow(g.bytes(), nil)
			}
			m.shut(err)
			return
		}
	}
}

// frame handles one frame whose header is h; a data frame's body is read
// from br.
func (m *Mux) frame(br *bufio.Reader, h *muxHeader) error {
	if h.version() != muxVersion {
		return errors.Join(errProtocol, errors.New("unknown version"))
	}
	switch h.typ() {
	case muxData, muxWindow:
		return m.streamFrame(br, h)
	case muxPing:
		if h.has(flagSYN) {
			a := makeHeader(muxPing, flagACK, 0, h.length())
			m.w.queueNow(a.bytes(), nil)
			return nil
		}
		m.mu.Lock()
		if ch := m.pings[h.length()]; ch != nil {
			delete(m.pings, h.length())
			close(ch)
		}
		m.mu.Unlock()
		return nil
	case muxGoAway:
		m.mu.Lock()
		first := !m.goneAway
		m.goneAway = true
		m.mu.Unlock()
		// Once: a peer that says it again and again does not fill the log.
		if first && h.length() != goAwayNormal {
			m.log.Warn("link: the peer is going away", zap.Uint32("reason", h.length()))
		}
		return nil
	default:
		return errors.Join(errProtocol, errors.New("unknown frame type"))
	}
}

// streamFrame handles a stream's data or window update.
func (m *Mux) streamFrame(br *bufio.Reader, h *muxHeader) error {
	id := h.stream()
	var st *Stream
	if h.has(flagSYN) {
		var err error
		if st, err = m.incoming(id); err != nil {
			return err
		}
	} else {
		st = m.stream(id)
	}
	if st == nil {
		// A stream already forgotten here (reset, or its close timed
		// out): its frames in flight are dropped.
		if h.hasBody() {
			_, err := br.Discard(int(h.length()))
			return err
		}
		return nil
	}
	st.flags(h.flags())
	if !h.isData() {
		st.grow(h.length())
		return nil
	}
	return st.fill(br, h.length())
}

// smallTail is the most that may have been read behind a frame that is
// still the last of what came (see Deliverer): an acknowledgement that
// follows a session's output in the same write.
const smallTail = 64

// deliverFrames hands d the whole frames at the start of p, until it
// declines one; it returns the rest, from the frame it declined. behind
// is how much the link has read past p.
func (m *Mux) deliverFrames(d Deliverer, p []byte, behind int) []byte {
	for len(p) >= HeaderLen {
		size := binary.BigEndian.Uint32(p[1:HeaderLen])
		if size > MaxFrame || uint32(len(p)-HeaderLen) < size {
			break
		}
		end := HeaderLen + int(size)
		more := behind+len(p)-end > smallTail
		if !d.Deliver(FrameType(p[0]), p[HeaderLen:end], more, &m.scratch) {
			break
		}
		p = p[end:]
	}
	if cap(m.scratch) > muxReadBuffer {
		m.scratch = nil
	}
	return p
}

// incoming registers a stream the peer opens; nil if it is reset at
// once, for want of room.
func (m *Mux) incoming(id uint32) (*Stream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.streams[id]; ok || id == 0 {
		return nil, errors.Join(errProtocol, errors.New("stream opened twice"))
	}
	if m.closed || len(m.accepts) >= acceptBacklog {
		r := makeHeader(muxWindow, flagRST, id, 0)
		m.w.queueNow(r.bytes(), nil)
		return nil, nil
	}
	st := newStream(m, id, stAckDue)
	m.streams[id] = st
	m.accepts = append(m.accepts, st)
	wake(m.accepted)
	return st, nil
}
