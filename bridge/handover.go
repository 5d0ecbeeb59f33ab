package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/backend"
	"holdfast/internal/fdmsg"
	"holdfast/internal/netx"
)

// A deploy of the bridge (Takeover) moves the connections to the game with
// the players, so that the game sees no disconnect. The running bridge
// listens on a Unix socket, HandoverAddr. The successor connects to it
// before it says it is ready (TakeOver), and the running bridge answers
// hello once it counts it as its successor. The gateway then hands the
// players over as in any backend deploy: each session leaving the running
// bridge for the successor sends, on the socket, its record (the state of
// both telnet sides, input and output in flight) with the descriptor of its
// connection to the game; the successor's session, handed over by the
// gateway, takes that record and goes on on the same connection. Once the
// running bridge has exited, the successor listens on HandoverAddr for its
// own successor.

// Message kinds on the handover socket.
const (
	msgHello   byte = 1 // the running bridge takes the connection as its successor's
	msgSession byte = 2 // a record, with the descriptor of its connection if Conn
)

// handoverWait bounds how long a session handed over by the gateway waits
// for its record (without one it opens a new connection to the game), and
// how long a record may take to go. A variable for the tests.
var handoverWait = 5 * time.Second

// maxRecords bounds the records a successor keeps unclaimed.
const maxRecords = 1 << 16

// errNoPeerCheck is where the peer's user cannot be learnt: no handover.
var errNoPeerCheck = errors.New("bridge: the handover socket's peer cannot be checked on this system")

// incoming is a record a successor received, and its connection's file.
type incoming struct {
	rec  record
	file *os.File
}

// predecessor is, in a successor, the connection to the bridge it takes
// over from, and the records received on it.
type predecessor struct {
	conn *fdmsg.Conn

	mu      sync.Mutex
	records map[string]incoming
	arrived chan struct{} // closed and replaced when a record arrives
	ended   bool          // the predecessor's connection has ended
}

