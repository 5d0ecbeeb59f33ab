package link

import (
	"encoding/binary"
	"errors"
	"os"
)

// The link's multiplexing is yamux's wire format (its spec.md), so that
// gateways and backends of releases that used the yamux library link to
// this one: every frame is a 12-byte header, and a data frame's body
// follows it.
//
//	version:u8 (0) type:u8 flags:u16 stream:u32 length:u32
//
// type is data (length is the body's), a window update (length is how
// many more bytes the receiver may be sent on the stream), a ping
// (stream 0, length an opaque value the answer repeats) or go away
// (stream 0, length a reason). The flags open (SYN), acknowledge (ACK),
// half-close (FIN) or reset (RST) a stream; they ride on a stream's data
// or window update frames.
const (
	muxHeaderLen = 12
	muxVersion   = 0

	muxData   = 0
	muxWindow = 1
	muxPing   = 2
	muxGoAway = 3

	flagSYN = 1
	flagACK = 2
	flagFIN = 4
	flagRST = 8

	goAwayNormal   = 0
	goAwayProtocol = 1

	// streamWindow is each stream's receive window, at its start and at
	// most: yamux's, which a peer of an earlier release assumes.
	streamWindow = 256 << 10
)

type muxHeader [muxHeaderLen]byte

func (h *muxHeader) version() uint8    { return h[0] }
func (h *muxHeader) typ() uint8        { return h[1] }
func (h *muxHeader) flags() uint16     { return binary.BigEndian.Uint16(h[2:]) }
func (h *muxHeader) stream() uint32    { return binary.BigEndian.Uint32(h[4:]) }
func (h *muxHeader) length() uint32    { return binary.BigEndian.Uint32(h[8:]) }
func (h *muxHeader) bytes() []byte     { return h[:] }
func (h *muxHeader) isData() bool      { return h.typ() == muxData }
func (h *muxHeader) hasBody() bool     { return h.isData() && h.length() > 0 }
func (h *muxHeader) has(f uint16) bool { return h.flags()&f != 0 }

func makeHeader(typ uint8, flags uint16, stream, length uint32) muxHeader {
	var h muxHeader
	h[0] = muxVersion
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint32(h[4:], stream)
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

var (
	// ErrSessionShutdown is returned by a link that has ended.
	ErrSessionShutdown = errors.New("link: closed")
	// ErrStreamClosed is returned by a write to a stream closed here.
	ErrStreamClosed = errors.New("link: stream closed")
	// ErrStreamReset is returned by a stream the peer reset.
	ErrStreamReset = errors.New("link: stream reset")
	// ErrConnectionWriteTimeout is returned when the link's queue stayed
	// full for the write's wait: the peer takes in nothing. It is a
	// net.Error whose Timeout is true, as the yamux library's was.
	ErrConnectionWriteTimeout error = &muxTimeout{"link: the peer takes in nothing"}
	// ErrRemoteGoAway is returned by an open after the peer said go away.
	ErrRemoteGoAway = errors.New("link: the peer takes no more streams")
	// ErrStreamsExhausted is returned by an open once every stream number
	// has been used.
	ErrStreamsExhausted = errors.New("link: stream numbers used up")
	// ErrTimeout is returned by a read or write whose deadline passed; it
	// is a net.Error whose Timeout is true, and is os.ErrDeadlineExceeded.
	ErrTimeout error = timeoutError{}

	errProtocol = errors.New("link: the peer broke the framing")
)

// muxTimeout is a timeout of the link's own, which is no deadline's.
type muxTimeout struct{ msg string }

func (e *muxTimeout) Error() string   { return e.msg }
func (e *muxTimeout) Timeout() bool   { return true }
func (e *muxTimeout) Temporary() bool { return true }

type timeoutError struct{}

func (timeoutError) Error() string        { return "link: deadline reached" }
func (timeoutError) Timeout() bool        { return true }
func (timeoutError) Temporary() bool      { return true }
func (timeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }
