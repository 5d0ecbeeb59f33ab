package gateway

import (
	"bytes"
	"crypto/tls"
	"encoding/gob"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Why a player was refused before a session started. Each is also the
// label of the refusals metric.
const (
	refusedTotal = "max_sessions"
	refusedPerIP = "max_per_ip"
	refusedRate  = "rate"
)

// What a refused player reads before the connection closes.
var refusalText = map[string]string{
	refusedTotal: "[holdfast] The game is full right now. Please try again later.\r\n",
	refusedPerIP: "[holdfast] Too many connections from your address. Please try again later.\r\n",
	refusedRate:  "[holdfast] Too many connection attempts from your address. Please wait a moment.\r\n",
}

// maxBuckets bounds the per-address rate state. Beyond it the buckets that
// have filled up again are forgotten; they hold nothing a new one would not.
const maxBuckets = 1 << 16

// bucket is a token bucket of connection attempts from one address.
type bucket struct {
	tokens float64
	last   time.Time
}

// clientIP is what the limits count by: the player's address, after any
// PROXY header, with IPv4-mapped IPv6 addresses unmapped, and an IPv6
// address taken as its /64, which one client holds whole.
func clientIP(a net.Addr) netip.Addr {
	var ip netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// allowRate takes one token from ip's bucket, with s.mu held, and reports
// whether there was one.
func (s *Server) allowRate(ip netip.Addr, now time.Time) bool {
	if s.ConnRate <= 0 {
		return true
	}
	burst := float64(max(s.ConnBurst, 1))
	b, ok := s.buckets[ip]
	if !ok {
		if len(s.buckets) >= maxBuckets {
			s.forgetFullBuckets(now, burst)
		}
		b = &bucket{tokens: burst, last: now}
		s.buckets[ip] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*s.ConnRate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forgetFullBuckets drops the buckets that have refilled, with s.mu held.
// When every address is still attempting, it drops them all rather than
// grow without bound: a flood from that many addresses is for a firewall.
func (s *Server) forgetFullBuckets(now time.Time, burst float64) {
	for ip, b := range s.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*s.ConnRate >= burst {
			delete(s.buckets, ip)
		}
	}
	if len(s.buckets) >= maxBuckets {
		clear(s.buckets)
	}
}

// ErrRefused is what a connection beyond the limits is refused with; the
// error that wraps it says which limit, in words for the player.
var ErrRefused = errors.New("gateway: refused")

type refusedError string // the limit, as refusalText names it

func (e refusedError) Error() string {
	return strings.TrimSpace(strings.TrimPrefix(refusalText[string(e)], "[holdfast] "))
}

func (e refusedError) Unwrap() error { return ErrRefused }

// A Pass is a new connection's place within the limits, taken before its
// handshake costs anything: until it becomes a session or is released, it
// counts as a session does, against the per-address and total limits.
type Pass struct {
	s    *Server
	ip   netip.Addr
	done bool // used or released; guarded by s.mu
}

// Release gives the place back. It may be called more than once, and
// after the pass became a session (then it does nothing).
func (p *Pass) Release() {
	if p == nil {
		return
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	p.releaseLocked()
}

func (p *Pass) releaseLocked() {
	if p.done {
		return
	}
	p.done = true
	p.s.npending--
	if p.s.pendingIP[p.ip]--; p.s.pendingIP[p.ip] <= 0 {
		delete(p.s.pendingIP, p.ip)
	}
}

// AdmitConnection is asked as a connection from addr is accepted, before
// its TLS handshake or anything else is read of it, where what it will be
// is not yet known (a web listener's: a page, a WebSocket, a resume). It
// pays the connection rate, and the connections in their handshake are
// bounded by the per-address and total limits; the sessions held are
// counted at AdmitSession. The pass is to be released when the handshake
// is over.
func (s *Server) AdmitConnection(addr net.Addr) (*Pass, error) {
	return s.admitAddr(addr, true, false)
}

// AdmitSession is asked before a connection from addr is made a new
// session at any cost (a WebSocket upgrade, a resume token): the sessions
// held and the connections in their handshake are counted against the
// per-address and total limits; the connection rate is paid unless paid
// already (AdmitConnection). The pass goes with the connection to Serve,
// which takes it over, or is released.
func (s *Server) AdmitSession(addr net.Addr, paid bool) (*Pass, error) {
	return s.admitAddr(addr, !paid, true)
}

func (s *Server) admitAddr(addr net.Addr, rate, sessions bool) (*Pass, error) {
	s.init()
	ip := clientIP(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, ErrServerClosed
	}
	if why := s.reserveLocked(ip, time.Now(), rate, sessions); why != "" {
		s.metrics.refused.WithLabelValues(why).Inc()
		s.log().Info("gateway: player refused", zap.Stringer("client", addr), zap.String("limit", why))
		return nil, refusedError(why)
	}
	return &Pass{s: s, ip: ip}, nil
}

// reserveLocked takes a place for a connection from ip, with s.mu held, or
// says which limit it exceeds: the rate, if it is to be paid, and the
// connections in their handshake, with the sessions held if counted.
func (s *Server) reserveLocked(ip netip.Addr, now time.Time, rate, sessions bool) string {
	total, mine := s.npending, s.pendingIP[ip]
	if sessions {
		total += len(s.sessions)
		mine += s.perIP[ip]
	}
	switch {
	case rate && !s.allowRate(ip, now):
		return refusedRate
	case s.MaxSessions > 0 && total >= s.MaxSessions:
		return refusedTotal
	case s.MaxPerIP > 0 && mine >= s.MaxPerIP:
		return refusedPerIP
	}
	s.npending++
	s.pendingIP[ip]++
	return ""
}

// passOf returns the pass a connection was admitted with before its
// handshake (a web listener's WebSocket, see AdmitSession), if any.
func (s *Server) passOf(c net.Conn) *Pass {
	a, ok := c.(interface{ Admission() interface{ Release() } })
	if !ok {
		return nil
	}
	if p, ok := a.Admission().(*Pass); ok && p != nil && p.s == s {
		return p
	}
	return nil
}

// refuseUnshaken refuses a connection before its handshake: a TLS one is
// closed at once, as no word can reach its player without the handshake
// that the limits are there to spare; any other is told why.
func (s *Server) refuseUnshaken(c net.Conn, why string) {
	if _, ok := c.(*tls.Conn); ok {
		c.Close() // before the handshake: no alert, nothing sent
		return
	}
	s.refuse(c, why)
}

// refuse tells a player why they cannot play now and closes the connection.
func (s *Server) refuse(c net.Conn, why string) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte(refusalText[why]))
	closeGently(c)
}

// closeGently closes c so that what was written arrives: closing a socket
// with unread input sends a reset, and a client that gets one may drop what
// it had not shown yet. Telnet clients send their negotiation at once, so
// the input is read, for at most a second, until the client closes too.
func closeGently(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	c.Close()
}

// limitState is the rate limits' accounting, for a gateway that takes
// over from this one.
type limitState struct {
	IP     netip.Addr
	Tokens float64
	Last   time.Time
}

// ExportLimits returns the per-address rate accounting, for a gateway
// process that takes over (the per-address session counts come with the
// sessions).
func (s *Server) ExportLimits() []byte {
	s.init()
	s.mu.Lock()
	list := make([]limitState, 0, len(s.buckets))
	for ip, b := range s.buckets {
		list = append(list, limitState{ip, b.tokens, b.last})
	}
	s.mu.Unlock()
	var buf bytes.Buffer
	gob.NewEncoder(&buf).Encode(list)
	return buf.Bytes()
}

// ImportLimits takes the rate accounting of the gateway this one takes
// over from. What does not decode is ignored: the limits start afresh.
func (s *Server) ImportLimits(b []byte) {
	s.init()
	var list []limitState
	if gob.NewDecoder(bytes.NewReader(b)).Decode(&list) != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range list {
		if len(s.buckets) >= maxBuckets {
			break
		}
		s.buckets[l.IP] = &bucket{tokens: l.Tokens, last: l.Last}
	}
}
