// Package fdmsg carries messages and open descriptors over a Unix socket:
// between a running gateway process and the new one of an upgrade.
package fdmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"holdfast/internal/netx"
)

const (
	headerLen = 9 // kind:u8 length:u32 descriptors:u32
	// MaxFiles bounds the descriptors one message carries: Linux passes at
	// most 253 in one SCM_RIGHTS message.
	MaxFiles = 253
	// MaxPayload bounds a message's payload.
	MaxPayload = 1 << 30
)

// ErrProtocol is a message that breaks the rules above.
var ErrProtocol = errors.New("fdmsg: protocol error")

// Conn carries messages, each with descriptors, both ways. One goroutine
// may send while another receives.
type Conn struct {
	c        *net.UnixConn
	rmu, wmu sync.Mutex
}

// New wraps a connected Unix stream socket.
func New(c *net.UnixConn) *Conn { return &Conn{c: c} }

// FromFile takes an inherited descriptor of a connected Unix socket.
func FromFile(f *os.File) (*Conn, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("fdmsg: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("fdmsg: %w: not a Unix socket", ErrProtocol)
	}
	return New(uc), nil
}

// Pair returns the two ends of a new connection: this process's, and a
// file for the other process to inherit.
func Pair() (*Conn, *os.File, error) {
	mine, theirs, err := netx.Socketpair("fdmsg")
	if err != nil {
		return nil, nil, fmt.Errorf("fdmsg: %w", err)
	}
	c, err := FromFile(mine)
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }

// SetDeadline bounds the sends and receives under way and to come.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// Send sends one message: its kind, payload, and descriptors: files,
// sockets, anything whose SyscallConn names one. The caller still owns
// them (the other process receives copies), and none is closed before
// the message has gone: each is held open for the send.
func (c *Conn) Send(kind byte, payload []byte, files []syscall.Conn) error {
	if len(files) > MaxFiles || len(payload) > MaxPayload {
		return fmt.Errorf("fdmsg: %w: %d descriptors, %d bytes", ErrProtocol, len(files), len(payload))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	hdr := make([]byte, headerLen)
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	binary.BigEndian.PutUint32(hdr[5:], uint32(len(files)))
	// The descriptors travel with the header's bytes.
	err := holding(files, make([]int, 0, len(files)), func(fds []int) error {
		var oob []byte
		if len(fds) > 0 {
			oob = syscall.UnixRights(fds...)
		}
		_, _, err := c.c.WriteMsgUnix(hdr, oob, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("fdmsg: send: %w", err)
	}
	if len(payload) == 0 {
		return nil // a write of nothing could fail on a peer that has its message and left
	}
	if _, err := c.c.Write(payload); err != nil {
		return fmt.Errorf("fdmsg: send: %w", err)
	}
	return nil
}

// holding calls send with the descriptors of files, each held open
// meanwhile: a descriptor number let go of could be closed by its owner
// and name another file by the time it is sent. Not Fd(), which would
// make a socket blocking for every process that shares it.
func holding(files []syscall.Conn, fds []int, send func([]int) error) error {
	if len(files) == 0 {
		return send(fds)
	}
	raw, err := files[0].SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = holding(files[1:], append(fds, int(fd)), send) }); err != nil {
		return err
	}
	return serr
}

// Recv receives one message. The descriptors are the caller's to close;
// they come non-blocking, in the runtime's poller, as the sender's own
// were: ready for netx.NewConn, net.FileConn or net.FileListener.
func (c *Conn) Recv() (kind byte, payload []byte, files []*os.File, err error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	hdr := make([]byte, headerLen)
	oob := make([]byte, syscall.CmsgSpace(MaxFiles*4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(hdr, oob)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("fdmsg: receive: %w", err)
	}
	if n == 0 {
		return 0, nil, nil, io.EOF
	}
	files, perr := parseRights(oob[:oobn])
	fail := func(err error) (byte, []byte, []*os.File, error) {
		for _, f := range files {
			f.Close()
		}
		return 0, nil, nil, err
	}
	if perr != nil {
		return fail(perr)
	}
	if flags&syscall.MSG_CTRUNC != 0 {
		return fail(fmt.Errorf("fdmsg: %w: descriptors cut short", ErrProtocol))
	}
	if _, err := io.ReadFull(c.c, hdr[n:]); err != nil {
		return fail(fmt.Errorf("fdmsg: receive: %w", err))
	}
	size, nfiles := binary.BigEndian.Uint32(hdr[1:]), binary.BigEndian.Uint32(hdr[5:])
	if size > MaxPayload || int(nfiles) != len(files) {
		return fail(fmt.Errorf("fdmsg: %w: %d bytes, %d descriptors announced, %d came", ErrProtocol, size, nfiles, len(files)))
	}
	payload = make([]byte, size)
	if _, err := io.ReadFull(c.c, payload); err != nil {
		return fail(fmt.Errorf("fdmsg: receive: %w", err))
	}
	return hdr[0], payload, files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("fdmsg: %w: %v", ErrProtocol, err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
			// The flag is the socket's, shared with the sender: set
			// already, unless a process before made it blocking.
			syscall.SetNonblock(fd, true)
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files, nil
}