// TakeOver connects to the bridge running at HandoverAddr, before this one
// (started with backend.Config.Takeover) says it is ready, so that the
// players the gateway hands over keep their connections to the game.
// Without a bridge running there, it does nothing: the players get new
// connections.
func (b *Bridge) TakeOver(ctx context.Context) error {
	b.init()
	b.mu.Lock()
	start := b.HandoverAddr != "" && !b.handover && !b.closed
	b.handover = true
	b.mu.Unlock()
	if !start {
		return nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", b.HandoverAddr)
	if err != nil {
		b.log().Info("bridge: no bridge to take the game's connections from", zap.String("addr", b.HandoverAddr), zap.Error(err))
		b.wg.Go(b.listenHandover)
		return nil
	}
	uc := c.(*net.UnixConn)
	if err := checkPeer(uc); err != nil {
		c.Close()
		return err
	}
	fc := fdmsg.New(uc)
	fc.SetDeadline(time.Now().Add(handoverWait))
	kind, _, files, err := fc.Recv()
	closeFiles(files)
	if err != nil || kind != msgHello {
		c.Close()
		if err == nil {
			err = fmt.Errorf("message %d", kind)
		}
		return fmt.Errorf("bridge: the running bridge did not take this one as its successor: %w", err)
	}
	fc.SetDeadline(time.Time{})
	p := &predecessor{conn: fc, records: make(map[string]incoming), arrived: make(chan struct{})}
	b.mu.Lock()
	b.pred = p
	b.mu.Unlock()
	b.log().Info("bridge: taking the game's connections over", zap.String("addr", b.HandoverAddr))
	b.wg.Go(func() {
		b.receive(p)
		b.listenHandover()
	})
	return nil
}

// startHandover listens for a successor at HandoverAddr, unless TakeOver
// has already started the handover's side.
func (b *Bridge) startHandover() {
	b.init()
	b.mu.Lock()
	listen := b.HandoverAddr != "" && !b.handover && !b.closed
	b.handover = true
	b.mu.Unlock()
	if listen {
		b.wg.Go(b.listenHandover)
	}
}

// receive keeps the records the predecessor sends until it has gone.
func (b *Bridge) receive(p *predecessor) {
	stop := context.AfterFunc(b.ctx, func() { p.conn.Close() })
	defer stop()
	defer p.conn.Close()
	for {
		kind, payload, files, err := p.conn.Recv()
		if err != nil {
			break
		}
		var in incoming
		if kind != msgSession || in.rec.UnmarshalBinary(payload) != nil || in.rec.Conn != (len(files) == 1) || len(files) > 1 {
			b.log().Warn("bridge: a bad message from the bridge taken over; ignored", zap.Uint8("kind", kind))
			closeFiles(files)
			continue
		}
		if len(files) == 1 {
			in.file = files[0]
		}
		p.mu.Lock()
		if old, ok := p.records[in.rec.ID]; ok && old.file != nil {
			old.file.Close()
		}
		if len(p.records) < maxRecords {
			p.records[in.rec.ID] = in
		} else if in.file != nil {
			in.file.Close()
		}
		close(p.arrived)
		p.arrived = make(chan struct{})
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.ended = true
	close(p.arrived)
	p.arrived = make(chan struct{})
	p.mu.Unlock()
	b.log().Info("bridge: the bridge taken over has gone")
}

// take returns the record of session id, waiting for it while the
// predecessor is there, at most handoverWait.
func (p *predecessor) take(ctx context.Context, id string) (incoming, bool) {
	t := time.NewTimer(handoverWait)
	defer t.Stop()
	for {
		p.mu.Lock()
		in, ok := p.records[id]
		delete(p.records, id)
		ended, arrived := p.ended, p.arrived
		p.mu.Unlock()
		if ok || ended {
			return in, ok
		}
		select {
		case <-arrived:
		case <-t.C:
			return incoming{}, false
		case <-ctx.Done():
			return incoming{}, false
		}
	}
}

// drop closes the connections of records nobody claimed.
func (p *predecessor) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, in := range p.records {
		if in.file != nil {
			in.file.Close()
		}
		delete(p.records, id)
	}
}

// listenHandover listens on HandoverAddr for a successor, waiting while
// another process (the bridge taken over, on its way out) holds it.
func (b *Bridge) listenHandover() {
	var delay time.Duration
	for {
		ln, err := listenUnix(b.HandoverAddr)
		if err == nil {
			b.mu.Lock()
			if b.closed {
				b.mu.Unlock()
				ln.Close()
				return
			}
			b.hln = ln
			b.mu.Unlock()
			b.log().Info("bridge: handover listening", zap.String("addr", b.HandoverAddr))
			b.acceptSuccessors(ln)
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			b.log().Warn("bridge: cannot listen for a successor; a deploy will reconnect the players to the game", zap.Error(err))
			return
		}
		delay = netx.Backoff(delay, 50*time.Millisecond, time.Second)
		if !sleep(b.ctx, delay) {
			return
		}
	}
}

// listenUnix listens on addr, an abstract socket ("@name", Linux) or a
// path; a path left by a process that has gone is taken over.
func listenUnix(addr string) (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err == nil || strings.HasPrefix(addr, "@") || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	if c, derr := net.Dial("unix", addr); derr == nil {
		c.Close()
		return nil, err // in use
	}
	os.Remove(addr)
	return net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
}

// acceptSuccessors takes one successor at a time: the first to connect
// while none is connected.
func (b *Bridge) acceptSuccessors(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		if err := checkPeer(c); err != nil {
			b.log().Warn("bridge: a handover connection refused", zap.Error(err))
			c.Close()
			continue
		}
		fc := fdmsg.New(c)
		b.mu.Lock()
		if b.succ != nil || b.closed {
			b.mu.Unlock()
			c.Close()
			continue
		}
		b.succ = fc
		b.mu.Unlock()
		fc.SetDeadline(time.Now().Add(handoverWait))
		if err := fc.Send(msgHello, nil, nil); err != nil {
			b.dropSuccessor(fc)
			continue
		}
		fc.SetDeadline(time.Time{})
		b.log().Info("bridge: a successor is ready to take the game's connections")
		b.wg.Go(func() {
			// A successor says nothing: its end is the end of the socket.
			fc.Recv()
			b.dropSuccessor(fc)
		})
	}
}

func (b *Bridge) dropSuccessor(fc *fdmsg.Conn) {
	b.mu.Lock()
	if b.succ == fc {
		b.succ = nil
	}
	b.mu.Unlock()
	fc.Close()
}

func (b *Bridge) successor() *fdmsg.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.succ
}

