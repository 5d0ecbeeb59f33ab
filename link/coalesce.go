package link

import (
	"encoding/binary"
	"net"
	"sync"
)

// yamux writes every frame as two writes, its 12-byte header and then its
// body; with TCP_NODELAY that is two packets and two system calls per
// frame. coalescedConn holds back the header of a data frame that has a body
// and sends it together with that body. Only yamux's send loop writes to the
// connection, so the two writes always come in that order.
type coalescedConn struct {
	net.Conn
	hdr    [yamuxHeaderLen]byte
	held   bool
	buf    []byte
	broken func()
	once   sync.Once
}

const (
	yamuxHeaderLen = 12
	yamuxTypeData  = 0
)

// Coalesce wraps a link connection before yamux takes it. When a read
// fails, broken (if not nil) runs once before yamux learns of it.
//
// That order matters: yamux v0.1.2 marks a dead session shut down before it
// closes its streams, and in between every goroutine blocked in Stream.Read
// spins. With thousands of sessions the spinners starve the goroutine that
// would close the streams, for minutes. broken lets the owner wake its
// readers with a deadline and wait for them first.
func Coalesce(c net.Conn, broken func()) net.Conn { return &coalescedConn{Conn: c, broken: broken} }

func (c *coalescedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.broken != nil {
		c.once.Do(c.broken)
	}
	return n, err
}

func (c *coalescedConn) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
		_, err := c.Conn.Write(c.buf)
		if cap(c.buf) > 64<<10 {
			c.buf = nil
		}
		return len(p), err
	}
	if len(p) == yamuxHeaderLen && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		copy(c.hdr[:], p)
		c.held = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}
