package gateway

import (
	"bytes"
	"encoding/gob"
	"io"
	"net"
	"net/netip"
	"time"
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

// refusal says which limit a new player from ip exceeds, if any, with s.mu
// held.
func (s *Server) refusal(ip netip.Addr, now time.Time) string {
	switch {
	case !s.allowRate(ip, now):
		return refusedRate
	case s.MaxSessions > 0 && len(s.sessions) >= s.MaxSessions:
		return refusedTotal
	case s.MaxPerIP > 0 && s.perIP[ip] >= s.MaxPerIP:
		return refusedPerIP
	}
	return ""
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
