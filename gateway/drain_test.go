package gateway_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"holdfast/gateway"
	"holdfast/gateway/web"
)

// emptied waits for the drained gateway to have no player left.
func emptied(t *testing.T, gw *gateway.Server) {
	t.Helper()
	select {
	case <-gw.Emptied():
	case <-time.After(waitFor):
		t.Fatalf("the gateway did not empty: %+v", gw.DrainStatus())
	}
}

// readToEOF reads what the player still gets until the gateway closes
// the connection.
func (p *player) readToEOF() string {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	b, err := io.ReadAll(p.r)
	if err != nil {
		p.t.Fatalf("waiting for the gateway to close: %v (read %q)", err, b)
	}
	return string(b)
}

// refused checks that the gateway's listener is gone: a balancer's
// connection attempt fails, and it tries another gateway.
func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err == nil {
		c.Close()
		t.Fatalf("a connection to %s was accepted during the drain", addr)
	}
}

// TestDrainTelnet: a drain closes the listener and tells each telnet
// player the operator's message once; they play on until they leave or the
// deadline passes, when they are told again and disconnected.
func TestDrainTelnet(t *testing.T) {
	const msg = "Maintenance at noon: see you on the other side."
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{
		{"player leaves", time.Hour},
		{"deadline", 1500 * time.Millisecond},
		{"at once", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, &gateway.Server{DrainMessage: msg, DrainTimeout: tc.timeout})
			e.backend(talker(new(atomic.Int32), make(chan error, 4)))
			p := e.dial()
			p.send("one\r\n")
			p.expect("1: one")
			if d := e.gw.DrainStatus(); d.Draining || d.Telnet != 1 || d.Left() != 1 {
				t.Fatalf("before the drain: %+v", d)
			}

			if err := e.gw.Drain(); err != nil {
				t.Fatal(err)
			}
			if err := e.gw.Drain(); err != nil {
				t.Fatalf("a second drain: %v", err)
			}
			p.expect("[holdfast] " + msg)
			refused(t, e.addr)
			d := e.gw.DrainStatus()
			if !d.Draining || d.Done || d.Since.IsZero() {
				t.Errorf("draining: %+v", d)
			}
			switch tc.timeout {
			case time.Hour:
				if d.Telnet != 1 || d.Web != 0 || d.TelnetTLS != 0 {
					t.Errorf("draining, the players left: %+v, want 1 telnet", d)
				}
				if want := d.Since.Add(time.Hour); !d.Deadline.Equal(want) {
					t.Errorf("deadline %v, want %v", d.Deadline, want)
				}
				p.send("two\r\n")
				p.expect("2: two")
				p.conn.Close()
			case -1:
				if rest := p.readToEOF(); strings.Contains(rest, msg) {
					t.Errorf("told twice at once: %q", rest)
				}
			default:
				p.send("two\r\n")
				p.expect("2: two")
				if rest := p.readToEOF(); !strings.Contains(rest, "[holdfast] "+msg) {
					t.Errorf("disconnected at the deadline with %q, want the message again", rest)
				}
				if time.Since(d.Since) < tc.timeout {
					t.Errorf("disconnected %v into the drain, before its deadline %v", time.Since(d.Since), tc.timeout)
				}
			}
			emptied(t, e.gw)
			if d := e.gw.DrainStatus(); !d.Done || d.Left() != 0 {
				t.Errorf("drained: %+v", d)
			}
		})
	}
}

