package web

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Admission is a player's place within the gateway's limits, taken before
// a connection costs anything: given back with Release.
type Admission = interface{ Release() }

// Admitter is the gateway's admission, asked before each cost a browser's
// connection brings: its TLS handshake and HTTP request, its WebSocket
// upgrade, its session's token. An error refuses it, and says why in words
// for the player.
type Admitter interface {
	// AdmitConnection is asked as a connection is accepted (see Gate),
	// before its TLS handshake: the place it takes is given back once its
	// first request is read.
	AdmitConnection(remote net.Addr) (Admission, error)
	// AdmitSession is asked before a WebSocket that would be a new
	// session is upgraded; paid says its connection was admitted already.
	// The place goes with the Conn to the gateway (Conn.Admission).
	AdmitSession(remote net.Addr, paid bool) (Admission, error)
}

// Gate makes each connection ln accepts ask the Admission before anything
// is read of it (past a PROXY header): before a TLS listener wrapped
// around it shakes hands, before its HTTP request. A refused connection is
// closed, after a 503 answer where it is not TLS (secure false). The
// connections of trusted proxies (ForwardedFrom) pass: their players are
// known only from their requests, and are admitted at the upgrade.
func (l *Listener) Gate(ln net.Listener, secure bool) net.Listener {
	return gateListener{ln, l, secure}
}

type gateListener struct {
	net.Listener
	l      *Listener
	secure bool
}

func (g gateListener) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &gateConn{Conn: c, l: g.l, secure: g.secure}, nil
}

// gateConn is a connection that asks for its admission at its first Read.
type gateConn struct {
	net.Conn
	l      *Listener
	secure bool
	once   sync.Once
	err    error // the refusal; set in once

	mu   sync.Mutex
	adm  Admission // held until the first request is read
	paid bool      // admitted here: the rate is paid
}

func (c *gateConn) Read(p []byte) (int, error) {
	c.once.Do(c.admit)
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

func (c *gateConn) admit() {
	adm := c.l.Admission
	if adm == nil {
		return
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil && c.l.trusted(ap.Addr()) {
		return
	}
	a, err := adm.AdmitConnection(c.RemoteAddr())
	if err != nil {
		c.err = err
		if !c.secure {
			msg := err.Error() + "\n"
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.Conn.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: " +
				strconv.Itoa(len(msg)) + "\r\n\r\n" + msg))
		}
		return
	}
	c.mu.Lock()
	c.adm, c.paid = a, true
	c.mu.Unlock()
}

// handshakeDone gives the connection's place back: its handshake is over.
func (c *gateConn) handshakeDone() {
	c.mu.Lock()
	a := c.adm
	c.adm = nil
	c.mu.Unlock()
	if a != nil {
		a.Release()
	}
}

func (c *gateConn) wasPaid() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paid
}

func (c *gateConn) Close() error {
	c.handshakeDone()
	return c.Conn.Close()
}

// gateOf finds the gateConn under a connection the HTTP server has.
func gateOf(c net.Conn) *gateConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	g, _ := c.(*gateConn)
	return g
}

type gateKey struct{}

// connContext keeps a request's gateConn where its handler finds it.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if g := gateOf(c); g != nil {
		return context.WithValue(ctx, gateKey{}, g)
	}
	return ctx
}

// connState ends a gated connection's handshake at its first request.
func connState(c net.Conn, st http.ConnState) {
	if st == http.StateNew {
		return
	}
	if g := gateOf(c); g != nil {
		g.handshakeDone()
	}
}

// paidConn reports whether the request's connection was admitted at the
// gate.
func paidConn(r *http.Request) bool {
	g, _ := r.Context().Value(gateKey{}).(*gateConn)
	return g != nil && g.wasPaid()
}
