package web

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"holdfast/internal/netx"
)

// Conn is one browser player's connection as the gateway sees it: a
// net.Conn carrying the telnet stream, whatever the WebSocket protocol.
// A resumable Conn outlives its WebSocket: when the WebSocket breaks, Read
// waits and Write keeps the output, until the page comes back with its
// token or the grace period ends (then Read returns io.EOF).
//
// Read reads the WebSocket itself: the Conn has no goroutine of its own,
// and an idle one may wait in the gateway's parker (ParkFD, Parked) with
// no goroutine at all.
//
// Lock order: wmu, then mu.
type Conn struct {
	l         *Listener
	proto     string
	term      *terminal // nil on the telnet protocol
	resumable bool
	local     net.Addr
	remote    net.Addr
	tls       bool
	adm       Admission // its place within the gateway's limits; nil: none taken here

	mu   sync.Mutex
	wake chan struct{} // closed when anything a waiting Read needs changes
	in   []byte        // input for Read
	// inBuf, while set, is the pooled array in is in (queueInLocked).
	inBuf *[readBuf]byte
	// received counts the bytes of the page's input messages taken, so
	// that a page that comes back sends again what did not arrive.
	received uint64
	ws       *wsConn
	gen      uint64 // which WebSocket is current; a lost one's news is ignored
	// parkWake, set while the gateway's parker may hold the Conn's
	// socket, gives the Conn its reader back when it needs one for
	// anything but the socket's input: a new WebSocket, input it made
	// itself, its end.
	parkWake func()
	// kicked is set when the socket's read deadline was moved to the past
	// to free its reader for input the Conn made itself: the reader's
	// timeout is then not the caller's.
	kicked bool
	away   *time.Timer
	ended  error // set when the player has gone for good
	closed bool
	rdl    time.Time
	wdl    time.Time
	// The tokens that resume this Conn, by their hashes: token, the one
	// the page is known to have, and fresh, the one given to the page last
	// and not yet acknowledged. Both resume it: a page whose connection
	// broke as fresh was sent, or whose acknowledgement was lost, comes
	// back with token. Once the page acknowledges fresh, token is spent.
	token string
	fresh string
	// frozen is set from Export until Moved or Thaw: nothing more is taken
	// from the page meanwhile, so that the state exported stays whole.
	frozen bool
	// moving is the token hashes Export marked as moving out (see
	// Listener.movedOut), for Thaw to unmark.
	moving [2]string
	// gone is set by Moved: the session is another process's now (an
	// upgrade's new one, or another gateway's after a drain).
	// arriving is set from Restore until Arrived: the session is not this
	// process's yet, and may go back to the process it came from (the
	// move's Abort). A page that comes back meanwhile is sent on with its
	// token unspent (attach), as it is while frozen.
	gone, arriving bool
	// accepted is set once the gateway has the Conn, and its admission.
	accepted bool

	// Output, written by one writer at a time. replay keeps what the
	// client has not acknowledged yet, the last len(replay) bytes of sent.
	wmu    sync.Mutex
	sent   uint64
	acked  uint64
	replay []byte
	// replayArr is the array replay is in, from its start: the room in
	// front of replay is used again before a new array is made.
	replayArr []byte
	// notices keeps the gateway's notices made while the page was away,
	// the last maxNotices of them, for its return.
	notices []string

	// For a page that may come back through another gateway (keep.go),
	// guarded by mu: the session's id, the game's input offset the page
	// was last told, the marks that map its acknowledgements onto the
	// game's output, and the session's hooks. claim is set, for good,
	// on a Conn that came back from another gateway.
	session       string
	inAcked       uint64
	inTimer       *time.Timer // set while the page waits to be told inAcked
	marks         []sentMark
	outAcked      func(game uint64)
	tokensChanged func()
	claim         *claim
}

// maxNotices bounds the notices kept for a page that is away: they say
// how the game is, and the last few say it.
const maxNotices = 8

// noticeMsg is a notice from the gateway itself, in a text message of the
// page's protocol: nothing in the game's output can pass for it.
type noticeMsg struct {
	Notice string `json:"notice"`
}

