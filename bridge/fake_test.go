package bridge

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"holdfast/backend"
	"holdfast/gateway/telnet"
)

const waitFor = 10 * time.Second

// fakePlayer stands for a session package backend hands the bridge: the
// test types into it and reads what the bridge writes to it.
type fakePlayer struct {
	t     testing.TB
	id    string
	in    chan any // []byte input, backend.Facts, gmcpMsg, or io.EOF to leave
	facts backend.Facts
	// handedOver says the session came from the bridge before (a deploy).
	handedOver bool

	mu       sync.Mutex
	out      bytes.Buffer
	events   []string // "prompt at N", "echo off", "gmcp PKG DATA", "closed"
	onFacts  func(backend.Facts)
	onGMCP   func(string, []byte)
	closed   bool
	changed  chan struct{} // closed and replaced on every write or event
	deadline chan struct{} // closed by SetReadDeadline
	gone     chan struct{} // closed by Close
	detached chan struct{} // closed by detach
	reads    int
	offset   uint64 // input handed over, as package backend counts it
}

type gmcpMsg struct {
	pkg  string
	data string
}

func newPlayer(t testing.TB, id string, f backend.Facts) *fakePlayer {
	return &fakePlayer{t: t, id: id, facts: f, in: make(chan any, 64),
		changed: make(chan struct{}), deadline: make(chan struct{}), gone: make(chan struct{}),
		detached: make(chan struct{})}
}

func (p *fakePlayer) ID() string { return p.id }

func (p *fakePlayer) HandedOver() bool { return p.handedOver }

func (p *fakePlayer) Detached() <-chan struct{} { return p.detached }

func (p *fakePlayer) InputOffset() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.offset
}

// detach has the session leave the bridge, as package backend does: the
// channel closes at once, and reads return ErrDetached once what was
// typed before has been read.
func (p *fakePlayer) detach() {
	close(p.detached)
	p.in <- fmt.Errorf("released: %w", backend.ErrDetached)
}

func (p *fakePlayer) Read(b []byte) (int, error) {
	for {
		select {
		case v := <-p.in:
			p.mu.Lock()
			p.reads++
			onFacts, onGMCP := p.onFacts, p.onGMCP
			p.mu.Unlock()
			switch v := v.(type) {
			case []byte:
				n := copy(b, v)
				p.mu.Lock()
				p.offset += uint64(n)
				p.mu.Unlock()
				return n, nil
			case backend.Facts:
				p.mu.Lock()
				p.facts = v
				p.mu.Unlock()
				if onFacts != nil {
					onFacts(v)
				}
			case gmcpMsg:
				if onGMCP != nil {
					onGMCP(v.pkg, []byte(v.data))
				}
			case error:
				return 0, v
			}
		case <-p.deadline:
			return 0, os.ErrDeadlineExceeded
		case <-p.gone:
			return 0, net.ErrClosed
		}
	}
}

func (p *fakePlayer) note(f func()) {
	p.mu.Lock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *fakePlayer) Write(b []byte) (int, error) {
	p.note(func() { p.out.Write(b) })
	return len(b), nil
}

func (p *fakePlayer) Close() error {
	p.note(func() {
		if !p.closed {
			p.closed = true
			p.events = append(p.events, "closed")
			close(p.gone)
		}
	})
	return nil
}

func (p *fakePlayer) SetReadDeadline(time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.deadline:
	default:
		close(p.deadline)
	}
	return nil
}

func (p *fakePlayer) Prompt(text string) error {
	p.note(func() {
		p.out.WriteString(text)
		p.events = append(p.events, fmt.Sprintf("prompt after %q", lastLine(p.out.String())))
	})
	return nil
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func (p *fakePlayer) SetEcho(on bool) error {
	p.note(func() { p.events = append(p.events, map[bool]string{true: "echo on", false: "echo off"}[on]) })
	return nil
}

func (p *fakePlayer) SendGMCP(pkg string, data []byte) error {
	p.note(func() { p.events = append(p.events, "gmcp "+pkg+" "+string(data)) })
	return nil
}

func (p *fakePlayer) Facts() backend.Facts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.facts
}

func (p *fakePlayer) OnFacts(f func(backend.Facts)) {
	p.mu.Lock()
	p.onFacts = f
	p.mu.Unlock()
}

func (p *fakePlayer) OnGMCP(f func(string, []byte)) {
	p.mu.Lock()
	p.onGMCP = f
	p.mu.Unlock()
}

func (p *fakePlayer) typeLine(s string) { p.in <- []byte(s + "\n") }

// waitFor waits until cond, called with the player's lock held, holds.
func (p *fakePlayer) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		p.mu.Lock()
		ok, changed := cond(), p.changed
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			p.mu.Lock()
			defer p.mu.Unlock()
			p.t.Fatalf("player %s: no %s within %v; output %q, events %q", p.id, what, waitFor, p.out.String(), p.events)
		}
	}
}

func (p *fakePlayer) waitOutput(s string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("output %q", s), func() bool { return strings.Contains(p.out.String(), s) })
}

func (p *fakePlayer) waitEvent(e string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("event %q", e), func() bool { return contains(p.events, e) })
}

