package main

import (
	"context"
	"io"
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
	msg   io.Reader // the binary message being read; nil between messages

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

// Read reads the messages' payloads straight into p, as a telnet client
// reads its socket: the load tool's own cost stays out of the browsers'
// figures as far as it can.
func (w *wsStream) Read(p []byte) (int, error) {
	for {
		if w.msg == nil {
			typ, r, err := w.c.Reader(context.Background())
			if err != nil {
				return 0, err
			}
			if typ == websocket.MessageText {
				io.Copy(io.Discard, r) // the resume token: a load tool never comes back
				continue
			}
			w.msg = r
		}
		n, err := w.msg.Read(p)
		if err == io.EOF {
			w.msg = nil
		} else if err != nil {
			return n, err
		}
		if n == 0 {
			continue
		}
		w.mu.Lock()
		w.got += uint64(n)
		now := w.got-w.acked >= ackEvery
		if !now && w.ackTimer == nil {
			w.ackTimer = time.AfterFunc(ackAfter, w.ack)
		}
		w.mu.Unlock()
		if now {
			w.ack()
		}
		return n, nil
	}
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
	// No deadline of its own: the load tool's waits time its players out,
	// and a context per line would be the load tool's cost in the figure.
	return w.c.Write(context.Background(), typ, b)
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
