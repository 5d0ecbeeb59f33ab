package main

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// wsStream is a browser player as the web client is: the telnet protocol
// over WebSocket, resumable (?hold), acknowledging what it receives. Its
// Read gives the telnet stream, so that a session reads it as it reads a
// socket.
type wsStream struct {
	c     *websocket.Conn
	local net.Addr
	buf   []byte

	mu       sync.Mutex
	got      uint64
	acked    uint64
	ackTimer *time.Timer

	wmu sync.Mutex
}

// The client acknowledges its output after ackEvery bytes, or a second
// after the last unacknowledged byte, as the web client does.
const (
	ackEvery = 8 << 10
	ackAfter = time.Second
)

func dialWS(addr string) (*wsStream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws?hold", &websocket.DialOptions{Subprotocols: []string{"telnet.mudstandards.org"}})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(-1)
	if err := c.Write(ctx, websocket.MessageText, []byte("{}")); err != nil {
		c.CloseNow()
		return nil, err
	}
	return &wsStream{c: c}, nil
}

func (w *wsStream) Read(p []byte) (int, error) {
	for len(w.buf) == 0 {
		typ, msg, err := w.c.Read(context.Background())
		if err != nil {
			return 0, err
		}
		if typ == websocket.MessageText {
			continue // the resume token: a load tool never comes back
		}
		w.buf = msg
		w.mu.Lock()
		w.got += uint64(len(msg))
		now := w.got-w.acked >= ackEvery
		if !now && w.ackTimer == nil {
			w.ackTimer = time.AfterFunc(ackAfter, w.ack)
		}
		w.mu.Unlock()
		if now {
			w.ack()
		}
	}
	n := copy(p, w.buf)
	w.buf = w.buf[n:]
	return n, nil
}

func (w *wsStream) ack() {
	w.mu.Lock()
	if w.ackTimer != nil {
		w.ackTimer.Stop()
		w.ackTimer = nil
	}
	got := w.got
	w.acked = got
	w.mu.Unlock()
	w.send(websocket.MessageText, []byte(`{"ack":`+strconv.FormatUint(got, 10)+`}`))
}

func (w *wsStream) send(typ websocket.MessageType, b []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return w.c.Write(ctx, typ, b)
}

func (w *wsStream) Write(p []byte) (int, error) {
	if err := w.send(websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsStream) Close() error                     { return w.c.CloseNow() }
func (w *wsStream) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (w *wsStream) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (w *wsStream) SetDeadline(time.Time) error      { return nil }
func (w *wsStream) SetReadDeadline(time.Time) error  { return nil }
func (w *wsStream) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*wsStream)(nil)