func (p *fakePlayer) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *fakePlayer) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fakeGame is a telnet game over a real socket: the test accepts its
// connections and scripts them.
type fakeGame struct {
	t     testing.TB
	ln    net.Listener
	addr  string
	conns chan *gameConn

	mu  sync.Mutex
	all []*gameConn // every connection accepted
}

func startGame(t testing.TB) *fakeGame {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGame{t: t, addr: ln.Addr().String()}
	g.listen(ln)
	return g
}

// listen serves on ln, until stop.
func (g *fakeGame) listen(ln net.Listener) {
	g.ln = ln
	g.conns = make(chan *gameConn, 64)
	conns := g.conns
	go func() {
		defer close(conns)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			gc := &gameConn{t: g.t, c: c, changed: make(chan struct{})}
			g.t.Cleanup(func() { c.Close() })
			g.mu.Lock()
			g.all = append(g.all, gc)
			g.mu.Unlock()
			go gc.read()
			conns <- gc
		}
	}()
	g.t.Cleanup(func() { ln.Close() })
}

// stop closes the listener and every connection accepted so far.
func (g *fakeGame) stop() {
	g.ln.Close()
	for range g.conns {
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, gc := range g.all {
		gc.c.Close()
	}
}

// dropAll closes every connection accepted so far and goes on listening:
// a game restarted faster than anyone could connect to it in between.
func (g *fakeGame) dropAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, gc := range g.all {
		gc.c.Close()
	}
}

// restart listens again on the same address.
func (g *fakeGame) restart() {
	g.t.Helper()
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatal(err)
	}
	g.listen(ln)
}

func (g *fakeGame) accept() *gameConn {
	g.t.Helper()
	select {
	case gc, ok := <-g.conns:
		if !ok {
			g.t.Fatal("the game stopped listening")
		}
		return gc
	case <-time.After(waitFor):
		g.t.Fatalf("no connection to the game within %v", waitFor)
	}
	return nil
}

// gameConn is one connection the game accepted: what the bridge sends on
// it is decoded with the gateway's decoder and written down.
type gameConn struct {
	t   testing.TB
	c   net.Conn
	dec telnet.Decoder

	mu      sync.Mutex
	raw     []byte
	text    []byte
	events  []string // "WILL 24", "SB 24 <payload>" ...
	eof     bool
	changed chan struct{}
}

func (gc *gameConn) read() {
	buf := make([]byte, 4096)
	for {
		n, err := gc.c.Read(buf)
		gc.mu.Lock()
		gc.raw = append(gc.raw, buf[:n]...)
		gc.text = gc.dec.Decode(gc.text, buf[:n], gc)
		if err != nil {
			gc.eof = true
		}
		close(gc.changed)
		gc.changed = make(chan struct{})
		gc.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (gc *gameConn) Negotiate(verb, opt byte) {
	gc.events = append(gc.events, fmt.Sprintf("%s %d", verbName(verb), opt))
}

func (gc *gameConn) Subnegotiation(opt byte, p []byte, _ bool) {
	gc.events = append(gc.events, fmt.Sprintf("SB %d %q", opt, p))
}

func (gc *gameConn) Command(c byte) { gc.events = append(gc.events, fmt.Sprintf("CMD %d", c)) }

func verbName(v byte) string {
	return map[byte]string{telnet.WILL: "WILL", telnet.WONT: "WONT", telnet.DO: "DO", telnet.DONT: "DONT"}[v]
}

func (gc *gameConn) send(b ...byte) {
	gc.t.Helper()
	gc.c.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := gc.c.Write(b); err != nil {
		gc.t.Fatalf("game: write: %v", err)
	}
}

func (gc *gameConn) sendText(s string) { gc.send([]byte(s)...) }

func (gc *gameConn) waitFor(what string, cond func() bool) {
	gc.t.Helper()
	deadline := time.After(waitFor)
	for {
		gc.mu.Lock()
		ok, changed := cond(), gc.changed
		gc.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			gc.mu.Lock()
			defer gc.mu.Unlock()
			gc.t.Fatalf("game: no %s within %v; text %q, events %q", what, waitFor, gc.text, gc.events)
		}
	}
}

func (gc *gameConn) waitEvent(e string) {
	gc.t.Helper()
	gc.waitFor(fmt.Sprintf("event %q", e), func() bool { return contains(gc.events, e) })
}

func (gc *gameConn) waitText(s string) {
	gc.t.Helper()
	gc.waitFor(fmt.Sprintf("text %q", s), func() bool { return bytes.Contains(gc.text, []byte(s)) })
}

func (gc *gameConn) waitEOF() {
	gc.t.Helper()
	gc.waitFor("end of the connection", func() bool { return gc.eof })
}

func (gc *gameConn) gotText() string {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	return string(gc.text)
}

// newBridge returns a Bridge to g, closed when the test ends, with short
// waits and the test's logger.
func newBridge(t testing.TB, upstream string) *Bridge {
	b := &Bridge{Upstream: upstream, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		GreetWait: 2 * time.Second, Logger: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))}
	t.Cleanup(func() { b.Close() })
	return b
}

// leave has the player leave, as package backend reports it.
func (p *fakePlayer) leave() { p.in <- io.EOF }
