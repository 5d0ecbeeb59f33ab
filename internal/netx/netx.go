// Package netx holds small networking helpers shared by the servers.
package netx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// RetryableAccept reports whether Accept failed for a passing reason, such as
// running out of file descriptors, rather than because the listener is gone.
func RetryableAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// Backoff returns the next delay of an exponential backoff: min after zero,
// then doubling up to max.
func Backoff(d, min, max time.Duration) time.Duration {
	if d == 0 {
		return min
	}
	if d *= 2; d > max {
		d = max
	}
	return d
}

// Dup returns a new descriptor of c's socket, under whatever wraps it (a
// PROXY header reader), leaving c as it is: for another process to carry
// the connection on.
func Dup(c any) (*os.File, error) {
	for {
		w, ok := c.(interface{ Raw() net.Conn })
		if !ok {
			break
		}
		c = w.Raw()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("a %T has no descriptor", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup: %w", derr)
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "socket"), nil
}
