package link

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"holdfast/internal/testnet"
)

// handshake runs both sides over a loopback TCP connection, the gateway's
// through mangle, and returns what each side ended with.
func handshake(t *testing.T, gwCookie, beCookie string, mangle func(net.Conn) net.Conn) (gw, be net.Conn, inst string, gwErr, beErr error) {
	t.Helper()
	cr, err := NewCredentials([]byte(beCookie))
	if err != nil {
		t.Fatal(err)
	}
	a, b := testnet.TCPPair(t)
	var wg sync.WaitGroup
	wg.Go(func() {
		be, beErr = BackendHandshake(b, cr)
		if beErr != nil {
			b.Close()
		}
	})
	gw, inst, gwErr = GatewayHandshake(mangle(a), []byte(gwCookie))
	if gwErr != nil {
		a.Close()
	}
	wg.Wait()
	if gwErr == nil && inst != cr.Instance {
		t.Errorf("gateway learnt instance %q, the backend is %q", inst, cr.Instance)
	}
	return gw, be, inst, gwErr, beErr
}

func TestHandshake(t *testing.T) {
	same := func(c net.Conn) net.Conn { return c }
	gw, be, _, g, b := handshake(t, "secret", "secret", same)
	if g != nil || b != nil {
		t.Fatalf("same cookie: gateway %v, backend %v", g, b)
	}
	// What follows runs inside TLS 1.3.
	for _, c := range []net.Conn{gw, be} {
		if v := c.(conn).ConnectionState().Version; v != tls.VersionTLS13 {
			t.Fatalf("TLS version %x, want 1.3", v)
		}
	}
	go gw.Write([]byte("look\n"))
	got := make([]byte, 5)
	if _, err := io.ReadFull(be, got); err != nil || string(got) != "look\n" {
		t.Fatalf("after the handshake: %q %v", got, err)
	}

	_, _, _, g, b = handshake(t, "secret", "other", same)
	if !errors.Is(g, ErrAuth) || !errors.Is(b, ErrAuth) {
		t.Fatalf("different cookies: gateway %v, backend %v; want ErrAuth on both", g, b)
	}
}

// recorder is a relay's view of a connection: every byte that passes.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	saw []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.saw = append(r.saw, p[:n]...)
	r.mu.Unlock()
	return n, err
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.saw = append(r.saw, p...)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

// TestHandshakeRelay: a relay that forwards bytes both ways sees neither
// the cookie nor anything said after the handshake.
func TestHandshakeRelay(t *testing.T) {
	var rec *recorder
	gw, be, _, g, b := handshake(t, "cookie-7f3a", "cookie-7f3a", func(c net.Conn) net.Conn {
		rec = &recorder{Conn: c}
		return rec
	})
	if g != nil || b != nil {
		t.Fatalf("gateway %v, backend %v", g, b)
	}
	secret := []byte("password swordfish\n")
	go gw.Write(secret)
	got := make([]byte, len(secret))
	if _, err := io.ReadFull(be, got); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	saw := bytes.Clone(rec.saw)
	rec.mu.Unlock()
	for _, s := range [][]byte{[]byte("swordfish"), []byte("cookie-7f3a")} {
		if bytes.Contains(saw, s) {
			t.Errorf("the relay saw %q", s)
		}
	}
}

// mitm terminates TLS on both sides with its own certificate and passes
// each side's proof to the other, as a relay that wants to read the link
// would.
func mitm(t *testing.T, toBackend net.Conn) net.Conn {
	t.Helper()
	fake, err := NewCredentials([]byte("whatever"))
	if err != nil {
		t.Fatal(err)
	}
	toGateway, mine := testnet.TCPPair(t)
	go func() {
		// Towards the backend: play the gateway, up to its proof.
		if err := readPreamble(toBackend); err != nil {
			return
		}
		toBackend.Write(preamble())
		cfg := tlsConfig()
		cfg.InsecureSkipVerify = true
		up := tls.Client(toBackend, cfg)
		if up.Handshake() != nil {
			return
		}
		// Towards the gateway: play the backend.
		mine.Write(preamble())
		if readPreamble(mine) != nil {
			return
		}
		cfg = tlsConfig()
		cfg.Certificates = []tls.Certificate{fake.cert}
		down := tls.Server(mine, cfg)
		if down.Handshake() != nil {
			return
		}
		// Forward the plaintext both ways.
		go io.Copy(up, down)
		io.Copy(down, up)
		down.Close()
	}()
	return toGateway
}

