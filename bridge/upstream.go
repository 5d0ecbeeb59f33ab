package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"holdfast/backend"
	"holdfast/gateway/telnet"
)

// readBuf is the size of one read from the game: a screenful of text, and
// small enough that thousands of idle connections cost little.
const readBuf = 4 << 10

// maxOut bounds the protocol answers waiting to go to the game. A game
// that keeps asking without reading the answers is dropped past it.
const maxOut = 64 << 10

// maxKeptBuf bounds a buffer kept for the next line rather than left to
// the collector: a line's worth, not a flood's.
const maxKeptBuf = 4 << 10

// writeTimeout bounds one write to the game; a game that reads nothing for
// that long is treated as gone.
const writeTimeout = 10 * time.Second

// upstream is one connection to the game for one player. Its reader, the
// session's run goroutine (a probe's own), decodes what the game sends,
// hands text and prompts to the player and writes the answers to
// negotiation; the player's reader writes the player's input (see
// session.direct), one writer at a time.
type upstream struct {
	s    *session
	conn net.Conn
	dec  decoder // the reader's alone

	mu  sync.Mutex // guards neg and out
	neg negotiator
	out []byte // answers for the game, in order, not yet written
	// rest is what a write that did not wait left for the game (see
	// session.flushReader), to go first; the session's wmu guards it.
	rest []byte

	probe  bool        // only to learn whether the game is up
	serial uint64      // its place among the connections opened; see drops.go
	drop   *drop       // the drop its close by the game joined; read after done
	ours   atomic.Bool // the bridge ends the connection: not the game's doing
	// deadlineMoved is when the write deadline was last set; the session's
	// wmu guards it.
	deadlineMoved time.Time
	spoke         chan struct{} // closed at the game's first byte
	done          chan struct{} // closed when the reader has ended (see stop)
	err           error         // why the reader ended; read after done
	lost          error         // a write to the player failed; read after done
	fault         error         // the game broke a bound; the reader's alone
	// undelivered is the game's text read after the player's side failed,
	// for a successor to deliver; at most one read's worth.
	undelivered []byte
	spokeSet    bool // spoke is closed; the reader's alone
	texted      bool // the game has sent text; the reader's alone
	greetSet    bool // the game has sent text and asked what it asks at once; the reader's alone
	echoOff     bool // the game hid the player's echo; the reader's alone
}

// connect opens a connection to the game for s, waiting for a slot among
// those being opened: the slot is the caller's to release once the game
// has greeted the player.
func (s *session) connect(ctx context.Context) (*upstream, func(), error) {
	return s.open(ctx, false)
}

// open opens a connection to the game for s; a probe's reader only notes
// that the game spoke, and hands nothing to the player.
func (s *session) open(ctx context.Context, probe bool) (*upstream, func(), error) {
	b := s.b
	release := func() {}
	if !probe {
		// A probe is one connection, not a crowd: it does not queue
		// behind the players coming back.
		var err error
		if release, err = b.acquire(ctx, s.gameDown); err != nil {
			return nil, nil, err
		}
	}
	conn, err := b.dial(ctx)
	if err != nil {
		release()
		if ctx.Err() == nil {
			b.down()
		}
		return nil, nil, fmt.Errorf("bridge: dial %s: %w", b.Upstream, err)
	}
	s.mu.Lock()
	facts, factsBy := s.facts, s.factsBy
	s.mu.Unlock()
	if b.ProxyHeader != 0 {
		h, err := proxyHeader(b.ProxyHeader, facts.ClientAddr, conn.RemoteAddr())
		if err == nil {
			conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			_, err = conn.Write(h)
		}
		if err != nil {
			conn.Close()
			release()
			return nil, nil, fmt.Errorf("bridge: PROXY header to %s: %w", b.Upstream, err)
		}
	}
	u := &upstream{
		s: s, conn: conn, probe: probe,
		neg:   negotiator{facts: facts, factsBy: factsBy},
		spoke: make(chan struct{}),
		done:  make(chan struct{}),
	}
	if probe {
		go u.probeRead()
	} else {
		b.opened(u) // the session's goroutine reads it (see carry)
	}
	return u, release, nil
}

// probeRead reads a probe until the game's first byte.
func (u *upstream) probeRead() {
	defer close(u.done)
	rc := rawConn(u.conn)
	for {
		bp, n, err := u.readOnce(rc)
		if bp != nil {
			readBufs.Put(bp)
		}
		if n > 0 {
			close(u.spoke)
			return
		}
		if err != nil {
			u.err = err
			return
		}
	}
}

