package web

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// The gateway's own WebSocket (RFC 6455, server side, no extensions). It
// is read without a goroutine of its own: a Conn's reader (the gateway's)
// reads the socket in Read, a frame at a time and in pieces, so that a
// read deadline that expires mid-frame loses nothing, and an idle
// WebSocket waits in the gateway's parker like an idle telnet socket. An
// idle one keeps no buffer: what a read brings is parsed in a pooled one,
// and only a partial frame header outlives the read.

// opcode is a frame's type (RFC 6455 section 5.2).
type opcode byte

const (
	opContinuation opcode = 0x0
	opText         opcode = 0x1
	opBinary       opcode = 0x2
	opClose        opcode = 0x8
	opPing         opcode = 0x9
	opPong         opcode = 0xa
)

func (o opcode) String() string {
	switch o {
	case opContinuation:
		return "Continuation"
	case opText:
		return "Text"
	case opBinary:
		return "Binary"
	case opClose:
		return "Close"
	case opPing:
		return "Ping"
	case opPong:
		return "Pong"
	}
	return "opcode(" + strconv.Itoa(int(o)) + ")"
}

func (o opcode) control() bool { return o&0x8 != 0 }

// statusCode is a close frame's status (RFC 6455 section 7.4).
type statusCode uint16

const (
	statusNormal        statusCode = 1000
	statusGoingAway     statusCode = 1001
	statusProtocolError statusCode = 1002
	statusNoStatus      statusCode = 1005 // none was given; never sent
	statusInvalidData   statusCode = 1007
	statusPolicy        statusCode = 1008
	statusTooBig        statusCode = 1009
	// statusRestart asks the page to reconnect at once (Service Restart).
	statusRestart    statusCode = 1012
	statusTryAgain   statusCode = 1013
	maxControlLength            = 125
	// maxHeader is the longest frame header: 2 bytes, 8 of length, 4 of mask.
	maxHeader = 14
)

// closeError is the page's close frame, as Read's error.
type closeError struct {
	code   statusCode
	reason string
}

func (e closeError) Error() string {
	return fmt.Sprintf("web: the page closed the WebSocket: %d %q", e.code, e.reason)
}

// statusOf is the status of the page's close frame in err; 0 when err is
// not one.
func statusOf(err error) statusCode {
	var ce closeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return 0
}

// protocolError is a frame the protocol forbids: the WebSocket closes with
// code.
type protocolError struct {
	code statusCode
	why  string
}

func (e protocolError) Error() string { return "web: WebSocket: " + e.why }

var (
	errReserved     = protocolError{statusProtocolError, "reserved bits set without an extension"}
	errOpcode       = protocolError{statusProtocolError, "unknown opcode"}
	errLength       = protocolError{statusProtocolError, "frame length past 2^63"}
	errControl      = protocolError{statusProtocolError, "fragmented or long control frame"}
	errUnmasked     = protocolError{statusProtocolError, "a client's frame must be masked"}
	errContinuation = protocolError{statusProtocolError, "continuation frame without a message"}
	errInterleaved  = protocolError{statusProtocolError, "new message before the last one ended"}
	errTooBig       = protocolError{statusTooBig, "message larger than the limit"}
	errNotUTF8      = protocolError{statusInvalidData, "text message that is not UTF-8"}
	errCloseFrame   = protocolError{statusProtocolError, "malformed close frame"}
)

// header is a frame's header.
type header struct {
	fin    bool
	op     opcode
	masked bool
	mask   [4]byte
	length int64
}

// parseHeader parses the frame header at the start of b: n is its size, or
// 0 when b holds only part of it. It checks what a header alone can break.
func parseHeader(b []byte) (h header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	if b[0]&0x70 != 0 {
		return h, 0, errReserved
	}
	h.fin = b[0]&0x80 != 0
	h.op = opcode(b[0] & 0x0f)
	switch h.op {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, 0, errOpcode
	}
	h.masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return h, 0, errLength
		}
		h.length = int64(v)
		n = 10
	default:
		h.length = int64(l)
	}
	if h.op.control() && (!h.fin || h.length > maxControlLength) {
		return h, 0, errControl
	}
	if h.masked {
		if len(b) < n+4 {
			return h, 0, nil
		}
		copy(h.mask[:], b[n:])
		n += 4
	}
	return h, n, nil
}

// appendHeader appends an unmasked (server's) frame header.
func appendHeader(b []byte, op opcode, length int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case length <= 125:
		b = append(b, byte(length))
	case length <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(length))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(length))
	}
	return b
}

// unmask unmasks b in place, which starts at offset pos of its frame's
// payload, and returns the offset after it.
func unmask(b []byte, key [4]byte, pos int) int {
	if len(b) >= 8 {
		// Eight bytes at a time: a pasted page of input is not a byte loop.
		k := uint32(key[pos&3]) | uint32(key[(pos+1)&3])<<8 | uint32(key[(pos+2)&3])<<16 | uint32(key[(pos+3)&3])<<24
		k64 := uint64(k) | uint64(k)<<32
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
			b = b[8:]
			pos += 8
		}
	}
	for i := range b {
		b[i] ^= key[pos&3]
		pos++
	}
	return pos & 3
}

// readBuf is the size of the buffer one read of a WebSocket fills, lent
// from readBufs for the read's time.
const readBuf = 4 << 10

var readBufs = sync.Pool{New: func() any { return new([readBuf]byte) }}

// wsConn is one WebSocket: its socket, and the reading state kept between
// reads. One reader at a time reads it; writes are the caller's to
// serialise, and may run beside a read.
type wsConn struct {
	nc net.Conn
	// fd is the socket's descriptor for the parker, or -1: a TLS socket
	// and a PROXY header's reader keep bytes above the kernel's. raw is
	// the socket's, for reading it when it is readable; nil with fd -1.
	fd    int
	raw   syscall.RawConn
	limit int64 // the largest message taken

	// Reading. r holds the bytes read and not parsed: within a read, in
	// scratch; between reads, no more than part of a frame header.
	r       []byte
	scratch *[readBuf]byte
	hdr     header
	inFrame bool  // hdr's payload is being read
	remain  int64 // of its payload
	maskPos int
	msgOp   opcode // the message being assembled: opContinuation when none
	msg     []byte
	ctl     []byte // the control frame's payload being read

	// Writing, one frame at a time: wmu guards wdl, the deadline the
	// socket has, so that it is set only when it changes.
	wmu sync.Mutex
	wdl time.Time

	closeOnce sync.Once
}

// nextMessage parses the next whole message or control frame from what
// has been read, without reading: ok is false when more is needed. msg is
// valid until the next call.
func (w *wsConn) nextMessage() (op opcode, msg []byte, ok bool, err error) {
	for {
		if !w.inFrame {
			h, n, err := parseHeader(w.r)
			if err != nil {
				return 0, nil, false, err
			}
			if n == 0 {
				return 0, nil, false, nil
			}
			if !h.masked {
				return 0, nil, false, errUnmasked
			}
			switch {
			case h.op == opContinuation && w.msgOp == opContinuation:
				return 0, nil, false, errContinuation
			case h.op == opText || h.op == opBinary:
				if w.msgOp != opContinuation {
					return 0, nil, false, errInterleaved
				}
			}
			if !h.op.control() && int64(len(w.msg))+h.length > w.limit {
				return 0, nil, false, errTooBig
			}
			w.r = w.r[n:]
			w.hdr, w.inFrame, w.remain, w.maskPos = h, true, h.length, 0
			if h.op == opText || h.op == opBinary {
				w.msgOp = h.op
			}
			// A whole unfragmented message in the buffer is taken where it
			// is, without a copy.
			if h.fin && !h.op.control() && len(w.msg) == 0 && int64(len(w.r)) >= h.length {
				p := w.r[:h.length]
				w.r = w.r[h.length:]
				unmask(p, h.mask, 0)
				w.inFrame = false
				op := w.msgOp
				w.msgOp = opContinuation
				return op, p, true, nil
			}
		}
		k := int(min(w.remain, int64(len(w.r))))
		p := w.r[:k]
		w.r = w.r[k:]
		w.maskPos = unmask(p, w.hdr.mask, w.maskPos)
		w.remain -= int64(k)
		if w.hdr.op.control() {
			w.ctl = append(w.ctl, p...)
		} else {
			w.msg = append(w.msg, p...)
		}
		if w.remain > 0 {
			return 0, nil, false, nil
		}
		w.inFrame = false
		if w.hdr.op.control() {
			ctl := w.ctl
			w.ctl = nil
			return w.hdr.op, ctl, true, nil
		}
		if w.hdr.fin {
			op, msg := w.msgOp, w.msg
			w.msgOp, w.msg = opContinuation, nil
			return op, msg, true, nil
		}
	}
}

// fill reads the socket once, within its read deadline. A TCP socket is
// read when it is readable, the buffer lent only then: thousands of
// pages whose readers wait on them hold no buffer each.
func (w *wsConn) fill() error {
	if w.raw != nil {
		return w.fillRaw()
	}
	w.borrow()
	n, err := w.nc.Read(w.scratch[len(w.r):])
	w.r = w.scratch[:len(w.r)+n]
	return err
}

