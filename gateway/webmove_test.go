package gateway_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"holdfast/gateway"
	"holdfast/gateway/web"
)

// page is a browser's resumable page, as the web client speaks: telnet in
// binary messages, the gateway's word in text ones.
type page struct {
	t  *testing.T
	ws *websocket.Conn
}

func openPage(t *testing.T, addr string) *page {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws?hold", &websocket.DialOptions{Subprotocols: []string{"telnet.mudstandards.org"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	return &page{t: t, ws: ws}
}

func (p *page) send(line string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageBinary, []byte(line)); err != nil {
		p.t.Fatal(err)
	}
}

// expect reads the page's output until it holds want; the WebSocket must
// stay open meanwhile.
func (p *page) expect(want string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		typ, msg, err := p.ws.Read(ctx)
		if err != nil {
			p.t.Fatalf("waiting for %q (had %q): %v (close status %d)", want, got.String(), err, websocket.CloseStatus(err))
		}
		if typ == websocket.MessageBinary {
			got.Write(msg)
		}
	}
}

// TestMoveOutFailsSafeForBrowsers: a browser player's move to another
// process is two-phase like a telnet player's. A batch that fails leaves
// the page connected to this process, on the same WebSocket, none the
// wiser; one that commits tells it to reconnect (1012).
func TestMoveOutFailsSafeForBrowsers(t *testing.T) {
	wl := &web.Listener{Grace: time.Minute}
	e := newEnv(t, &gateway.Server{Reconnect: wl.Restore})
	accepted, ended := new(atomic.Int32), make(chan error, 4)
	e.backend(talker(accepted, ended))
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go wl.Serve(hl)
	go e.gw.Serve(wl)
	t.Cleanup(func() { wl.Close(); hl.Close() })

	p := openPage(t, hl.Addr().String())
	p.send("one\r\n")
	p.expect("1: one")

	gw2 := e.secondGateway()
	wl2 := &web.Listener{Grace: time.Minute}
	t.Cleanup(func() { wl2.Close() })
	gw2.Reconnect = wl2.Restore // read by Receive, on this goroutine
	m := &sameProcess{to: gw2, failWith: errors.New("the new process went away")}
	if n, err := e.gw.MoveOut(context.Background(), m); err == nil || n != 0 {
		t.Fatalf("MoveOut = %d, %v; want the failure", n, err)
	}
	p.send("two\r\n")
	p.expect("2: two")
	if accepted.Load() != 1 {
		t.Errorf("%d sessions accepted: the page's session was lost and begun again", accepted.Load())
	}

	// Committed, the page is told to reconnect.
	m = &sameProcess{to: gw2}
	if n, err := e.gw.MoveOut(context.Background(), m); err != nil || n != 1 {
		t.Fatalf("MoveOut = %d, %v; want 1 moved", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		_, _, err := p.ws.Read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != 1012 {
				t.Fatalf("after the move the page's WebSocket ended with %v (status %d), want 1012", err, code)
			}
			break
		}
	}
}