// stop records that the connection is no longer read, ours says because
// the bridge ends it rather than the game, once, from its reader: the
// drops learn of it, and done closes.
func (u *upstream) stop(ours bool) {
	if ours {
		u.ours.Store(true)
	}
	u.s.b.ended(u, u.fault == nil && u.lost == nil && !u.ours.Load())
	close(u.done)
}

// pending reports whether answers wait to go to the game.
func (u *upstream) pending() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.out) > 0
}

// handle decodes what one read brought, and reports whether the reader
// reads on.
func (u *upstream) handle(p []byte) bool {
	if !u.spokeSet {
		u.spokeSet = true
		close(u.spoke)
	}
	u.dec.decode(p, u)
	if u.fault != nil {
		u.err = u.fault
		return false
	}
	if u.lost != nil {
		return false
	}
	u.greeted()
	return true
}

// greeted sets greetSet once the game has sent text and had the answers
// to what it asks at once. The reader's alone.
func (u *upstream) greeted() {
	if u.texted && !u.greetSet {
		u.mu.Lock()
		u.greetSet = u.neg.settled()
		u.mu.Unlock()
	}
}

// readBufs lends the readers of the game their buffer for one read: a
// connection waiting for the game's output holds none, so that thousands of
// idle players cost no buffer each.
var readBufs = sync.Pool{New: func() any { return new([readBuf]byte) }}

// rawConn returns c's RawConn when c is a TCP connection, to wait until it
// is readable before taking a buffer; nil for any other connection.
func rawConn(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// readOnce reads the game once, within the connection's read deadline,
// into a buffer from readBufs that it returns with what it read (nil with
// nothing read). With rc, the buffer is taken only once the connection is
// readable.
func (u *upstream) readOnce(rc syscall.RawConn) (*[readBuf]byte, int, error) {
	if rc == nil {
		bp := readBufs.Get().(*[readBuf]byte)
		n, err := u.conn.Read(bp[:])
		return bp, n, err
	}
	var (
		bp   *[readBuf]byte
		n    int
		rerr error
	)
	err := rc.Read(func(fd uintptr) bool {
		bp = readBufs.Get().(*[readBuf]byte)
		for {
			n, rerr = syscall.Read(int(fd), bp[:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			readBufs.Put(bp)
			bp = nil
			return false // to wait until it is readable
		}
		return true
	})
	switch {
	case err != nil:
		return bp, 0, err
	case rerr != nil:
		return bp, 0, &net.OpError{Op: "read", Net: "tcp", Source: u.conn.LocalAddr(), Addr: u.conn.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n <= 0:
		return bp, 0, io.EOF
	}
	return bp, n, nil
}

// text hands the game's text to the player. A write waits while the
// player's session is between gateways (bounded by package backend), and
// the game's output waits with it in TCP.
func (u *upstream) text(p []byte) {
	if u.fault != nil {
		return
	}
	if u.lost != nil {
		u.undelivered = append(u.undelivered, p...)
		return
	}
	u.texted = true
	if n, err := u.s.p.Write(p); err != nil {
		u.lose(err)
		u.undelivered = append(u.undelivered, p[n:]...)
	}
}

// fail drops a connection on which the game broke a bound.
func (u *upstream) fail(err error) {
	if u.fault == nil {
		u.fault = err
		u.conn.Close()
	}
}

// lose records that the player's side failed: the reader stops after what
// it read, and the session decides what becomes of the connection (closed,
// or handed to a successor with the text that did not reach the player).
func (u *upstream) lose(err error) {
	if u.lost == nil {
		u.lost = err
	}
}

func (u *upstream) negotiate(verb, opt byte) {
	if u.lost != nil || u.fault != nil {
		return
	}
	u.mu.Lock()
	var changed bool
	u.out, changed = u.neg.negotiate(u.out, verb, opt)
	on := u.neg.him.has(opt)
	if changed && on && opt == telnet.OptGMCP {
		// A new connection learns what the client said it supports,
		// as the game would have heard it from the client.
		for _, m := range u.s.hello() {
			u.out = telnet.AppendSubneg(u.out, telnet.OptGMCP, m)
		}
	}
	over := len(u.out) > maxOut
	u.mu.Unlock()
	if over {
		u.fail(fmt.Errorf("bridge: the game asks more than it reads (%d bytes of answers waiting)", maxOut))
		return
	}
	if changed && opt == telnet.OptEcho {
		u.echoOff = on
		if err := u.s.p.SetEcho(!on); err != nil {
			u.lose(err)
		}
	}
}

func (u *upstream) subneg(opt byte, p []byte, truncated bool) {
	if u.lost != nil || u.fault != nil || truncated {
		return // cut to the bound: whatever it says, it is not whole
	}
	switch opt {
	case telnet.OptGMCP:
		u.mu.Lock()
		on := u.neg.him.has(opt)
		u.mu.Unlock()
		if on {
			pkg, data, _ := strings.Cut(string(p), " ")
			if err := u.s.p.SendGMCP(pkg, []byte(data)); err != nil && !isTooLarge(err) {
				u.lose(err)
			}
		}
		return
	}
	u.mu.Lock()
	u.out = u.neg.subneg(u.out, opt, p)
	over := len(u.out) > maxOut
	u.mu.Unlock()
	if over {
		u.fail(fmt.Errorf("bridge: the game asks more than it reads (%d bytes of answers waiting)", maxOut))
	}
}

func (u *upstream) command(c byte) {
	if u.lost != nil || u.fault != nil {
		return
	}
	if c == telnet.GA || c == telnet.EOR {
		if err := u.s.p.Prompt(""); err != nil {
			u.lose(err)
		}
	}
}

// takeOut appends to b the answers waiting for the game, with what the
// player's new facts add, leaving none.
func (u *upstream) takeOut(b []byte, facts *factsChange) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	if facts != nil {
		u.out = u.neg.setFacts(u.out, facts.f)
		if facts.told {
			u.neg.told()
		}
	}
	u.out = u.neg.answerLate(u.out, time.Now())
	b = append(b, u.out...)
	u.out = u.out[:0]
	if cap(u.out) > maxKeptBuf {
		u.out = nil
	}
	return b
}

// lateQuestions returns when the game's questions that wait for the
// client's facts are answered anyway; zero with none waiting.
func (u *upstream) lateQuestions() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.neg.lateQuestions()
}

// gmcpOn reports whether the game has turned GMCP on.
func (u *upstream) gmcpOn() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.neg.him.has(telnet.OptGMCP)
}

// write writes b to the game within writeTimeout (or a tenth of it less:
// the deadline is moved at most every tenth, not at every line). Its
// session's wmu is held.
func (u *upstream) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	u.moveDeadline()
	if _, err := u.conn.Write(b); err != nil {
		return fmt.Errorf("bridge: write to the game: %w", err)
	}
	return nil
}

