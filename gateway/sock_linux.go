package gateway

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"holdfast/internal/netx"
)

// TCP states, from linux/tcp_states.h.
const (
	tcpClose     = 7 // reset, or fully closed
	tcpCloseWait = 8 // the peer sent FIN; we have not closed yet
)

// peerClosed reports whether the player's side of the connection has gone
// (FIN or reset). It asks the kernel for the socket's TCP state, which
// tells even when unread input waits in front of the FIN, as it does for
// a player whose held input is full.
func peerClosed(c net.Conn) bool {
	sc := tcpConn(c)
	if sc == nil {
		return false
	}
	closed := true // a socket that cannot be asked is gone
	onSocket(sc, func(fd int) {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		closed = err == nil && (info.State == tcpCloseWait || info.State == tcpClose)
	})
	return closed
}

// onSocket runs f with sc's descriptor, if sc is a socket that has one.
func onSocket(sc syscall.Conn, f func(fd int)) {
	if sc == nil {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { f(int(fd)) })
	}
}

// roundTrip returns the kernel's estimate of the round trip to the player,
// smoothed from the handshake on. It reports false for a connection that
// came through a proxy (a PROXY header): the round trip measured is the
// proxy's, not the player's.
func roundTrip(c net.Conn) (time.Duration, bool) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	var rtt time.Duration
	ok := false
	onSocket(plainSocket(c), func(fd int) {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		ok = err == nil && info.Rtt > 0
		if ok {
			rtt = time.Duration(info.Rtt) * time.Microsecond
		}
	})
	return rtt, ok
}

// tcpConn finds the socket under TLS and a PROXY header, if any.
func tcpConn(c net.Conn) syscall.Conn {
	for {
		switch v := c.(type) {
		case *tls.Conn:
			c = v.NetConn()
		case interface{ Raw() net.Conn }: // a connection that started with a PROXY header
			c = v.Raw()
		default:
			return plainSocket(c)
		}
	}
}

// plainSocket returns c's socket if c is one as it is, with nothing above
// the kernel's: a TCP connection accepted here, or a socket received from
// another process (then a TLS player's is the local socket of the old
// process's relay, and the kernel's TCP figures are not to be had).
func plainSocket(c net.Conn) syscall.Conn {
	switch v := c.(type) {
	case *net.TCPConn:
		return v
	case *netx.Conn:
		return v
	}
	return nil
}

// writeNow writes what of b a plain socket takes at once, without
// waiting, and returns how much that was: nothing for a connection that
// is not a plain socket, or whose write deadline has passed. Most writes to a player go
// whole into the kernel's buffer, and need no deadline: setting one on
// each costs a runtime lock and a timer, a twelfth of a busy gateway's
// processor time. What the kernel does not take at once, the caller
// writes with a deadline.
func writeNow(c net.Conn, b []byte) int {
	sc := plainSocket(c)
	if sc == nil {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, err := unix.Write(int(fd), b[n:])
			if k > 0 {
				n += k
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil || k <= 0 {
				break // full (EAGAIN), or failed: the caller's write finds out which
			}
		}
		return true // done, whatever came of it: never wait here
	})
	return n
}

// unread reports whether bytes from the player wait in the kernel for the
// socket's next read. Only for a plain socket: under TLS or a PROXY
// header a wrapper may hold some already.
func unread(c net.Conn) bool {
	n := 0
	onSocket(plainSocket(c), func(fd int) { n, _ = unix.IoctlGetInt(fd, unix.SIOCINQ) })
	return n > 0
}
