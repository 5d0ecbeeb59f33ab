package web

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// clientFrame is a frame as a browser sends it: masked.
func clientFrame(fin bool, op opcode, payload []byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	unmask(b[start:], key, 0)
	return b
}

type message struct {
	op  opcode
	msg string
}

// parseAll takes the messages in b, given in pieces of the sizes in cuts
// (the rest at once): what a reader whose reads end anywhere would see.
func parseAll(b []byte, cuts []int, limit int64) ([]message, error) {
	w := &wsConn{limit: limit}
	var out []message
	take := func() error {
		for {
			op, msg, ok, err := w.nextMessage()
			if err != nil || !ok {
				return err
			}
			out = append(out, message{op, string(msg)})
		}
	}
	for _, n := range cuts {
		n = min(n, len(b))
		w.r = append(w.r, b[:n]...)
		b = b[n:]
		if err := take(); err != nil {
			return out, err
		}
		w.r = bytes.Clone(w.r) // as rest leaves it between reads
	}
	w.r = append(w.r, b...)
	return out, take()
}

var frameCases = []struct {
	name  string
	in    []byte
	want  []message
	err   error
	limit int64
}{
	{name: "binary", in: clientFrame(true, opBinary, []byte("look\r\n")), want: []message{{opBinary, "look\r\n"}}},
	{name: "text and binary", in: cat(clientFrame(true, opText, []byte(`{"ack":5}`)), clientFrame(true, opBinary, []byte("x"))),
		want: []message{{opText, `{"ack":5}`}, {opBinary, "x"}}},
	{name: "fragmented with a ping between", in: cat(clientFrame(false, opBinary, []byte("he")), clientFrame(true, opPing, []byte("p")),
		clientFrame(false, opContinuation, []byte("ll")), clientFrame(true, opContinuation, []byte("o"))),
		want: []message{{opPing, "p"}, {opBinary, "hello"}}},
	{name: "16-bit length", in: clientFrame(true, opBinary, bytes.Repeat([]byte("a"), 300)), want: []message{{opBinary, strings.Repeat("a", 300)}}},
	{name: "64-bit length", in: clientFrame(true, opBinary, bytes.Repeat([]byte("b"), 70000)), limit: 1 << 20, want: []message{{opBinary, strings.Repeat("b", 70000)}}},
	{name: "empty", in: clientFrame(true, opBinary, nil), want: []message{{opBinary, ""}}},
	{name: "close", in: clientFrame(true, opClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}), want: []message{{opClose, "\x03\xe8bye"}}},
	{name: "unmasked", in: []byte{0x82, 0x01, 'x'}, err: errUnmasked},
	{name: "reserved bits", in: []byte{0xc2, 0x81, 0, 0, 0, 0, 'x'}, err: errReserved},
	{name: "unknown opcode", in: []byte{0x83, 0x80, 0, 0, 0, 0}, err: errOpcode},
	{name: "fragmented ping", in: clientFrame(false, opPing, nil), err: errControl},
	{name: "long ping", in: clientFrame(true, opPing, make([]byte, 126)), err: errControl},
	{name: "continuation first", in: clientFrame(true, opContinuation, []byte("x")), err: errContinuation},
	{name: "interleaved", in: cat(clientFrame(false, opText, []byte("a")), clientFrame(true, opBinary, []byte("b"))), err: errInterleaved},
	{name: "too big", in: clientFrame(true, opBinary, make([]byte, 101)), limit: 100, err: errTooBig},
	{name: "too big in pieces", in: cat(clientFrame(false, opBinary, make([]byte, 60)), clientFrame(true, opContinuation, make([]byte, 60))), limit: 100, err: errTooBig},
	{name: "length past 2^63", in: []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, err: errLength},
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestFrames(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.limit
			if limit == 0 {
				limit = defaultMaxMessage
			}
			// Whole, a byte at a time, and cut inside the header.
			for _, cuts := range [][]int{nil, ones(len(tc.in)), {1, 3, 7}} {
				got, err := parseAll(tc.in, cuts, limit)
				if !errors.Is(err, tc.err) {
					t.Fatalf("cuts %v: error %v, want %v", cuts, err, tc.err)
				}
				if tc.err == nil && !equalMessages(got, tc.want) {
					t.Fatalf("cuts %v: %+v, want %+v", cuts, got, tc.want)
				}
			}
		})
	}
}

func ones(n int) []int {
	cuts := make([]int, n)
	for i := range cuts {
		cuts[i] = 1
	}
	return cuts
}

func equalMessages(a, b []message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzFrames reads whatever a client could send, cut anywhere: reading
// never fails otherwise than with a protocol error, no message passes the
// limit, a control frame is never long, and where the reads end changes
// nothing.
func FuzzFrames(f *testing.F) {
	for _, tc := range frameCases {
		f.Add(tc.in, uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		const limit = 1 << 10
		whole, werr := parseAll(in, nil, limit)
		var pe protocolError
		if werr != nil && !errors.As(werr, &pe) {
			t.Fatalf("error %v is not a protocol error", werr)
		}
		for _, m := range whole {
			if len(m.msg) > limit || m.op.control() && len(m.msg) > maxControlLength {
				t.Fatalf("a %v message of %d bytes taken", m.op, len(m.msg))
			}
		}
		cuts := []int{int(cut)%17 + 1}
		for len(cuts) < len(in) {
			cuts = append(cuts, cuts[len(cuts)-1]%5+1)
		}
		pieces, perr := parseAll(in, cuts, limit)
		if !errors.Is(perr, werr) || !equalMessages(whole, pieces) {
			t.Fatalf("whole: %+v %v; in pieces: %+v %v", whole, werr, pieces, perr)
		}
	})
}

func FuzzParseClose(f *testing.F) {
	f.Add([]byte{0x03, 0xe8})
	f.Add([]byte{0x0f, 0xa0, 'x'})
	f.Add([]byte{0x03})
	f.Add([]byte{0x03, 0xed})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := parseClose(b)
		if code := statusOf(err); code != 0 && (code < 1000 || code > 4999) {
			t.Fatalf("close code %d taken from %x", code, b)
		}
	})
}

// TestHandshakeRefusals checks the answers to requests that are not a
// WebSocket this gateway speaks, before anything is taken over.
func TestHandshakeRefusals(t *testing.T) {
	l := &Listener{Origins: []string{"*.example.com"}}
	srv := httptest.NewServer(l)
	t.Cleanup(func() { srv.Close(); l.Close() })
	good := http.Header{
		"Upgrade": {"websocket"}, "Connection": {"keep-alive, Upgrade"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Version": {"13"},
	}
	for _, tc := range []struct {
		name   string
		change func(h http.Header)
		status int
	}{
		{"not an upgrade", func(h http.Header) { h.Del("Upgrade") }, http.StatusUpgradeRequired},
		{"version 8", func(h http.Header) { h.Set("Sec-Websocket-Version", "8") }, http.StatusBadRequest},
		{"short key", func(h http.Header) { h.Set("Sec-Websocket-Key", "c2hvcnQ=") }, http.StatusBadRequest},
		{"foreign origin", func(h http.Header) { h.Set("Origin", "https://evil.example.net") }, http.StatusForbidden},
		{"allowed origin", func(h http.Header) { h.Set("Origin", "https://play.example.com") }, http.StatusSwitchingProtocols},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/ws", nil)
			req.Header = good.Clone()
			tc.change(req.Header)
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if err := req.Write(c); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusSwitchingProtocols && resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
				t.Fatalf("Sec-WebSocket-Accept %q", resp.Header.Get("Sec-Websocket-Accept"))
			}
		})
	}
}
