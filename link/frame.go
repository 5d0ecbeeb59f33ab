package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// FrameType is a frame's first byte: what its payload is.
type FrameType byte

// Frame types. The package documentation tells which stream each travels
// on and what its payload is.
const (
	FrameControl FrameType = 1
	FrameGoodbye FrameType = 2
	FrameMSSP    FrameType = 3
	// 4 was Backend, the backend's instance: it is proven in the
	// handshake now (see the package doc).
	FrameMove    FrameType = 5
	FrameRelease FrameType = 6
	FrameRetire  FrameType = 7
	FramePark    FrameType = 8
	FrameWake    FrameType = 9

	FrameOpen   FrameType = 10
	FrameInput  FrameType = 11
	FrameHangup FrameType = 12
	FrameFacts  FrameType = 13
	FrameGMCPIn FrameType = 14
	// FrameFactsUpdate carries only the facts that changed.
	FrameFactsUpdate FrameType = 15
	// FrameOutAck says how much of the session's kept output (see
	// Open.Keep) the player has: the backend forgets it.
	FrameOutAck FrameType = 16
	// FrameTokens carries the SHA-256 hashes of the tokens that may claim
	// the session (Open.Claim), none to two.
	FrameTokens FrameType = 17

	FrameOutput  FrameType = 20
	FrameAck     FrameType = 21
	FrameState   FrameType = 22
	FrameEnd     FrameType = 23
	FrameGMCPOut FrameType = 24
	FrameEcho    FrameType = 25
	FramePrompt  FrameType = 26
	FrameMoved   FrameType = 27
	FrameParked  FrameType = 28
	// FrameTaken ends a stream whose session another gateway claimed.
	FrameTaken FrameType = 29

	FrameBroadcast FrameType = 30
	// FrameHold, FrameUnheld and FrameDrop keep an idle session on a link
	// without a stream (see Holding); FrameFeatures says what a backend
	// can do.
	FrameHold     FrameType = 31
	FrameUnheld   FrameType = 32
	FrameDrop     FrameType = 33
	FrameFeatures FrameType = 34
	// FrameMovedParked answers a Move for sessions whose streams were
	// parked, on the control stream instead of each stream.
	FrameMovedParked FrameType = 35
	// FrameOpenHeld opens sessions held, without a stream each, on the
	// control stream.
	FrameOpenHeld FrameType = 36
	// FrameHeldFrames carries a held session's frames on the control
	// stream, and FrameWant asks the backend to wake held sessions.
	FrameHeldFrames FrameType = 37
	FrameWant       FrameType = 38
	// FrameStow asks the backend to hold sessions whose streams have long
	// been parked, and FrameStowed answers it.
	FrameStow   FrameType = 39
	FrameStowed FrameType = 40
	// FrameHeldOutAck carries a held page's OutAck on the control stream,
	// and FrameHeldTaken says that held pages were claimed elsewhere.
	FrameHeldOutAck FrameType = 41
	FrameHeldTaken  FrameType = 42
)

var frameNames = [...]string{
	FrameControl: "Control",
	FrameGoodbye: "Goodbye",
	FrameMSSP:    "MSSP",
	FrameMove:    "Move",
	FrameRelease: "Release",
	FrameRetire:  "Retire",
	FramePark:    "Park",
	FrameWake:    "Wake",

	FrameOpen:        "Open",
	FrameInput:       "Input",
	FrameHangup:      "Hangup",
	FrameFacts:       "Facts",
	FrameGMCPIn:      "GMCPIn",
	FrameFactsUpdate: "FactsUpdate",
	FrameOutAck:      "OutAck",
	FrameTokens:      "Tokens",

	FrameOutput:  "Output",
	FrameAck:     "Ack",
	FrameState:   "State",
	FrameEnd:     "End",
	FrameGMCPOut: "GMCPOut",
	FrameEcho:    "Echo",
	FramePrompt:  "Prompt",
	FrameMoved:   "Moved",
	FrameParked:  "Parked",
	FrameTaken:   "Taken",

	FrameBroadcast: "Broadcast",
	FrameHold:      "Hold",
	FrameUnheld:    "Unheld",
	FrameDrop:      "Drop",
	FrameFeatures:  "Features",

	FrameMovedParked: "MovedParked",
	FrameOpenHeld:    "OpenHeld",
	FrameHeldFrames:  "HeldFrames",
	FrameWant:        "Want",
	FrameStow:        "Stow",
	FrameStowed:      "Stowed",
	FrameHeldOutAck:  "HeldOutAck",
	FrameHeldTaken:   "HeldTaken",
}

// String returns the frame type's name, "Move" say, or "FrameType(99)" for
// a type this version does not know.
func (t FrameType) String() string {
	if int(t) < len(frameNames) && frameNames[t] != "" {
		return frameNames[t]
	}
	return "FrameType(" + strconv.Itoa(int(t)) + ")"
}