// TestDrainBrowser: a browser player whose page reconnects by itself is
// told, and its WebSocket closed with 1012 so that the page reconnects
// through the balancer to another gateway; a telnet player on the same
// gateway stays.
func TestDrainBrowser(t *testing.T) {
	wl := &web.Listener{Grace: time.Minute}
	e := newEnv(t, &gateway.Server{DrainTimeout: time.Hour})
	e.backend(talker(new(atomic.Int32), make(chan error, 4)))
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go wl.Serve(hl)
	go e.gw.Serve(wl)
	t.Cleanup(func() { wl.Close(); hl.Close() })

	pg := openPage(t, hl.Addr().String())
	pg.send("one\r\n")
	pg.expect("1: one")
	p := e.dial()
	p.send("one\r\n")
	p.expect("1: one")
	if d := e.gw.DrainStatus(); d.Web != 1 || d.Telnet != 1 {
		t.Fatalf("before the drain: %+v, want a browser and a telnet player", d)
	}

	if err := e.gw.Drain(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var notices []string
	for {
		typ, msg, err := pg.ws.Read(ctx)
		if err != nil {
			if code := websocket.CloseStatus(err); code != 1012 {
				t.Fatalf("the drained page's WebSocket ended with %v (status %d), want 1012", err, code)
			}
			break
		}
		if typ == websocket.MessageText {
			notices = append(notices, string(msg))
		}
	}
	if !strings.Contains(strings.Join(notices, "\n"), "Reconnecting you to another one") {
		t.Errorf("the page was not told why it reconnects; its notices: %q", notices)
	}
	refused(t, hl.Addr().String())

	deadline := time.Now().Add(waitFor)
	for d := e.gw.DrainStatus(); d.Web != 0; d = e.gw.DrainStatus() {
		if time.Now().After(deadline) {
			t.Fatalf("the browser player's session is still here: %+v", d)
		}
		time.Sleep(10 * time.Millisecond) // the session ends as its goroutines notice
	}
	p.expect("going down for maintenance")
	p.send("two\r\n")
	p.expect("2: two")
	if d := e.gw.DrainStatus(); d.Telnet != 1 || d.Done {
		t.Errorf("the telnet player should stay: %+v", d)
	}
	p.conn.Close()
	emptied(t, e.gw)
}

// TestDrainZeroAndClosed: a zero Server drains (it has nobody to wait
// for), and a closed one refuses.
func TestDrainZeroAndClosed(t *testing.T) {
	var gw gateway.Server
	if d := gw.DrainStatus(); d.Draining {
		t.Errorf("a new server drains: %+v", d)
	}
	if err := gw.Drain(); err != nil {
		t.Fatal(err)
	}
	emptied(t, &gw)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Serve(ln); !errors.Is(err, gateway.ErrServerClosed) {
		t.Errorf("Serve during a drain: %v, want ErrServerClosed", err)
	}
	gw.Close()
	var closed gateway.Server
	closed.Close()
	if err := closed.Drain(); !errors.Is(err, gateway.ErrServerClosed) {
		t.Errorf("Drain after Close: %v, want ErrServerClosed", err)
	}
}

// selfSigned returns a TLS certificate for 127.0.0.1, made now.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestDrainKinds: the drain counts telnet players over TLS apart, tells
// them as it tells the others, and with a negative timeout disconnects
// every telnet player at once.
func TestDrainKinds(t *testing.T) {
	e := newEnv(t, &gateway.Server{DrainTimeout: -1})
	e.backend(talker(new(atomic.Int32), make(chan error, 4)))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.gw.Serve(ln) }()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	secure := &player{t: t, conn: c, r: bufio.NewReader(c)}
	secure.send("one\r\n")
	secure.expect("1: one")
	plain := e.dial()
	plain.send("one\r\n")
	plain.expect("1: one")
	if d := e.gw.DrainStatus(); d.Telnet != 1 || d.TelnetTLS != 1 || d.Web != 0 {
		t.Fatalf("before the drain: %+v, want a telnet player and one over TLS", d)
	}

	if err := e.gw.Drain(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
		t.Errorf("Serve of the TLS listener: %v, want ErrServerClosed", err)
	}
	for _, p := range []*player{secure, plain} {
		if rest := p.readToEOF(); !strings.Contains(rest, "[holdfast] "+gateway.DefaultDrainMessage) {
			t.Errorf("disconnected at once with %q, want the default message", rest)
		}
	}
	emptied(t, e.gw)
}