// Notice tells the page something from the gateway itself, out of band:
// in a text message, which on the page's protocol only the gateway sends.
// It reports false for a connection that has no such messages (it is not
// the page's protocol), and the gateway writes the notice in the output.
func (c *Conn) Notice(text string) bool {
	if !c.resumable {
		return false
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed || c.ended != nil {
		c.mu.Unlock()
		return true
	}
	ws, gen, dl := c.ws, c.gen, c.wdl
	if ws == nil {
		c.keepNoticeLocked(text)
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()
	b, _ := json.Marshal(noticeMsg{Notice: text})
	if dl.IsZero() {
		dl = time.Now().Add(10 * time.Second)
	}
	if err := ws.write(opText, b, dl); err != nil {
		c.lost(gen, err) // the session is held for the page's return
		c.mu.Lock()
		c.keepNoticeLocked(text)
		c.mu.Unlock()
	}
	return true
}

func (c *Conn) keepNoticeLocked(text string) {
	if len(c.notices) >= maxNotices {
		c.notices = append(c.notices[:0], c.notices[1:]...)
	}
	c.notices = append(c.notices, text)
}

// maxInbox bounds the input read from the WebSocket ahead of the gateway.
// Past it the WebSocket is not read, and the browser's sends wait.
const maxInbox = 64 << 10

func (c *Conn) broadcastLocked() {
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
}

// kickLocked frees a reader waiting on the socket, for input the Conn
// made itself.
func (c *Conn) kickLocked() {
	if c.ws != nil {
		c.kicked = true
		c.ws.nc.SetReadDeadline(longAgo)
	}
}

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

// unparkLocked returns the parker's hook, for a change the Conn's reader
// must see: the caller calls it once its locks are released.
func (c *Conn) unparkLocked() func() {
	f := c.parkWake
	c.parkWake = nil
	return f
}

func call(f func()) {
	if f != nil {
		f()
	}
}

// ParkFD returns the descriptor of the Conn's socket, for the gateway's
// parker to wait on for the page's input, when nothing else could give
// Read something: no input waits, no part of a message is read ahead, the
// Conn is not moving. fd is -1 when it cannot park now, and ok false when
// it never can: over TLS, whose records are read ahead of the kernel's,
// or behind a PROXY header's reader.
func (c *Conn) ParkFD() (fd int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tls || c.ws != nil && c.ws.fd < 0 {
		return -1, false
	}
	if !c.parkableLocked() {
		return -1, true
	}
	return c.ws.fd, true
}

func (c *Conn) parkableLocked() bool {
	return c.ws != nil && c.ws.fd >= 0 && !c.ws.buffered() && len(c.in) == 0 && !c.frozen && !c.closed && c.ended == nil
}

// Parked tells the Conn that the parker holds its socket fd, which
// ParkFD gave: wake is called, once and not under the Conn's locks, when
// the Conn needs its reader back for anything but the socket's input. It
// reports false when the Conn has changed since ParkFD, and needs its
// reader now.
func (c *Conn) Parked(fd int, wake func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.parkableLocked() || c.ws.fd != fd {
		return false
	}
	c.parkWake = wake
	return true
}

// Read returns the player's input: what the page typed, as telnet. It
// reads the WebSocket within the read deadline, answering its control
// frames and the page's control messages on the way.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		c.mu.Lock()
		if len(c.in) > 0 && len(p) > 0 {
			n := copy(p, c.in)
			c.in = c.in[n:]
			if len(c.in) == 0 {
				c.in = nil
				c.putInBufLocked()
			}
			c.mu.Unlock()
			return n, nil
		}
		switch {
		case c.closed:
			c.mu.Unlock()
			return 0, net.ErrClosed
		case c.ended != nil:
			err := c.ended
			c.mu.Unlock()
			return 0, err
		case len(p) == 0:
			c.mu.Unlock()
			return 0, nil
		}
		if ws, gen := c.ws, c.gen; ws != nil && !c.frozen {
			c.mu.Unlock()
			err := c.readSocket(ws, gen)
			switch {
			case err == nil:
			case netx.IsTimeout(err):
				c.mu.Lock()
				kicked := c.kicked
				c.kicked = false
				if kicked && c.ws == ws {
					ws.nc.SetReadDeadline(c.rdl)
				}
				c.mu.Unlock()
				if !kicked {
					return 0, err // the socket's deadline is the Conn's
				}
			default:
				c.lost(gen, err)
			}
			continue
		}
		if c.wake == nil {
			c.wake = make(chan struct{})
		}
		wake, dl := c.wake, c.rdl
		c.mu.Unlock()
		if dl.IsZero() {
			<-wake
			continue
		}
		d := time.Until(dl)
		if d <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// errStale ends the reading of a WebSocket that is no longer current.
var errStale = errors.New("web: the WebSocket was replaced")

// readSocket reads WebSocket gen until it has input for Read, or fails:
// the messages a read brought are all taken, within the inbox's bound.
func (c *Conn) readSocket(ws *wsConn, gen uint64) error {
	defer ws.rest()
	got := false
	for {
		op, msg, ok, err := ws.nextMessage()
		if err != nil {
			return err
		}
		if !ok {
			if got {
				return nil
			}
			if err := ws.fill(); err != nil {
				return err
			}
			continue
		}
		switch op {
		case opPing:
			if err := ws.write(opPong, msg, time.Now().Add(10*time.Second)); err != nil {
				return err
			}
			continue
		case opPong:
			continue
		case opClose:
			// Answered at once, with the page's own code as is usual:
			// then the page closes the socket.
			err := parseClose(msg)
			code := statusNormal
			if ce, ok := err.(closeError); ok && ce.code != statusNoStatus {
				code = ce.code
			} else if pe, ok := err.(protocolError); ok {
				code = pe.code
			}
			// The end is decided before the answer goes: once the page
			// has it, a write fails, and must not pass for the page lost.
			c.lost(gen, err)
			c.l.spawn(func() { ws.closeWith(code, "") })
			return err
		case opText:
			if !utf8.Valid(msg) {
				return errNotUTF8
			}
			if c.resumable {
				c.control(gen, msg)
				continue
			}
		}
		raw := len(msg)
		if c.term != nil {
			msg = c.term.input(nil, msg)
		}
		full, err := c.deliver(gen, msg, raw)
		if err != nil {
			return err
		}
		got = true
		if full {
			return nil
		}
	}
}

// deliver queues input for Read: msg, from a message of raw bytes. It
// reports whether the inbox is full.
func (c *Conn) deliver(gen uint64, msg []byte, raw int) (full bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || c.closed {
		return false, errStale
	}
	c.received += uint64(raw)
	c.queueInLocked(msg)
	return len(c.in) >= maxInbox, nil
}

// queueInLocked appends b to the input for Read, with c.mu held. Input
// starts in an array of the pool the socket's reads use, given back once
// Read has taken it all: a page typing fast would otherwise grow a new
// slice from nothing, in several copies, for each read of its socket.
func (c *Conn) queueInLocked(b []byte) {
	switch {
	case c.in == nil && c.inBuf == nil && len(b) <= readBuf:
		c.inBuf = readBufs.Get().(*[readBuf]byte)
		c.in = c.inBuf[:0]
	case c.inBuf != nil && len(c.in)+len(b) > cap(c.in):
		in := make([]byte, len(c.in), 2*(len(c.in)+len(b)))
		copy(in, c.in)
		c.putInBufLocked()
		c.in = in
	}
	c.in = append(c.in, b...)
}

// putInBufLocked gives the input's pooled array back: in is empty, or
// has been copied out of it.
func (c *Conn) putInBufLocked() {
	if c.inBuf != nil {
		readBufs.Put(c.inBuf)
		c.inBuf = nil
	}
}

// Write sends output to the page. While the WebSocket is away it keeps the
// output for the reconnect, within the replay bound, and succeeds.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	out := p
	var wake func()
	if c.term != nil {
		var reply []byte
		out, reply = c.term.output(nil, nil, p)
		if len(reply) > 0 {
			c.queueInLocked(reply)
			c.broadcastLocked()
			c.kickLocked()
			wake = c.unparkLocked()
		}
	}
	c.sent += uint64(len(out))
	if c.resumable {
		c.keepLocked(out)
	}
	ws, gen, dl := c.ws, c.gen, c.wdl
	ended := c.ended
	c.mu.Unlock()
	call(wake)
	if len(out) == 0 {
		return len(p), nil
	}
	if ws == nil {
		if c.resumable && ended == nil {
			return len(p), nil // held for the page's return
		}
		return 0, io.ErrClosedPipe
	}
	if err := ws.write(c.msgType(), out, dl); err != nil {
		// A frame cut short leaves nothing to write on: the WebSocket is
		// lost, and a resumable page comes back for the rest.
		c.lost(gen, err)
		if c.resumable {
			return len(p), nil
		}
		return 0, err
	}
	return len(p), nil
}

// keepLocked adds output to the replay, dropping the oldest past the bound:
// a page away that long misses it, and is told so. The replay is cut back
// to the bound once it is a quarter over it, so that a page away from a
// busy game does not cost a copy of the whole replay at every write. What
// acknowledgements and the cut leave free at the front of the replay's
// array is used again: a page whose acknowledgements lag behind a busy
// game (they queue behind its own input) costs no new array per write.
func (c *Conn) keepLocked(out []byte) {
	if len(c.replay)+len(out) > cap(c.replay) && len(c.replay)+len(out) <= cap(c.replayArr) {
		c.replay = c.replayArr[:copy(c.replayArr[:cap(c.replayArr)], c.replay)]
	}
	if len(c.replay)+len(out) > cap(c.replay) {
		c.replay = append(c.replay, out...)
		c.replayArr = c.replay[:0] // a new array
	} else {
		c.replay = append(c.replay, out...)
	}
	max := c.l.maxReplay()
	if len(c.replay) > max+max/4 {
		c.replay = c.replay[len(c.replay)-max:]
	}
}

func (c *Conn) msgType() opcode {
	if c.term != nil && c.term.text {
		return opText
	}
	return opBinary
}

// ack forgets the output the page has had.
func (c *Conn) ack(n uint64) {
	c.mu.Lock()
	base := c.sent - uint64(len(c.replay))
	if n <= c.acked || n > c.sent {
		c.mu.Unlock()
		return
	}
	c.acked = n
	if n > base {
		c.replay = c.replay[n-base:]
		if len(c.replay) == 0 {
			c.replay, c.replayArr = nil, nil // an idle page keeps no buffer
		}
	}
	game, ok := c.ackedGameLocked()
	f := c.outAcked
	c.mu.Unlock()
	if ok {
		f(game) // on to the game, before the page's next input is read
	}
}

// lost is told that WebSocket generation gen failed. A resumable Conn
// waits for the page; any other has lost its player.
func (c *Conn) lost(gen uint64, err error) {
	c.mu.Lock()
	if gen != c.gen || c.ws == nil {
		c.mu.Unlock()
		return
	}
	ws := c.ws
	c.ws = nil
	var wake func()
	code := statusOf(err)
	quit := code == statusNormal
	if !c.resumable || quit || c.l.grace() <= 0 || c.closed {
		wake = c.endLocked()
	} else {
		c.l.metrics.lost.Inc()
		c.l.log().Info("web: connection lost; holding the session", zap.Stringer("client", c.remote), zap.Duration("grace", c.l.grace()), zap.Error(err))
		c.holdLocked(gen)
	}
	c.mu.Unlock()
	var pe protocolError
	switch {
	case code != 0:
		// The page's close frame was answered as it was read.
	case errors.As(err, &pe):
		c.l.spawn(func() { ws.closeWith(pe.code, pe.why) })
	default:
		ws.closeNow()
	}
	call(wake)
}

// endLocked marks the player gone: Read returns io.EOF once the input is
// read, and the token resumes nothing. The caller calls what it returns
// once its locks are released.
func (c *Conn) endLocked() func() {
	if c.ended == nil {
		c.ended = io.EOF
	}
	c.l.forget(c.token)
	c.l.forget(c.fresh)
	c.token, c.fresh = "", ""
	c.broadcastLocked()
	return c.unparkLocked()
}

// Close ends the connection: the page is told the session is over, and
// does not come back.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	ws := c.ws
	c.ws = nil
	if c.away != nil {
		c.away.Stop()
	}
	c.endLocked()
	c.parkWake = nil // the gateway closes it: it takes the socket from the parker itself
	c.replay, c.replayArr = nil, nil
	adm := c.adm
	if c.accepted {
		adm = nil // the gateway's now, and it may hold its lock here
	}
	c.mu.Unlock()
	if adm != nil {
		adm.Release()
	}
	if ws != nil {
		// The closing handshake waits for the page: not the caller's
		// business.
		c.l.spawn(func() { ws.closeWith(statusNormal, "the session has ended") })
	}
	return nil
}

// Admission is the place the player took within the gateway's limits
// before the upgrade (Listener.Admission), for the gateway to take over;
// nil if none was taken here.
func (c *Conn) Admission() Admission { return c.adm }

// LocalAddr is the address the page connected to.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is the player's address: the peer's, or the one a trusted
// proxy forwarded.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of Read, and of the socket it may be
// blocked on.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	if c.ws != nil {
		c.ws.nc.SetReadDeadline(t)
	}
	c.broadcastLocked()
	return nil
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = t
	return nil
}

// Kind names the connection for operators: "websocket" or "websocket+tls",
// and the protocol spoken on it: "websocket:terminal".
func (c *Conn) Kind() string {
	k := "websocket"
	if c.tls {
		k += "+tls"
	}
	short, _, _ := strings.Cut(c.proto, ".")
	return k + ":" + short
}
