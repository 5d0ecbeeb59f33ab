package test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"holdfast/gateway/telnet"
)

// resumingClient is a web client as the page is: it comes back with its
// token whenever its WebSocket breaks (1012 in an upgrade, or a cut), sends
// again the input the gateway says it did not get, then what was typed
// meanwhile, and gives the game's text as a stream. It is a net.Conn, each
// Write one input message.
type resumingClient struct {
	addr string
	text *io.PipeWriter
	read *io.PipeReader

	mu      sync.Mutex
	ws      *websocket.Conn
	ready   bool
	token   string
	got     uint64
	log     []sentMessage
	total   uint64
	queued  [][]byte
	closed  bool
	resumes int
	dec     telnet.Decoder
}

type sentMessage struct {
	at uint64
	b  []byte
}

func dialResuming(addr string) (*resumingClient, error) {
	r, w := io.Pipe()
	c := &resumingClient{addr: addr, text: w, read: r}
	ws, err := c.open(`{}`)
	if err != nil {
		return nil, err
	}
	go c.run(ws)
	return c, nil
}

func (c *resumingClient) open(hello string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+c.addr+"/ws?hold", &websocket.DialOptions{Subprotocols: []string{"telnet.mudstandards.org"}})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(-1)
	if err := ws.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
		ws.CloseNow()
		return nil, err
	}
	c.mu.Lock()
	closed := c.closed
	c.ws, c.ready = ws, false
	c.mu.Unlock()
	if closed {
		// Closed while it came back: Close found no WebSocket to say so
		// on, and the gateway would hold the page for its return.
		ws.Close(websocket.StatusNormalClosure, "")
		return nil, net.ErrClosed
	}
	return ws, nil
}

// run reads one WebSocket after another until the session ends.
func (c *resumingClient) run(ws *websocket.Conn) {
	for {
		err := c.readAll(ws)
		code := websocket.CloseStatus(err)
		c.mu.Lock()
		closed := c.closed
		c.ws, c.ready = nil, false
		c.mu.Unlock()
		if closed || code == websocket.StatusNormalClosure || code == 4404 || code == 4429 {
			c.text.CloseWithError(err)
			return
		}
		ws = nil
		for delay, deadline := 10*time.Millisecond, time.Now().Add(waitFor); ws == nil; delay = min(2*delay, 500*time.Millisecond) {
			if time.Now().After(deadline) {
				c.text.CloseWithError(errors.New("could not reconnect: " + err.Error()))
				return
			}
			time.Sleep(delay) // backing off, as the page does
			c.mu.Lock()
			hello := `{"resume":"` + c.token + `","got":` + strconv.FormatUint(c.got, 10) + `}`
			c.mu.Unlock()
			if ws, err = c.open(hello); errors.Is(err, net.ErrClosed) {
				c.text.CloseWithError(err)
				return
			}
		}
	}
}

func (c *resumingClient) readAll(ws *websocket.Conn) error {
	for {
		typ, msg, err := ws.Read(context.Background())
		if err != nil {
			return err
		}
		if typ == websocket.MessageText {
			var m struct {
				Token    string
				Resumed  bool
				Received uint64
				Notice   string
			}
			if err := json.Unmarshal(msg, &m); err != nil {
				return err
			}
			if m.Token == "" {
				continue // a notice from the gateway: the page shows it
			}
			// As the web client does: the token it had is spent once the
			// gateway hears that this one is kept.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ws.Write(ctx, websocket.MessageText, []byte(`{"kept_token":true}`))
			cancel()
			c.mu.Lock()
			c.token, c.ready = m.Token, true
			if m.Resumed {
				c.resumes++
				var again [][]byte
				keep := c.log[:0]
				for _, e := range c.log {
					if e.at >= m.Received {
						again = append(again, e.b)
					} else {
						keep = append(keep, e)
					}
				}
				c.log, c.total = keep, m.Received
				c.queued = append(again, c.queued...)
			}
			queued := c.queued
			c.queued = nil
			for _, b := range queued {
				c.transmitLocked(b)
			}
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		c.got += uint64(len(msg))
		text := c.dec.Decode(nil, msg, nopHandler{})
		c.mu.Unlock()
		if _, err := c.text.Write(text); err != nil {
			return err
		}
	}
}

func (c *resumingClient) transmitLocked(b []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.ws.Write(ctx, websocket.MessageBinary, b) // a failed write is sent again on the resume
	c.log = append(c.log, sentMessage{c.total, b})
	c.total += uint64(len(b))
}

func (c *resumingClient) Read(p []byte) (int, error) { return c.read.Read(p) }

func (c *resumingClient) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.ws != nil && c.ready {
		c.transmitLocked(b)
	} else {
		c.queued = append(c.queued, b)
	}
	return len(p), nil
}

// cut breaks the current connection, as a network going away does.
func (c *resumingClient) cut() {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		ws.CloseNow()
	}
}

func (c *resumingClient) Close() error {
	c.mu.Lock()
	c.closed = true
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		ws.Close(websocket.StatusNormalClosure, "")
	}
	c.read.Close()
	return nil
}

func (c *resumingClient) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *resumingClient) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *resumingClient) SetDeadline(time.Time) error      { return nil }
func (c *resumingClient) SetReadDeadline(time.Time) error  { return nil }
func (c *resumingClient) SetWriteDeadline(time.Time) error { return nil }
