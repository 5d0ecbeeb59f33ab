package test

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"holdfast/epmd"
	"holdfast/link"
)

// rogue registers the backend's name without the cookie and records every
// byte the gateway sends it.
type rogue struct {
	ln    net.Listener
	reg   *epmd.Registration
	creds *link.Credentials

	mu    sync.Mutex
	got   []byte
	conns int
	wg    sync.WaitGroup
}

func startRogue(t *testing.T, epmdPort int) *rogue {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := link.NewCredentials([]byte("the rogue's own cookie"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{ln: ln, creds: creds}
	r.wg.Add(1)
	go r.serve()
	c := &epmd.Client{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(epmdPort))}
	r.reg, err = c.Register(context.Background(), epmd.Node{Name: "game", Port: uint16(ln.Addr().(*net.TCPAddr).Port)}, nil)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

func (r *rogue) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns++
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			// Look like a backend: the handshake of the real one, with a
			// cookie of its own, keeping every byte the gateway sends.
			link.BackendHandshake(recording{c, r}, r.creds)
		}()
	}
}

// recording is the rogue's view of one connection: it keeps every byte it
// reads.
type recording struct {
	net.Conn
	r *rogue
}

func (rc recording) Read(p []byte) (int, error) {
	n, err := rc.Conn.Read(p)
	rc.r.mu.Lock()
	if len(rc.r.got) < 1<<20 {
		rc.r.got = append(rc.r.got, p[:n]...)
	}
	rc.r.mu.Unlock()
	return n, err
}

func (r *rogue) close() {
	r.reg.Close()
	r.ln.Close()
	r.wg.Wait()
}

func (r *rogue) received() ([]byte, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.got), r.conns
}

// TestRogueBackendGetsNothing registers the backend's name from processes
// without the cookie: a hand-made impostor and the real backend binary with
// another cookie. Neither gets a session or a byte of player input; the
// player's input is held and reaches the real backend once it registers.
func TestRogueBackendGetsNothing(t *testing.T) {
	sys := startSystem(t)
	r := startRogue(t, sys.epmdPort)

	p := dial(t, sys.telnet, "hunter2")
	p.expect("[holdfast] The game is not running right now.")
	p.send("hunter2")
	p.send("echo the secret is swordfish")
	// Two refused attempts: the gateway keeps trying and keeps refusing.
	sys.gw.waitLog("gateway: cannot link to backend", 2)
	r.close()
	got, conns := r.received()
	if conns == 0 {
		t.Fatal("the gateway never dialed the impostor")
	}
	for _, secret := range []string{"hunter2", "swordfish"} {
		if bytes.Contains(got, []byte(secret)) {
			t.Errorf("the impostor received player input %q", secret)
		}
	}
	if !strings.Contains(sys.gw.lastField("gateway: cannot link to backend", "error"), "cookie") {
		t.Errorf("gateway's refusal does not name the cookie: %q", sys.gw.lastField("gateway: cannot link to backend", "error"))
	}

	// The real binary with the wrong cookie is refused by both sides.
	n := sys.gw.count("gateway: cannot link to backend")
	wrong := start(t, "backend", sys.env(), "-cookie-file", writeCookie(t, "not-the-cookie"))
	sys.gw.waitLog("gateway: cannot link to backend", n+1)
	wrong.waitLog("backend: gateway link refused", 1)
	if wrong.count("backend: gateway linked") != 0 {
		t.Error("a backend with the wrong cookie was linked")
	}
	wrong.kill(9)
	wrong.wait()

	// The player saw nothing but the gateway's notice so far, and the held
	// input reaches the real backend in order.
	sys.startBackend()
	p.expect("What is your name?")
	p.expect("Welcome, hunter2.")
	p.expect("echo: the secret is swordfish")
}