func (w *wsConn) fillRaw() error {
	var n int
	var rerr error
	err := w.raw.Read(func(fd uintptr) bool {
		w.borrow()
		for {
			n, rerr = syscall.Read(int(fd), w.scratch[len(w.r):])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			w.rest()
			return false // to wait until it is readable
		}
		return true
	})
	switch {
	case err != nil:
		return err
	case rerr != nil:
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", rerr)}
	case n <= 0:
		return io.EOF
	}
	w.r = w.scratch[:len(w.r)+n]
	return nil
}

// borrow lends the read buffer, with what was read and not parsed at its
// start.
func (w *wsConn) borrow() {
	if w.scratch == nil {
		w.scratch = readBufs.Get().(*[readBuf]byte)
		w.r = w.scratch[:copy(w.scratch[:], w.r)]
	} else if len(w.r) == 0 || &w.r[0] != &w.scratch[0] {
		w.r = w.scratch[:copy(w.scratch[:], w.r)]
	}
}

// rest gives the read buffer back, keeping the part of a header it holds:
// between reads a WebSocket holds no buffer. Messages from nextMessage are
// not valid after it.
func (w *wsConn) rest() {
	if w.scratch == nil {
		return
	}
	if len(w.r) > 0 {
		w.r = bytes.Clone(w.r)
	} else {
		w.r = nil
	}
	readBufs.Put(w.scratch)
	w.scratch = nil
}

// buffered reports whether bytes read are waiting to be parsed, which the
// socket's readiness would not announce.
func (w *wsConn) buffered() bool { return len(w.r) > 0 }

// readMessage reads the next data message, answering pings on the way;
// for the handshake's hello, before the WebSocket has a Conn.
func (w *wsConn) readMessage(deadline time.Time) (opcode, []byte, error) {
	w.nc.SetReadDeadline(deadline)
	defer w.nc.SetReadDeadline(time.Time{})
	defer w.rest()
	for {
		op, msg, ok, err := w.nextMessage()
		if err != nil {
			return 0, nil, err
		}
		if !ok {
			if err := w.fill(); err != nil {
				return 0, nil, err
			}
			continue
		}
		switch op {
		case opPing:
			if err := w.write(opPong, msg, deadline); err != nil {
				return 0, nil, err
			}
		case opPong:
		case opClose:
			return 0, nil, parseClose(msg)
		default:
			return op, bytes.Clone(msg), nil
		}
	}
}

// parseClose reads a close frame's payload as the error it ends reading
// with: a closeError, or a protocolError for a malformed one.
func parseClose(b []byte) error {
	if len(b) == 0 {
		return closeError{code: statusNoStatus}
	}
	if len(b) == 1 || !utf8.Valid(b[2:]) {
		return errCloseFrame
	}
	code := statusCode(binary.BigEndian.Uint16(b))
	switch {
	case code < 1000, code == 1004, code == 1005, code == 1006, code > 1014 && code < 3000, code > 4999:
		return errCloseFrame
	}
	return closeError{code: code, reason: string(b[2:])}
}

// write sends one frame within the deadline.
func (w *wsConn) write(op opcode, p []byte, dl time.Time) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if !dl.Equal(w.wdl) {
		if err := w.nc.SetWriteDeadline(dl); err != nil {
			return err
		}
		w.wdl = dl
	}
	var hb [10]byte
	hdr := appendHeader(hb[:0], op, len(p))
	if tc, ok := w.tcp(); ok && len(p) > 256 {
		// writev: header and payload in one segment, without a copy.
		bufs := net.Buffers{hdr, p}
		_, err := bufs.WriteTo(tc)
		return err
	}
	if len(p) <= readBuf-len(hdr) {
		b := readBufs.Get().(*[readBuf]byte)
		defer readBufs.Put(b)
		buf := append(append(b[:0], hdr...), p...)
		_, err := w.nc.Write(buf)
		return err
	}
	if _, err := w.nc.Write(hdr); err != nil {
		return err
	}
	_, err := w.nc.Write(p)
	return err
}

// tcp is the WebSocket's TCP socket when nothing stands between: net/http
// hands the connection over as the gateway's admission wraps it.
func (w *wsConn) tcp() (*net.TCPConn, bool) {
	c := w.nc
	if g, ok := c.(*gateConn); ok {
		c = g.Conn
	}
	tc, ok := c.(*net.TCPConn)
	return tc, ok
}

