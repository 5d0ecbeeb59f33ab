package web

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// counter is an Admitter that counts the places held.
type counter struct {
	mu       sync.Mutex
	refuse   bool
	held     int
	conns    int
	sessions int
	paid     []bool
}

type place struct {
	c    *counter
	once sync.Once
}

func (p *place) Release() {
	p.once.Do(func() {
		p.c.mu.Lock()
		p.c.held--
		p.c.mu.Unlock()
	})
}

func (c *counter) take(session, paid bool) (Admission, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return nil, errors.New("The game is full right now.")
	}
	c.held++
	if session {
		c.sessions++
		c.paid = append(c.paid, paid)
	} else {
		c.conns++
	}
	return &place{c: c}, nil
}

func (c *counter) AdmitConnection(net.Addr) (Admission, error) { return c.take(false, false) }
func (c *counter) AdmitSession(_ net.Addr, paid bool) (Admission, error) {
	return c.take(true, paid)
}

func (c *counter) waitHeld(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		held := c.held
		c.mu.Unlock()
		if held == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d places held, want %d", held, n)
		}
		time.Sleep(time.Millisecond) // the server's goroutines have no event to wait on
	}
}

// TestGate checks the admission of a gated listener: a connection holds a
// place from before its first byte is read until its first request is, a
// WebSocket's session holds one from before its upgrade until the gateway
// has it, and a refused connection is answered 503 without its request
// being read.
func TestGate(t *testing.T) {
	adm := &counter{}
	l := &Listener{Admission: adm}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve(l.Gate(ln, false))
	t.Cleanup(func() { l.Close() })
	addr := ln.Addr().String()

	// A connection that sends nothing holds its place until it goes.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	adm.waitHeld(t, 1)
	raw.Close()
	adm.waitHeld(t, 0)

	// A page: its place is given back once its request is read.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	adm.waitHeld(t, 0)

	// A WebSocket: the session's place, paid at the gate, goes with the
	// Conn.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	c := accept(t, l)
	if c.Admission() == nil {
		t.Fatal("the accepted Conn brings no place")
	}
	adm.mu.Lock()
	sessions, paid := adm.sessions, adm.paid
	adm.mu.Unlock()
	if sessions != 1 || !paid[0] {
		t.Errorf("%d sessions admitted, paid %v; want 1, paid at the gate", sessions, paid)
	}
	adm.waitHeld(t, 1)
	c.Admission().Release()

	// Refused: 503 at once, nothing read of the request.
	adm.mu.Lock()
	adm.refuse = true
	adm.mu.Unlock()
	raw, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(raw).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 503") {
		t.Fatalf("a refused connection read %q, %v", status, err)
	}
}

// TestGateTrustedProxy checks that a trusted proxy's connections pass the
// gate: its players are admitted at the upgrade, by their own address, and
// pay the rate there.
func TestGateTrustedProxy(t *testing.T) {
	adm := &counter{}
	l := &Listener{Admission: adm, ForwardedFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve(l.Gate(ln, false))
	t.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {"198.51.100.7"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	accept(t, l)
	adm.mu.Lock()
	defer adm.mu.Unlock()
	if adm.conns != 0 || adm.sessions != 1 || adm.paid[0] {
		t.Errorf("%d connections and %d sessions admitted, paid %v; want 0 and 1, unpaid", adm.conns, adm.sessions, adm.paid)
	}
}

// TestResumeAdmitsNoSession checks that a request that says it resumes,
// and so skips the session's admission, cannot become a new session.
func TestResumeAdmitsNoSession(t *testing.T) {
	adm := &counter{}
	l := &Listener{Admission: adm}
	url := serveListener(t, l)
	for _, tc := range []struct {
		query, proto string
		hello        string
	}{
		{"?hold&resume", "", `{}`},
		{"?hold&resume", ProtoText, ""},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var protos []string
		if tc.proto != "" {
			protos = []string{tc.proto}
		}
		ws, _, err := websocket.Dial(ctx, url+"/ws"+tc.query, &websocket.DialOptions{Subprotocols: protos})
		if err != nil {
			t.Fatal(err)
		}
		if tc.hello != "" {
			ws.Write(ctx, websocket.MessageText, []byte(tc.hello))
		}
		_, _, err = ws.Read(ctx)
		if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Errorf("%s %s: %v, want closed with 1008", tc.query, tc.proto, err)
		}
		ws.CloseNow()
	}
	adm.mu.Lock()
	defer adm.mu.Unlock()
	if adm.sessions != 0 {
		t.Errorf("%d sessions admitted", adm.sessions)
	}
}
