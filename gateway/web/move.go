package web

import (
	"bytes"
	"encoding/gob"
	"errors"
	"net"
	"slices"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/netx"
)

// movedConn is a resumable Conn's state as it goes to another gateway
// process in an upgrade. Its WebSocket does not go: the page opens a new
// one to the new process, with its token.
type movedConn struct {
	Proto     string
	Term      *movedTerminal
	Local     string
	Remote    string
	TLS       bool
	TokenHash string
	FreshHash string
	Sent      uint64
	Acked     uint64
	Received  uint64
	Replay    []byte
	In        []byte
	Notices   []string
}

type movedTerminal struct {
	Client        string
	Width, Height uint16
	Text          bool
	State         uint8
	Verb, SBOpt   byte
	SB, Partial   []byte
	TTypes        int
	On            [2][256]bool
}

// errNotMovable is Export's answer for a Conn whose page will not come
// back by itself: it is relayed instead.
var errNotMovable = errors.New("web: only a resumable connection moves")

// Relayed reports whether the connection must stay in this process when
// its session moves to another: one whose page will not reconnect by
// itself. A resumable one moves by Export.
func (c *Conn) Relayed() bool { return !c.resumable }

// Export freezes the Conn and returns its state for another process.
// Nothing more is taken from the page until Moved, once the batch it goes
// in has committed (the page is told to reconnect, to the new process,
// which now accepts on the same socket), or Thaw, if the batch failed (the
// Conn carries on here, and the page never knew).
func (c *Conn) Export() ([]byte, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.resumable || c.closed || c.ended != nil {
		return nil, errNotMovable
	}
	c.frozen = true
	// The page's grace waits for the move: ended here meanwhile, the
	// session would be lost if the move failed. Thaw starts it again.
	away := c.away != nil
	if away {
		c.away.Stop()
		c.away = nil
	}
	m := movedConn{
		Proto: c.proto, Local: c.local.String(), Remote: c.remote.String(), TLS: c.tls,
		TokenHash: c.token, FreshHash: c.fresh, Sent: c.sent, Acked: c.acked, Received: c.received,
		Replay: bytes.Clone(c.replay), In: bytes.Clone(c.in), Notices: slices.Clone(c.notices),
	}
	if t := c.term; t != nil {
		m.Term = &movedTerminal{
			Client: t.client, Width: t.width, Height: t.height, Text: t.text,
			State: uint8(t.st), Verb: t.verb, SBOpt: t.sbOpt,
			SB: bytes.Clone(t.sb), Partial: bytes.Clone(t.partial), TTypes: t.ttypes, On: t.on,
		}
	}
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(m)
	if err != nil {
		c.frozen = false
		if away {
			c.holdLocked(c.gen)
		}
		c.broadcastLocked()
		return nil, err
	}
	c.moving = [2]string{c.token, c.fresh}
	c.l.markMoving(true, c.moving[:]...)
	return buf.Bytes(), nil
}

// Moved tells the page of an exported Conn to reconnect (1012): its
// session is the new process's now.
func (c *Conn) Moved() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen, c.gone = false, true
	if ws := c.ws; ws != nil {
		c.ws = nil
		c.gen++
		c.l.closeWS(ws, statusRestart, "the gateway is restarting: reconnect")
	}
	c.broadcastLocked()
}

// Thaw lets an exported Conn carry on here: its batch did not move.
func (c *Conn) Thaw() {
	c.mu.Lock()
	defer c.mu.Unlock()
	// What Export marked: the tokens may have been spent since (the page's
	// grace ran out meanwhile).
	c.l.markMoving(false, c.moving[:]...)
	c.moving = [2]string{}
	c.frozen = false
	if c.ws == nil && !c.closed && c.ended == nil {
		c.holdLocked(c.gen) // the grace Export stopped, whole again
		return
	}
	c.broadcastLocked()
}

// Restore makes a Conn from another process's Export: it waits for its
// page to come back, as after a broken connection.
func (l *Listener) Restore(state []byte) (net.Conn, error) {
	l.init()
	var m movedConn
	if err := gob.NewDecoder(bytes.NewReader(state)).Decode(&m); err != nil {
		return nil, err
	}
	c := &Conn{
		l: l, proto: m.Proto, resumable: true,
		local: netx.Addr(m.Local), remote: parseAddr(m.Remote), tls: m.TLS,
		token: m.TokenHash, fresh: m.FreshHash, sent: m.Sent, acked: m.Acked, received: m.Received, replay: m.Replay, in: m.In,
		notices: m.Notices, arriving: true,
	}
	if t := m.Term; t != nil {
		c.term = &terminal{
			client: t.Client, width: t.Width, height: t.Height, text: t.Text,
			st: tstate(t.State), verb: t.Verb, sbOpt: t.SBOpt,
			sb: t.SB, partial: t.Partial, ttypes: t.TTypes, on: t.On,
		}
	}
	c.mu.Lock()
	c.holdLocked(c.gen)
	c.mu.Unlock()
	l.mu.Lock()
	for _, h := range []string{c.token, c.fresh} {
		if h != "" {
			l.tokens[h] = c
		}
	}
	l.broadcastArrivalLocked()
	l.mu.Unlock()
	return c, nil
}

// Arrived makes a restored Conn this process's: the move it came in has
// committed, and its page is taken back here from now on.
func (c *Conn) Arrived() {
	c.mu.Lock()
	c.arriving = false
	c.mu.Unlock()
}

// holdLocked starts the wait for the page: the grace period.
func (c *Conn) holdLocked(gen uint64) {
	if c.away != nil {
		c.away.Stop()
	}
	c.away = time.AfterFunc(c.l.grace(), func() {
		c.mu.Lock()
		var wake func()
		if c.ws == nil && !c.closed && gen == c.gen {
			c.l.metrics.expired.Inc()
			c.l.log().Info("web: the page did not come back in time", zap.Stringer("client", c.remote))
			wake = c.endLocked()
		}
		c.mu.Unlock()
		call(wake) // a parked session's reader finds the end
	})
	c.broadcastLocked()
}

func parseAddr(s string) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", s); err == nil {
		return a
	}
	return netx.Addr(s)
}

// ExpectArrivals tells the listener that sessions are arriving from
// another process: a page that reconnects before its session has arrived
// waits for it, instead of being told it has none.
func (l *Listener) ExpectArrivals() {
	l.init()
	l.mu.Lock()
	l.arriving = true
	l.mu.Unlock()
}

// ArrivalsDone says every session that was to arrive has.
func (l *Listener) ArrivalsDone() {
	l.init()
	l.mu.Lock()
	l.arriving = false
	l.broadcastArrivalLocked()
	l.mu.Unlock()
}

func (l *Listener) broadcastArrivalLocked() {
	if l.arrival != nil {
		close(l.arrival)
	}
	l.arrival = make(chan struct{})
}