// checkPeer admits a handover peer only of this process's own user: the
// connections to the game are the players'.
func checkPeer(c *net.UnixConn) error {
	uid, err := peerUID(c)
	if err != nil {
		return err
	}
	if uid != os.Getuid() {
		return fmt.Errorf("bridge: a handover peer of user %d, not %d", uid, os.Getuid())
	}
	return nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// handOver sends the session to the successor, with u's connection to the
// game if u is not nil; the connection here is closed after, and the game
// sees nothing of it since the successor holds its own descriptor.
func (s *session) handOver(fc *fdmsg.Conn, u *upstream) error {
	rec := record{ID: s.id}
	var files []syscall.Conn
	if u != nil {
		// The reader leaves once it has handled everything it read.
		u.ours.Store(true)
		u.conn.SetReadDeadline(time.Now())
		<-u.done
		sock, err := netx.Socket(u.conn)
		if err != nil {
			u.conn.Close()
			return fmt.Errorf("bridge: handover: %w", err)
		}
		defer u.conn.Close() // once sent: the successor has its own descriptor
		files = []syscall.Conn{sock}
		rec.Conn, rec.EchoOff, rec.Flowing = true, u.echoOff, u.greetSet
		rec.Text = u.undelivered
		u.mu.Lock()
		rec.Out = u.out
		if len(u.rest) > 0 {
			// What the game had not taken goes first.
			rec.Out = append(append([]byte(nil), u.rest...), u.out...)
		}
		neg, err1 := u.neg.MarshalBinary()
		u.mu.Unlock()
		dec, err2 := u.dec.MarshalBinary()
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("bridge: handover: %w", err)
		}
		rec.Neg, rec.Dec = neg, dec
	}
	s.mu.Lock()
	rec.Held, rec.GMCP, rec.Hello, rec.InputEnd = s.held, s.gmcp, s.helloMsg, s.inEnd
	s.mu.Unlock()
	payload, err := rec.MarshalBinary()
	if err != nil {
		return err
	}
	// Not a deadline on fc, which would end the wait for the successor's
	// end too: a successor that takes no record for that long is stuck,
	// and is dropped.
	stuck := time.AfterFunc(handoverWait, func() { s.b.dropSuccessor(fc) })
	defer stuck.Stop()
	if err := fc.Send(msgSession, payload, files); err != nil {
		s.b.dropSuccessor(fc)
		return err
	}
	return nil
}

// adopt takes the session's record from the predecessor, if it was handed
// over with one: the held input and GMCP hello, and the connection to the
// game, which it returns ready to carry. It runs before the player's input
// is read: the input the gateway gives again that the predecessor had
// passed on is skipped.
func (s *session) adopt() *upstream {
	b := s.b
	b.mu.Lock()
	p := b.pred
	b.mu.Unlock()
	if p == nil {
		return nil
	}
	if h, ok := s.p.(interface{ HandedOver() bool }); !ok || !h.HandedOver() {
		return nil
	}
	start := inputOffset(s.p)
	in, ok := p.take(b.ctx, s.id)
	if !ok {
		b.log().Info("bridge: a session came over without its connection to the game", zap.String("session", s.id))
		return nil
	}
	if in.rec.InputEnd > start {
		s.skip = in.rec.InputEnd - start
	}
	s.mu.Lock()
	s.inEnd = max(start, in.rec.InputEnd)
	for i := range s.gmcp {
		s.gmcp[i].At += len(in.rec.Held)
	}
	s.gmcp = append(in.rec.GMCP, s.gmcp...)
	s.held = append(in.rec.Held, s.held...)
	s.helloMsg = in.rec.Hello
	facts := s.facts
	s.mu.Unlock()
	if in.file == nil {
		return nil
	}
	conn, err := net.FileConn(in.file)
	in.file.Close()
	if err != nil {
		b.log().Warn("bridge: a connection to the game came over unusable", zap.String("session", s.id), zap.Error(err))
		return nil
	}
	u := &upstream{
		s: s, conn: conn,
		neg:   negotiator{facts: facts},
		out:   in.rec.Out,
		spoke: make(chan struct{}),
		done:  make(chan struct{}),
	}
	err = errors.Join(u.neg.UnmarshalBinary(in.rec.Neg), u.dec.UnmarshalBinary(in.rec.Dec))
	if err != nil {
		conn.Close()
		b.log().Warn("bridge: a session's record came over unusable", zap.String("session", s.id), zap.Error(err))
		return nil
	}
	// The window may have changed since the bridge before last told the
	// game: an impossible size makes the first flush tell it again.
	u.neg.facts = facts
	u.neg.facts.Width, u.neg.facts.Height = -1, -1
	close(u.spoke)
	u.spokeSet, u.texted, u.greetSet, u.echoOff = true, in.rec.Flowing, in.rec.Flowing, in.rec.EchoOff
	if len(in.rec.Text) > 0 {
		if _, err := s.p.Write(in.rec.Text); err != nil {
			conn.Close()
			return nil
		}
	}
	s.mu.Lock()
	s.newFacts = true
	s.mu.Unlock()
	b.opened(u) // the session's goroutine reads it (see carry)
	b.log().Debug("bridge: took a connection to the game over", zap.String("session", s.id))
	return u
}

// detachedErr reports whether err says the session left this bridge.
func detachedErr(err error) bool { return errors.Is(err, backend.ErrDetached) }