// closeWith sends a close frame with code and why, within a second, and
// closes the socket once the page has answered it, or within closeWait
// (RFC 6455 section 7.1.1: the client closes first, so that the page reads
// the frame rather than a reset). It waits that long: callers run it on
// a goroutine of its own where that matters.
func (w *wsConn) closeWith(code statusCode, why string) {
	w.closeOnce.Do(func() {
		if len(why) > maxControlLength-2 {
			why = why[:maxControlLength-2]
		}
		b := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(why)), uint16(code))
		b = append(b, why...)
		if err := w.write(opClose, b, time.Now().Add(time.Second)); err != nil {
			w.nc.Close()
			return
		}
		// Whatever the page still sends is read and dropped until its
		// answer, or its end.
		w.nc.SetReadDeadline(time.Now().Add(closeWait))
		var buf [512]byte
		for {
			if _, err := w.nc.Read(buf[:]); err != nil {
				break
			}
		}
		w.nc.Close()
	})
}

// closeWait bounds the wait for the page's answer to a close frame.
const closeWait = 5 * time.Second

// closeNow closes the socket without a word.
func (w *wsConn) closeNow() {
	w.closeOnce.Do(func() { w.nc.Close() })
}

// socketOf returns the descriptor of the TCP socket nc is, and its
// RawConn; -1 and nil for any other connection.
func socketOf(nc net.Conn) (int, syscall.RawConn) {
	c := nc
	if g, ok := c.(*gateConn); ok {
		c = g.Conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, nil
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	if fd < 0 {
		return -1, nil
	}
	return fd, rc
}

// handshakeError is a refused upgrade: the HTTP status it was answered with.
type handshakeError struct {
	status int
	why    string
}

func (e handshakeError) Error() string { return "web: WebSocket handshake: " + e.why }

// acceptGUID is RFC 6455's constant for Sec-WebSocket-Accept.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// upgrade answers a WebSocket handshake (RFC 6455 section 4.2) and takes
// the connection from net/http: the subprotocol is the first of protocols
// that the client offers; the page's Origin must be the request's host or
// match one of origins (host patterns, or scheme://host patterns, as
// path.Match has them). A refusal is answered here, and returned.
func upgrade(w http.ResponseWriter, r *http.Request, protocols, origins []string, limit int64) (*wsConn, string, error) {
	fail := func(status int, why string) (*wsConn, string, error) {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "websocket")
		}
		http.Error(w, why, status)
		return nil, "", handshakeError{status, why}
	}
	switch {
	case !r.ProtoAtLeast(1, 1):
		return fail(http.StatusUpgradeRequired, "WebSocket needs HTTP/1.1")
	case !hasToken(r.Header, "Connection", "upgrade") || !hasToken(r.Header, "Upgrade", "websocket"):
		return fail(http.StatusUpgradeRequired, "not a WebSocket upgrade")
	case r.Method != http.MethodGet:
		return fail(http.StatusMethodNotAllowed, "a WebSocket upgrade is a GET")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		return fail(http.StatusBadRequest, "only WebSocket version 13 is spoken")
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	key := ""
	if len(keys) == 1 {
		key = strings.TrimSpace(keys[0])
	}
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return fail(http.StatusBadRequest, "a bad Sec-WebSocket-Key")
	}
	if err := checkOrigin(r, origins); err != nil {
		return fail(http.StatusForbidden, err.Error())
	}
	proto := ""
	offered := tokens(r.Header, "Sec-WebSocket-Protocol")
	for _, p := range protocols {
		for _, o := range offered {
			if strings.EqualFold(p, o) {
				proto = p
				break
			}
		}
		if proto != "" {
			break
		}
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fail(http.StatusInternalServerError, "the connection cannot be taken over")
	}
	sum := sha1.Sum([]byte(key + acceptGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
	if proto != "" {
		resp += "Sec-WebSocket-Protocol: " + proto + "\r\n"
	}
	resp += "\r\n"
	ws := &wsConn{nc: nc, limit: limit}
	ws.fd, ws.raw = socketOf(nc)
	// What the client sent after its request, read ahead by net/http, is
	// the first of the WebSocket's bytes.
	if n := brw.Reader.Buffered(); n > 0 {
		ahead, _ := brw.Reader.Peek(n)
		ws.r = bytes.Clone(ahead)
	}
	nc.SetDeadline(time.Time{}) // net/http's, for the request
	if err := ws.write1(resp); err != nil {
		nc.Close()
		return nil, "", err
	}
	return ws, proto, nil
}

// write1 writes the handshake's answer.
func (w *wsConn) write1(s string) error {
	w.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := w.nc.Write([]byte(s))
	w.nc.SetWriteDeadline(time.Time{})
	return err
}

// checkOrigin lets a request in whose Origin is the page's own host, or
// matches one of the patterns; a request without Origin is not a
// browser's, and any origin's script could not have sent it.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return errors.New("a malformed Origin")
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q is not allowed for host %q", u.Host, r.Host)
}

// tokens returns the comma-separated values of a header, trimmed.
func tokens(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func hasToken(h http.Header, name, token string) bool {
	for _, t := range tokens(h, name) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}
