package epmd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const deadline = 10 * time.Second

func startServer(t testing.TB, srv *Server) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if srv == nil {
		srv = &Server{}
	}
	if tt, ok := t.(*testing.T); ok && srv.Logger == nil {
		srv.Logger = zaptest.NewLogger(tt)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, ln.Addr().String()
}

// waitUntil waits for cond, re-checking whenever the registry changes.
func waitUntil(t *testing.T, srv *Server, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		ch := srv.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// raw sends req (already framed) and returns everything the server answers
// before it closes.
func raw(t *testing.T, addr string, req []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(deadline))
	c.Write(req)
	c.(*net.TCPConn).CloseWrite()
	b, err := readToClose(c)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return b
}

// readToClose reads until the server closes. A reset counts as a close: a
// server that closes with our bytes unread resets the connection.
func readToClose(c net.Conn) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if errors.Is(err, syscall.ECONNRESET) {
		err = nil
	}
	return b, err
}

func alive2(name string, high uint16, extra []byte) []byte {
	n := Node{Name: name, Port: 4242, NodeType: NodeTypeNormal, HighVersion: high, LowVersion: 5, Extra: extra}
	return appendAlive2Req(nil, &n)
}

func TestRegisterLookupNames(t *testing.T) {
	srv, addr := startServer(t, nil)
	c := &Client{Addr: addr}
	ctx := context.Background()
	if _, err := c.Lookup(ctx, "game"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup before registering: %v, want ErrNotFound", err)
	}
	r1, err := c.Register(ctx, Node{Name: "game", Port: 1111, Extra: []byte("x")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Register(ctx, Node{Name: "other", Port: 2222}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Lookup(ctx, "game")
	if err != nil || n.Port != 1111 || n.NodeType != NodeTypeHidden || n.HighVersion != 6 || string(n.Extra) != "x" {
		t.Fatalf("lookup: %+v %v", n, err)
	}
	port, names, err := c.Names(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantPort := srv.port(fakeLocal(addr))
	if port != wantPort || len(names) != 2 || names[0] != (NameEntry{"other", 2222}) || names[1] != (NameEntry{"game", 1111}) {
		t.Fatalf("names: port %d %v; want port %d, newest first", port, names, wantPort)
	}
	// The registration lives exactly as long as its connection.
	r1.Close()
	waitUntil(t, srv, "game is unregistered", func() bool { _, ok := srv.Lookup("game"); return !ok })
	if _, err := c.Lookup(ctx, "game"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup after Close: %v", err)
	}
	r2.Close()
	r2.Close() // twice is fine
}

// fakeLocal gives port() a connection whose local address is addr.
func fakeLocal(addr string) net.Conn {
	a, _ := net.ResolveTCPAddr("tcp", addr)
	return localConn{a}
}

type localConn struct{ a *net.TCPAddr }

func (c localConn) LocalAddr() net.Addr            { return c.a }
func (localConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (localConn) Write(b []byte) (int, error)      { return len(b), nil }
func (localConn) Close() error                     { return nil }
func (localConn) RemoteAddr() net.Addr             { return nil }
func (localConn) SetDeadline(time.Time) error      { return nil }
func (localConn) SetReadDeadline(time.Time) error  { return nil }
func (localConn) SetWriteDeadline(time.Time) error { return nil }

// TestAnyByteEndsRegistration: Erlang's epmd drops a registration when
// anything arrives on its connection.
func TestAnyByteEndsRegistration(t *testing.T) {
	srv, addr := startServer(t, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(appendRequest(nil, alive2("game", 6, nil)))
	resp := make([]byte, 6)
	if _, err := io.ReadFull(c, resp); err != nil || resp[0] != tagAlive2XResp || resp[1] != 0 {
		t.Fatalf("ALIVE2 answer %v %v", resp, err)
	}
	c.Write([]byte{0})
	waitUntil(t, srv, "game is unregistered", func() bool { _, ok := srv.Lookup("game"); return !ok })
	c.SetReadDeadline(time.Now().Add(deadline))
	if n, err := c.Read(resp); err != io.EOF {
		t.Fatalf("after a stray byte the server should close; read %d %v", n, err)
	}
}

func TestDuplicateAndFastRestart(t *testing.T) {
	_, addr := startServer(t, nil)
	c := &Client{Addr: addr}
	ctx := context.Background()
	r, err := c.Register(ctx, Node{Name: "game", Port: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.register(ctx, &Node{Name: "game", Port: 2, HighVersion: 6}); !errors.Is(err, ErrRefused) {
		t.Fatalf("duplicate of a live name: %v, want ErrRefused", err)
	}
	first := r.Creation()
	r.Close()
	// A node that restarts at once, before the server has seen the old
	// socket close, is no duplicate.
	prev := first
	for i := 0; i < 50; i++ {
		conn, creation, err := c.register(ctx, &Node{Name: "game", Port: 3, HighVersion: 6})
		if err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		if creation == 0 || creation == prev {
			t.Fatalf("restart %d: creation %d after %d; want non-zero and changed", i, creation, prev)
		}
		prev = creation
		conn.Close()
	}
}

func TestAlive2Versions(t *testing.T) {
	_, addr := startServer(t, nil)
	for _, tc := range []struct {
		high uint16
		tag  byte
		size int
	}{{6, tagAlive2XResp, 6}, {5, tagAlive2Resp, 4}} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(deadline))
		c.Write(appendRequest(nil, alive2("v"+string(rune('0'+tc.high)), tc.high, nil)))
		b := make([]byte, tc.size)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != tc.tag || b[1] != 0 {
			t.Fatalf("version %d: answer %v %v", tc.high, b, err)
		}
		if tc.high == 5 {
			if cr := binary.BigEndian.Uint16(b[2:]); cr < 1 || cr > 3 {
				t.Fatalf("v5 creation %d, want 1..3", cr)
			}
		}
		c.Close()
	}
}

// TestMalformed sends each malformed request of the spec and checks the
// outcome: a silent close, or an error answer.
func TestMalformed(t *testing.T) {
	_, addr := startServer(t, nil)
	long := strings.Repeat("a", 256)
	errV6 := appendAlive2Resp(nil, 6, 1, errorCreation)
	for _, tc := range []struct {
		name string
		req  []byte
		want []byte // nil: silent close
	}{
		{"zero length", []byte{0, 0}, nil},
		{"length over the limit", append([]byte{0x0b, 0xf2}, make([]byte, 3058)...), nil},
		{"short ALIVE2", appendRequest(nil, []byte{tagAlive2Req, 0, 1, 77}), nil},
		{"name overruns", appendRequest(nil, append(alive2("game", 6, nil)[:11], 0, 200)), nil},
		{"NUL in name", appendRequest(nil, alive2("ga\x00me", 6, nil)), nil},
		{"name of 256 bytes", appendRequest(nil, alive2(long, 6, nil)), errV6},
		{"name not UTF-8", appendRequest(nil, alive2("g\xffme", 6, nil)), errV6},
		{"empty name", appendRequest(nil, alive2("", 6, nil)), nil},
		{"empty name with extra", appendRequest(nil, alive2("", 6, []byte("x"))), errV6},
		{"extra over 1020", appendRequest(nil, alive2("game", 6, make([]byte, 1021))), errV6},
		{"unknown tag", appendRequest(nil, []byte{'q'}), nil},
		{"PORT_PLEASE2 empty", appendRequest(nil, []byte{tagPortPlease2}), nil},
		{"PORT_PLEASE2 NUL", appendRequest(nil, []byte{tagPortPlease2, 'a', 0, 'b'}), nil},
		{"PORT_PLEASE2 unknown", appendRequest(nil, []byte{tagPortPlease2, 'x'}), []byte{tagPort2Resp, 1}},
		{"PORT_PLEASE2 trailing NUL", appendRequest(nil, []byte{tagPortPlease2, 'x', 0}), []byte{tagPort2Resp, 1}},
		{"truncated body", []byte{0, 10, tagNamesReq}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := raw(t, addr, tc.req)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("answer %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	_, addr := startServer(t, &Server{IdleTimeout: 50 * time.Millisecond})
	if got := raw(t, addr, []byte{0}); len(got) != 0 {
		t.Fatalf("answer %v to half a length", got)
	}
}

// TestClientRegistersAgain restarts the registry under a live registration:
// the client registers again by itself.
func TestClientRegistersAgain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	first := &Server{}
	go first.Serve(ln)
	c := &Client{Addr: addr}
	r, err := c.Register(context.Background(), Node{Name: "game", Port: 7}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first.Close()

	second, _ := startServerAt(t, addr)
	waitUntil(t, second, "game registers again", func() bool { _, ok := second.Lookup("game"); return ok })
}

func startServerAt(t *testing.T, addr string) (*Server, string) {
	t.Helper()
	timeout := time.Now().Add(deadline)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			srv := &Server{Logger: zaptest.NewLogger(t)}
			done := make(chan struct{})
			go func() { srv.Serve(ln); close(done) }()
			t.Cleanup(func() { srv.Close(); <-done })
			return srv, addr
		}
		if time.Now().After(timeout) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // the port is still being released
	}
}

// TestShutdownWaitsForRequests checks that Shutdown lets a request in
// progress finish and that Serve then returns ErrServerClosed.
func TestShutdownWaitsForRequests(t *testing.T) {
	srv, addr := startServer(t, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0, 1}) // half a request: the server waits for the body
	// Shutdown closes the listener; a connection still in its backlog would
	// never be served, so wait until the server has it.
	for stop := time.Now().Add(deadline); ; time.Sleep(time.Millisecond) {
		srv.mu.Lock()
		n := len(srv.conns)
		srv.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(stop) {
			t.Fatal("the server never took the connection")
		}
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	c.Write([]byte{tagNamesReq})
	c.SetReadDeadline(time.Now().Add(deadline))
	b, _ := io.ReadAll(c)
	if len(b) != 4 {
		t.Fatalf("NAMES during shutdown answered %v", b)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func FuzzServer(f *testing.F) {
	f.Add(appendRequest(nil, alive2("game", 6, []byte("x"))))
	f.Add(appendRequest(nil, []byte{tagPortPlease2, 'g'}))
	f.Add(appendRequest(nil, []byte{tagNamesReq}))
	f.Add([]byte{0xff, 0xff, 1, 2, 3})
	f.Add(append(appendRequest(nil, alive2("game", 5, nil)), 1, 2, 3))
	srv, addr := startServer(f, &Server{IdleTimeout: 200 * time.Millisecond})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(deadline))
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		if _, err := readToClose(c); err != nil {
			t.Fatalf("the server did not close: %v", err)
		}
	})
	// Whatever was sent, the server still answers and holds no registration
	// whose connection is gone.
	port, names, err := (&Client{Addr: addr}).Names(context.Background())
	if err != nil || port == 0 {
		f.Fatalf("server broken after fuzzing: %v", err)
	}
	for _, n := range names {
		if _, ok := srv.Lookup(n.Name); ok {
			f.Fatalf("registration %q outlived its connection", n.Name)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(alive2("game", 6, []byte("x")))
	f.Add(appendPort2Resp(nil, &Node{Name: "game", Port: 1, Extra: []byte("e")}))
	f.Add([]byte("\x00\x00\x11\x11name a at port 1\nname b at port 2\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if n, err := parseAlive2Req(in); err == nil {
			if !validName(n.Name) || len(n.Extra) > maxExtraLen {
				t.Fatalf("accepted %+v", n)
			}
			if again, err := parseAlive2Req(appendAlive2Req(nil, &n)); err != nil || again.Name != n.Name {
				t.Fatalf("re-encoding %+v: %+v %v", n, again, err)
			}
		}
		parsePort2Resp(in)
		parseNames(in)
		if len(in) > 0 {
			parsePortPlease2(in)
		}
		readRequest(bytes.NewReader(in))
	})
}