const (
	// HeaderLen is the length of a frame's header: type and length.
	HeaderLen = 5
	// MaxFrame bounds a frame's payload.
	MaxFrame = 256 << 10
	// MaxState bounds the application state kept per session.
	MaxState = 64 << 10
	// MaxChunk is the largest Input or Output payload a sender produces.
	MaxChunk = 32 << 10
	// MaxMove bounds the sessions one Move, Release, Park, Wake, Hold,
	// Unheld or Drop frame names.
	MaxMove = 4096
)

// Errors of the link protocol.
var (
	ErrFrameTooLarge = errors.New("link: frame too large")
	ErrProtocol      = errors.New("link: protocol error")
	ErrAuth          = errors.New("link: cookie authentication failed")
)

// AppendFrame appends a frame header and payload to b.
func AppendFrame(b []byte, typ FrameType, payload []byte) []byte {
	b = append(b, byte(typ))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// AppendFrameHeader appends the header of a frame of n payload bytes, for
// a payload the caller appends itself.
func AppendFrameHeader(b []byte, typ FrameType, n int) []byte {
	return binary.BigEndian.AppendUint32(append(b, byte(typ)), uint32(n))
}

// WriteFrame writes one frame in a single Write, so that concurrent writers
// holding the same lock never interleave.
func WriteFrame(w io.Writer, typ FrameType, payload []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderLen+len(payload)), typ, payload))
	return err
}

// PieceLen is how much of a write WritePieces gives its peer wait to take.
const PieceLen = 16 << 10

// WritePieces writes b to c, PieceLen at a time, each within wait: a peer
// that takes in nothing for that long is taken for gone, but one that
// reads slowly (on a machine shared with other work, behind the rest of
// the link's traffic) is not, however long the whole takes. On a link's
// stream a piece waits for room in the stream's window, which opens
// again once the reader has taken half of it: there the reader must take
// 128 KiB within wait. A write that fails may have sent part of a frame.
func WritePieces(c net.Conn, b []byte, wait time.Duration) error {
	for len(b) > 0 {
		n := min(len(b), PieceLen)
		c.SetWriteDeadline(time.Now().Add(wait))
		if _, err := c.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// Reader reads frames. A read error in the middle of a frame (a deadline, say)
// leaves its state intact: the next call continues where the last stopped.
type Reader struct {
	R io.Reader

	hdr    [HeaderLen]byte
	hdrN   int
	inBody bool
	typ    FrameType
	remain int
	body   []byte
}

// frameStarts is a reader told when a read is for a frame's first byte: a
// Stream, which may then hand frames to its Deliverer while it waits.
type frameStarts interface {
	readFrameStart(p []byte) (int, error)
}

// Next returns the next frame's type and length. Any unread payload of the
// previous frame is discarded first.
func (fr *Reader) Next() (typ FrameType, n int, err error) {
	for fr.inBody && fr.remain > 0 {
		var scratch [512]byte
		if _, err := fr.Read(scratch[:min(len(scratch), fr.remain)]); err != nil {
			return 0, 0, err
		}
	}
	fr.inBody = false
	for fr.hdrN < HeaderLen {
		var m int
		var err error
		if fs, ok := fr.R.(frameStarts); ok && fr.hdrN == 0 {
			m, err = fs.readFrameStart(fr.hdr[:])
		} else {
			m, err = fr.R.Read(fr.hdr[fr.hdrN:])
		}
		fr.hdrN += m
		if err != nil && fr.hdrN < HeaderLen {
			if err == io.EOF && fr.hdrN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, err
		}
	}
	fr.hdrN = 0
	size := binary.BigEndian.Uint32(fr.hdr[1:])
	if size > MaxFrame {
		return 0, 0, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, size)
	}
	fr.typ, fr.remain, fr.inBody = FrameType(fr.hdr[0]), int(size), true
	fr.body = fr.body[:0]
	return fr.typ, fr.remain, nil
}

// Read reads payload of the current frame; it returns io.EOF at its end.
func (fr *Reader) Read(p []byte) (int, error) {
	if fr.remain == 0 {
		return 0, io.EOF
	}
	if len(p) > fr.remain {
		p = p[:fr.remain]
	}
	n, err := fr.R.Read(p)
	fr.remain -= n
	if err == io.EOF && fr.remain > 0 {
		err = io.ErrUnexpectedEOF
	} else if err == io.EOF {
		err = nil
	}
	return n, err
}

// Payload reads the whole payload of the current frame. The slice is valid
// until the next call to Next.
func (fr *Reader) Payload() ([]byte, error) {
	for fr.remain > 0 {
		if cap(fr.body)-len(fr.body) < fr.remain {
			nb := make([]byte, len(fr.body), len(fr.body)+fr.remain)
			copy(nb, fr.body)
			fr.body = nb
		}
		n, err := fr.Read(fr.body[len(fr.body) : len(fr.body)+fr.remain])
		fr.body = fr.body[:len(fr.body)+n]
		if err != nil {
			return nil, err
		}
	}
	return fr.body, nil
}