func (u *upstream) moveDeadline() {
	if now := time.Now(); now.After(u.deadlineMoved.Add(writeTimeout / 10)) {
		u.deadlineMoved = now
		u.conn.SetWriteDeadline(now.Add(writeTimeout))
	}
}

// tryWrite writes what of b the game's socket takes now, without waiting,
// and returns how much; a connection other than TCP waits, as write. Its
// session's wmu is held.
func (u *upstream) tryWrite(b []byte) (int, error) {
	rc := rawConn(u.conn)
	if rc == nil || len(b) == 0 {
		return len(b), u.write(b)
	}
	u.moveDeadline()
	n := 0
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := syscall.Write(int(fd), b[n:])
			if e == syscall.EINTR {
				continue
			}
			if e != nil {
				if e != syscall.EAGAIN {
					werr = os.NewSyscallError("write", e)
				}
				break
			}
			n += m
		}
		return true
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return n, fmt.Errorf("bridge: write to the game: %w", err)
	}
	return n, nil
}

// close closes the connection, which the bridge ends (not the game), and
// waits for its reader: a probe's, or the session's goroutine, which
// stopped it before (see stop).
func (u *upstream) close() {
	u.ours.Store(true)
	u.conn.Close()
	<-u.done
}

// broken closes a connection that failed under a write (the game reset
// it, or stopped reading), and waits for its reader: it counts as closed
// by the game.
func (u *upstream) broken() {
	u.conn.Close()
	<-u.done
}

// isTooLarge reports a GMCP message from the game that the link cannot
// carry: it is dropped, and the player stays.
func isTooLarge(err error) bool { return errors.Is(err, backend.ErrMessageTooLarge) }
