package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
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

// upstream is one connection to the game for one player. Its reader
// decodes what the game sends, hands text and prompts to the player and
// answers negotiation; the session's run goroutine is its only writer.
type upstream struct {
	s    *session
	conn net.Conn
	dec  decoder // the reader's alone

	mu  sync.Mutex // guards neg and out
	neg negotiator
	out []byte // answers for the game, in order, not yet written

	probe  bool        // only to learn whether the game is up
	serial uint64      // its place among the connections opened; see drops.go
	drop   *drop       // the drop its close by the game joined; read after done
	ours   atomic.Bool // the bridge ends the connection: not the game's doing
	// deadlineMoved is when the write deadline was last set; the session's
	// wmu guards it.
	deadlineMoved time.Time
	spoke         chan struct{} // closed at the game's first byte
	welcomed      chan struct{} // closed at the game's first text
	greeted       chan struct{} // closed once the game has sent text and asked what it asks at once
	done          chan struct{} // closed when the reader has ended
	err           error         // why the reader ended; read after done
	lost          error         // a write to the player failed; read after done
	fault         error         // the game broke a bound; the reader's alone
	// undelivered is the game's text read after the player's side failed,
	// for a successor to deliver; at most one read's worth.
	undelivered []byte
	spokeSet    bool // spoke is closed; the reader's alone
	texted      bool // the game has sent text; the reader's alone
	greetSet    bool // greeted is closed; the reader's alone
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
	facts := s.facts
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
		neg:      negotiator{facts: facts},
		spoke:    make(chan struct{}),
		welcomed: make(chan struct{}),
		greeted:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if !probe {
		b.opened(u)
	}
	go u.read()
	return u, release, nil
}

func (u *upstream) read() {
	defer close(u.done)
	if !u.probe {
		defer func() {
			u.s.b.ended(u, u.fault == nil && u.lost == nil && !u.ours.Load())
		}()
	}
	buf := make([]byte, readBuf)
	for {
		n, err := u.conn.Read(buf)
		if n > 0 && !u.spokeSet {
			u.spokeSet = true
			close(u.spoke)
			if u.probe {
				return
			}
		}
		if n > 0 {
			u.dec.decode(buf[:n], u)
			if u.fault != nil {
				u.err = u.fault
				return
			}
			if u.lost != nil {
				return
			}
			u.mu.Lock()
			pending := len(u.out)
			settled := u.neg.settled()
			u.mu.Unlock()
			if pending > 0 {
				u.s.wake()
			}
			if u.texted && settled && !u.greetSet {
				u.greetSet = true
				close(u.greeted)
			}
		}
		if err != nil {
			u.err = err
			return
		}
	}
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
	if !u.texted {
		u.texted = true
		close(u.welcomed)
	}
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
	on := u.neg.him[opt]
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
		on := u.neg.him[opt]
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
	}
	b = append(b, u.out...)
	u.out = u.out[:0]
	if cap(u.out) > maxKeptBuf {
		u.out = nil
	}
	return b
}

// gmcpOn reports whether the game has turned GMCP on.
func (u *upstream) gmcpOn() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.neg.him[telnet.OptGMCP]
}

// write writes b to the game within writeTimeout (or a tenth of it less:
// the deadline is moved at most every tenth, not at every line). Its
// session's wmu is held.
func (u *upstream) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if now := time.Now(); now.After(u.deadlineMoved.Add(writeTimeout / 10)) {
		u.deadlineMoved = now
		u.conn.SetWriteDeadline(now.Add(writeTimeout))
	}
	if _, err := u.conn.Write(b); err != nil {
		return fmt.Errorf("bridge: write to the game: %w", err)
	}
	return nil
}

// close closes the connection, which the bridge ends (not the game), and
// waits for its reader.
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
