package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"holdfast/backend"
	"holdfast/epmd"
	"holdfast/gateway"
	"holdfast/gateway/telnet"
)

// linkMeter sits on the link between the gateway and the backend, as a
// relay registered under its own name, and counts the bytes the gateway
// sends. It forwards them untouched, so the link works as without it.
type linkMeter struct {
	toBackend atomic.Int64
	ln        net.Listener
	reg       *epmd.Registration
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     []net.Conn
}

// meterLink registers name in the test's registry and relays the link
// that the gateway opens there to the backend registered as "game".
func (e *env) meterLink(name string) *linkMeter {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	m := &linkMeter{ln: ln}
	client := &epmd.Client{Addr: e.regAddr}
	m.reg, err = client.Register(context.Background(), epmd.Node{Name: name, Port: uint16(ln.Addr().(*net.TCPAddr).Port)}, zaptest.NewLogger(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			node, err := client.Lookup(context.Background(), "game")
			if err != nil {
				c.Close()
				continue
			}
			b, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", node.Port))
			if err != nil {
				c.Close()
				continue
			}
			m.mu.Lock()
			m.conns = append(m.conns, c, b)
			m.mu.Unlock()
			m.wg.Add(2)
			go func() {
				defer m.wg.Done()
				io.Copy(countingWriter{b, &m.toBackend}, c)
				b.Close()
			}()
			go func() {
				defer m.wg.Done()
				io.Copy(c, b)
				c.Close()
			}()
		}
	}()
	e.t.Cleanup(func() {
		m.reg.Close()
		ln.Close()
		m.mu.Lock()
		for _, c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
		m.wg.Wait()
	})
	return m
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func naws(w, h int) string {
	return string(telnet.AppendSubneg(nil, telnet.OptNAWS, []byte{byte(w >> 8), byte(w), byte(h >> 8), byte(h)}))
}

// fillFacts answers the gateway's offers as a client that fills every
// fact it can, each value as long as a subnegotiation may be.
func (p *player) fillFacts() {
	p.t.Helper()
	long := strings.Repeat("x", 4000)
	const iac, will, dont = "\xff", "\xfb", "\xfe"
	s := iac + will + "\x18" + iac + will + "\x1f" + iac + will + "\x27" // TTYPE, NAWS, NEW-ENVIRON
	for _, opt := range []string{"\x19", "\x2a", "\x46", "\x56", "\xc9"} {
		s += iac + dont + opt // no EOR, CHARSET, MSSP, MCCP2, GMCP
	}
	s += naws(80, 24)
	env := "\x00"
	for _, v := range []string{"CLIENT_NAME", "CLIENT_VERSION", "IPADDRESS"} {
		env += "\x00" + v + "\x01" + long[:2000]
	}
	s += string(telnet.AppendSubneg(nil, telnet.OptNewEnviron, []byte(env)))
	// The terminal type cycle last: its end settles the negotiation, so
	// the session opens with every fact.
	ttype := string(telnet.AppendSubneg(nil, telnet.OptTTYPE, []byte("\x00"+long)))
	s += ttype + ttype
	p.send(s)
}

// TestFactsFloodBounded: a player who fills every fact and then sends
// hundreds of window sizes costs the link a few bytes per update, and
// at most one update per session per interval; the backend ends up with
// the last size. (The gateway once sent the whole record, tens of KiB
// here, for each one.)
func TestFactsFloodBounded(t *testing.T) {
	e := newEnv(t, &gateway.Server{Backend: "metered"})
	meter := e.meterLink("metered")
	facts := make(chan backend.Facts, 1000)
	opened := make(chan backend.Facts, 1)
	e.backend(func(s *backend.Session) {
		s.OnFacts(func(f backend.Facts) { facts <- f })
		opened <- s.Facts()
		for {
			if _, err := s.ReadLine(); err != nil {
				return
			}
		}
	})
	p := e.dial()
	p.fillFacts()
	var first backend.Facts
	select {
	case first = <-opened:
	case <-time.After(waitFor):
		t.Fatal("the session did not open")
	}
	if len(first.Terminal) != telnet.MaxTerminal || len(first.ClientName) != telnet.MaxEnvValue || first.Width != 80 {
		t.Fatalf("opened with %d bytes of terminal, %d of client name, width %d", len(first.Terminal), len(first.ClientName), first.Width)
	}

	before := meter.toBackend.Load()
	start := time.Now()
	const n = 300
	for i := 1; i <= n; i++ {
		p.send(naws(80+i, 24+i%10))
	}
	wantW, wantH := 80+n, 24+n%10
	var last backend.Facts
	updates := 0
	deadline := time.After(waitFor)
	for last.Width != wantW || last.Height != wantH {
		select {
		case last = <-facts:
			updates++
		case <-deadline:
			t.Fatalf("after %d updates the backend has %dx%d, want %dx%d", updates, last.Width, last.Height, wantW, wantH)
		}
	}
	elapsed := time.Since(start)
	sent := meter.toBackend.Load() - before
	t.Logf("%d NAWS (%d bytes) from the player: %d updates, %d bytes on the link in %v", n, n*9, updates, sent, elapsed)
	if last.Terminal != first.Terminal || last.ClientName != first.ClientName || last.ClientAddr != first.ClientAddr {
		t.Errorf("the updates lost facts: terminal %d bytes, client %d bytes, address %q; opened with %d, %d, %q",
			len(last.Terminal), len(last.ClientName), last.ClientAddr, len(first.Terminal), len(first.ClientName), first.ClientAddr)
	}
	if max := 2 + int(elapsed/gateway.FactsInterval); updates > max {
		t.Errorf("%d updates in %v, want at most %d (one per %v)", updates, elapsed, max, gateway.FactsInterval)
	}
	// Each update is a frame of a few bytes in a yamux header and a TLS
	// record; yamux adds a window update now and then.
	if limit := int64(updates)*96 + 1024; sent > limit {
		t.Errorf("%d bytes on the link for %d window sizes in %d updates, want at most %d", sent, n, updates, limit)
	}
}

// TestFactsUpdateNotLost: a change that comes while an update waits for
// its interval reaches the backend when the interval is over, and a
// change after a quiet spell goes at once.
func TestFactsUpdateNotLost(t *testing.T) {
	e := newEnv(t, nil)
	facts := make(chan backend.Facts, 100)
	opened := make(chan struct{})
	e.backend(func(s *backend.Session) {
		s.OnFacts(func(f backend.Facts) { facts <- f })
		close(opened)
		for {
			if _, err := s.ReadLine(); err != nil {
				return
			}
		}
	})
	p := e.dial()
	p.send("\xff\xfb\x1f" + naws(80, 24))
	<-opened
	want := func(w, h int) {
		t.Helper()
		deadline := time.After(waitFor)
		for {
			select {
			case f := <-facts:
				if f.Width == w && f.Height == h {
					return
				}
			case <-deadline:
				t.Fatalf("the backend never had %dx%d", w, h)
			}
		}
	}
	p.send(naws(100, 30))
	p.send(naws(101, 31)) // within the interval the first one started
	want(101, 31)
	p.send(naws(120, 40))
	want(120, 40)
}