// TestHandshakeMITM: a party in the middle that terminates TLS on each side
// and forwards the proofs is refused by both sides.
func TestHandshakeMITM(t *testing.T) {
	cr, err := NewCredentials([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := testnet.TCPPair(t)
	beErr := make(chan error, 1)
	go func() {
		_, err := BackendHandshake(b, cr)
		b.Close()
		beErr <- err
	}()
	gwSide := mitm(t, a)
	_, _, err = GatewayHandshake(gwSide, []byte("secret"))
	if !errors.Is(err, ErrAuth) {
		t.Errorf("gateway through a TLS-terminating relay: %v, want ErrAuth", err)
	}
	gwSide.Close()
	if err := <-beErr; !errors.Is(err, ErrAuth) {
		t.Errorf("backend through a TLS-terminating relay: %v, want ErrAuth", err)
	}
}

// TestHandshakeTamper: a relay that changes one byte after the handshake
// breaks the connection rather than changing a frame.
func TestHandshakeTamper(t *testing.T) {
	var flip flipper
	gw, be, _, g, b := handshake(t, "secret", "secret", func(c net.Conn) net.Conn {
		flip.Conn = c
		return &flip
	})
	if g != nil || b != nil {
		t.Fatalf("gateway %v, backend %v", g, b)
	}
	flip.armed.Store(true)
	go gw.Write([]byte("Input: north\n"))
	be.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := be.Read(make([]byte, 64))
	if err == nil || n > 0 {
		t.Fatalf("a tampered record was read: %d bytes, %v", n, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the tampered record was neither read nor refused: %v", err)
	}
}

// flipper flips the last byte of the first write once armed.
type flipper struct {
	net.Conn
	armed atomic.Bool
}

func (f *flipper) Write(p []byte) (int, error) {
	if f.armed.CompareAndSwap(true, false) && len(p) > 0 {
		q := bytes.Clone(p)
		q[len(q)-1] ^= 1
		return f.Conn.Write(q)
	}
	return f.Conn.Write(p)
}

func TestHandshakeRejectsStrangers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hello []byte
	}{
		{"not holdfast", []byte("SSH-2.0-O")},
		{"version 1, unencrypted", append([]byte("HOLDFAST\x01"), make([]byte, 32)...)},
		{"later version", []byte("HOLDFAST\x03")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testnet.TCPPair(t)
			go func() { b.Write(tc.hello); io.Copy(io.Discard, b) }()
			_, _, err := GatewayHandshake(a, []byte("secret"))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want ErrProtocol", err)
			}
			a.Close()
		})
	}
}

// FuzzGatewayHandshake feeds the gateway's side of the handshake whatever a
// peer may send: it fails cleanly, within its deadline, and never takes a
// peer without the cookie.
func FuzzGatewayHandshake(f *testing.F) {
	f.Add([]byte("HOLDFAST\x02"))
	f.Add([]byte("HOLDFAST\x02\x16\x03\x01\x00\x05hello"))
	f.Add(append([]byte("HOLDFAST\x01"), make([]byte, 64)...))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go io.Copy(io.Discard, b)
		go func() {
			b.Write(in)
			b.Close()
		}()
		if _, _, err := GatewayHandshake(a, []byte("secret")); err == nil {
			t.Fatal("a peer without the cookie was taken")
		}
	})
}

// FuzzBackendHandshake does the same for the backend's side.
func FuzzBackendHandshake(f *testing.F) {
	cr, err := NewCredentials([]byte("secret"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("HOLDFAST\x02"))
	f.Add([]byte("HOLDFAST\x02\x16\x03\x01\x02\x00\x01"))
	f.Add([]byte("HOLDFAST\x01"))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go io.Copy(io.Discard, b)
		go func() {
			b.Write(in)
			b.Close()
		}()
		if _, err := BackendHandshake(a, cr); err == nil {
			t.Fatal("a peer without the cookie was taken")
		}
	})
}

// TestNewer: the order of two backend processes is their start, and an
// instance that does not say when it started is never newer, nor older.
func TestNewer(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		want bool
	}{
		{"started later", NewInstance(2_000), NewInstance(1_000), true},
		{"started earlier", NewInstance(1_000), NewInstance(2_000), false},
		{"started at once", NewInstance(1_000), NewInstance(1_000), false},
		{"decimal, not text order", NewInstance(10), NewInstance(9), true},
		{"a says no start", "ABCDEFGH", NewInstance(1), false},
		{"b says no start", NewInstance(1), "ABCDEFGH", false},
		{"a start that is no number", "x1.ABC", NewInstance(1), false},
		{"a negative start", "-5.ABC", "-9.ABC", false},
		{"an empty start", ".ABC", NewInstance(0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Newer(tc.a, tc.b); got != tc.want {
				t.Errorf("Newer(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

// TestNewerProven: the gateway learns the order from the handshake, under
// the cookie's proof: a backend that claims another start than the one its
// proof was made for is refused.
func TestNewerProven(t *testing.T) {
	learn := func(cr *Credentials, claim string) (string, error) {
		a, b := testnet.TCPPair(t)
		var wg sync.WaitGroup
		wg.Go(func() {
			if claim == "" {
				BackendHandshake(b, cr)
			} else {
				claimStart(b, cr, claim)
			}
		})
		defer wg.Wait()
		_, inst, err := GatewayHandshake(a, []byte("secret"))
		a.Close()
		b.Close()
		return inst, err
	}
	older, err := NewCredentials([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	older.Instance = NewInstance(1_000)
	newer, err := NewCredentials([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	newer.Instance = NewInstance(2_000)
	a, err := learn(older, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := learn(newer, "")
	if err != nil {
		t.Fatal(err)
	}
	if !Newer(b, a) || Newer(a, b) {
		t.Fatalf("learnt %q and %q: the second is not the newer", a, b)
	}
	// The older backend, with the cookie, sends a later start than the
	// one its proof is for: a relay that rewrote it would do no better.
	if inst, err := learn(older, NewInstance(3_000)); !errors.Is(err, ErrAuth) {
		t.Fatalf("a start claimed against the proof: learnt %q, %v; want ErrAuth", inst, err)
	}
}

// claimStart is BackendHandshake with the proof made for cr's instance and
// claim sent as the instance.
func claimStart(c net.Conn, cr *Credentials, claim string) {
	c.Write(preamble())
	if readPreamble(c) != nil {
		return
	}
	cfg := tlsConfig()
	cfg.Certificates = []tls.Certificate{cr.cert}
	tc := tls.Server(c, cfg)
	if tc.Handshake() != nil {
		return
	}
	cb, err := binding(tc)
	if err != nil {
		return
	}
	got := make([]byte, macLen)
	if _, err := io.ReadFull(tc, got); err != nil {
		return
	}
	msg := proof(cr.Cookie, backendLabel, cb, cr.Instance)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(claim)))
	tc.Write(append(msg, claim...))
}
