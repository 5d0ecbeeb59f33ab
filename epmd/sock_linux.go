package epmd

import (
	"net"
	"syscall"
)

// connAlive reports whether a registration socket is still open and silent.
// It peeks without consuming and without taking the read lock that the
// registration's own goroutine holds while it waits.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	err = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EOF (n == 0), pending bytes (which end a registration anyway) and
		// hard errors all mean the registration is over.
		alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
	})
	return err == nil && alive
}

// connFD returns the socket's descriptor number, which DUMP shows as Erlang's
// epmd does; -1 when there is none.
func connFD(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}
