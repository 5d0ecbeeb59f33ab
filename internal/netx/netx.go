// Package netx holds small networking helpers shared by the servers.
package netx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RetryableAccept reports whether Accept failed for a passing reason, such as
// running out of file descriptors, rather than because the listener is gone.
func RetryableAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// IsTimeout reports whether err is a deadline's (a net.Error whose
// Timeout is true). A reader that waits under a deadline and parks when it
// passes asks this at every park: the error is most often the net.Error
// itself, found without errors.As, whose reflection grew each parking
// reader's stack.
func IsTimeout(err error) bool {
	ne, ok := err.(net.Error)
	if !ok && !errors.As(err, &ne) {
		return false
	}
	return ne.Timeout()
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

// Socket returns c's socket, under whatever wraps it (a PROXY header
// reader): its descriptor can be sent to another process as it is.
func Socket(c any) (syscall.Conn, error) {
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
	return sc, nil
}

// SetNonblock makes c's socket non-blocking, as the runtime's poller
// needs it, whatever another process that shares it did.
func SetNonblock(c any) error {
	sc, err := Socket(c)
	if err != nil {
		return err
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), true) }); err != nil {
		return err
	}
	return serr
}

// FD is a descriptor of this process's own, kept out of the runtime's
// poller: a copy of a socket to send to another process costs a dup and a
// close, where an *os.File of it would also join the poller and leave it.
type FD int

// DupFD returns a new descriptor of c's socket, under whatever wraps it,
// closed on exec.
func DupFD(c any) (FD, error) {
	sc, err := Socket(c)
	if err != nil {
		return -1, err
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	return FD(fd), nil
}

// Close closes the descriptor.
func (fd FD) Close() error { return syscall.Close(int(fd)) }

// SyscallConn gives the descriptor to Control, for sending; an FD is not
// read or written.
func (fd FD) SyscallConn() (syscall.RawConn, error) { return rawFD(fd), nil }

type rawFD int

var errNoIO = errors.New("netx: an FD is not read or written")

func (fd rawFD) Control(f func(uintptr)) error  { f(uintptr(fd)); return nil }
func (fd rawFD) Read(func(uintptr) bool) error  { return errNoIO }
func (fd rawFD) Write(func(uintptr) bool) error { return errNoIO }

// Dup returns a new descriptor of c's socket, under whatever wraps it,
// leaving c as it is: for another process to carry the connection on.
func Dup(c any) (*os.File, error) {
	fd, err := DupFD(c)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "socket"), nil
}
