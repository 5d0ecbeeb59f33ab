package netx

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is a connected socket that came from another process, read and
// written through the *os.File it arrived in, in the runtime's poller.
// net.FileConn would copy the descriptor, ask the kernel for the socket's
// type and both its addresses, and set keep-alive and no-delay again: ten
// system calls where this takes none, for each of the thousands of
// sessions an upgrade receives. The socket's options came with it, and
// its addresses are asked for only when wanted.
//
// The file must be non-blocking, as a socket sent from the runtime's
// poller is: os.NewFile then puts it in the poller, and deadlines work.
// Errors are a net.Conn's: *net.OpError, with net.ErrClosed for a read or
// a write once closed.
type Conn struct {
	f *os.File
}

// ErrNotPolled is a file that os.NewFile did not put in the runtime's
// poller (a blocking descriptor): deadlines would not work on it.
var ErrNotPolled = errors.New("netx: the descriptor is not in the runtime's poller")

// NewConn serves f as a net.Conn, and takes it: Close closes it.
func NewConn(f *os.File) (*Conn, error) {
	// A file not in the poller refuses deadlines.
	if err := f.SetDeadline(time.Time{}); err != nil {
		return nil, ErrNotPolled
	}
	return &Conn{f: f}, nil
}

func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	return n, opError("read", err)
}

func (c *Conn) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	return n, opError("write", err)
}

// Close closes this process's descriptor of the socket.
func (c *Conn) Close() error { return opError("close", c.f.Close()) }

// CloseWrite shuts the socket's sending side down, as a TCPConn's does.
func (c *Conn) CloseWrite() error {
	return c.control("shutdown", func(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) })
}

func (c *Conn) SetDeadline(t time.Time) error      { return opError("set", c.f.SetDeadline(t)) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return opError("set", c.f.SetReadDeadline(t)) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return opError("set", c.f.SetWriteDeadline(t)) }

// SyscallConn gives the socket's descriptor, as a TCPConn's does: for the
// kernel's view of the connection, or to pass it on.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.f.SyscallConn() }

// LocalAddr asks the kernel for the socket's own address; nil if it
// cannot say.
func (c *Conn) LocalAddr() net.Addr { return c.addr(unix.Getsockname) }

// RemoteAddr asks the kernel for the peer's address; nil if it cannot
// say.
func (c *Conn) RemoteAddr() net.Addr { return c.addr(unix.Getpeername) }

func (c *Conn) addr(get func(int) (unix.Sockaddr, error)) net.Addr {
	var sa unix.Sockaddr
	if c.control("address", func(fd int) (err error) { sa, err = get(fd); return err }) != nil {
		return nil
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return nil
}

func (c *Conn) control(op string, f func(fd int) error) error {
	raw, err := c.f.SyscallConn()
	if err != nil {
		return opError(op, err)
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return opError(op, err)
	}
	return opError(op, ferr)
}

// opError makes a file's error a socket's: what callers of a net.Conn
// test for (net.ErrClosed, a net.Error's Timeout) is as they expect.
func opError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if pe, ok := err.(*os.PathError); ok {
		err = pe.Err // what the *os.File's Read and Write return
	}
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "socket", Err: err}
}
