package link

import (
	"encoding/binary"
	"net"
)

// yamux writes every frame as two writes, its 12-byte header and then its
// body; with TCP_NODELAY that is two packets and two system calls per
// frame. coalescedConn holds back the header of a data frame that has a body
// and sends it together with that body. Only yamux's send loop writes to the
// connection, so the two writes always come in that order.
type coalescedConn struct {
	net.Conn
	hdr  [yamuxHeaderLen]byte
	held bool
	buf  []byte
}

const (
	yamuxHeaderLen = 12
	yamuxTypeData  = 0
)

// Coalesce wraps a link connection before yamux takes it.
func Coalesce(c net.Conn) net.Conn { return &coalescedConn{Conn: c} }

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
