package test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// burst makes n attempts at once, from this host's one address, and
// counts those that got as far as try says; what they opened stays open
// until the test ends, so that each holds its place.
func burst(t *testing.T, n int, try func(ctx context.Context) (io.Closer, bool)) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var (
		mu   sync.Mutex
		got  int
		wg   sync.WaitGroup
		open []io.Closer
	)
	for range n {
		wg.Go(func() {
			c, ok := try(ctx)
			mu.Lock()
			defer mu.Unlock()
			if c != nil {
				open = append(open, c)
			}
			if ok {
				got++
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	return got
}

// tlsHandshake tries a TLS handshake with addr and holds the connection.
func tlsHandshake(addr string) func(ctx context.Context) (io.Closer, bool) {
	return func(ctx context.Context) (io.Closer, bool) {
		d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, false
		}
		return c, true
	}
}

// wsCounts tries n WebSocket upgrades at once as resumable pages, and
// counts the upgrades and the resume tokens issued.
func wsCounts(t *testing.T, addr string, n int) (upgrades, tokens int) {
	t.Helper()
	var mu sync.Mutex
	upgrades = burst(t, n, func(ctx context.Context) (io.Closer, bool) {
		ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws?hold", &websocket.DialOptions{Subprotocols: []string{"telnet.mudstandards.org"}})
		if err != nil {
			return nil, false
		}
		closer := closerFunc(func() error { return ws.CloseNow() })
		if ws.Write(ctx, websocket.MessageText, []byte(`{}`)) != nil {
			return closer, true
		}
		for {
			typ, msg, err := ws.Read(ctx)
			if err != nil {
				return closer, true
			}
			var m struct{ Token string }
			if typ == websocket.MessageText && json.Unmarshal(msg, &m) == nil && m.Token != "" {
				mu.Lock()
				tokens++
				mu.Unlock()
				return closer, true
			}
		}
	})
	return upgrades, tokens
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// TestLimitBurst sends bursts of 30 connections from one address at every
// listener: no more of them than the limits allow complete a TLS
// handshake, are upgraded to WebSocket or are issued a resume token. The
// limits apply before each of these costs, and a connection still in its
// handshake counts against them.
func TestLimitBurst(t *testing.T) {
	const n, perIP, burstSize = 30, 5, 3
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	tlsFlags := []string{"-tls-cert", certFile, "-tls-key", keyFile}
	listening := func(sys *system, msg, prefix string) string {
		t.Helper()
		for i := 1; ; i++ {
			m := sys.gw.waitLog(msg, i)
			if a, _ := m["addr"].(string); a != "" && prefix == "" {
				return a
			}
			if u, _ := m["url"].(string); prefix != "" && strings.HasPrefix(u, prefix) {
				return strings.TrimSuffix(strings.TrimPrefix(u, prefix), "/")
			}
		}
	}
	// The per-address limit, with the rate out of the way.
	perIPFlags := []string{"-max-per-ip", "5", "-conn-burst", "1000"}

	t.Run("telnet TLS handshakes", func(t *testing.T) {
		sys := startSystem(t, append(append([]string{"-tls-listen", "127.0.0.1:0"}, tlsFlags...), perIPFlags...)...)
		addr := listening(sys, "gateway: telnet over TLS listening", "")
		if got := burst(t, n, tlsHandshake(addr)); got > perIP || got == 0 {
			t.Errorf("%d of %d TLS handshakes completed, limit %d a client", got, n, perIP)
		}
	})
	t.Run("web TLS handshakes", func(t *testing.T) {
		sys := startSystem(t, append(append([]string{"-wss-listen", "127.0.0.1:0"}, tlsFlags...), perIPFlags...)...)
		addr := listening(sys, "gateway: web client listening", "https://")
		if got := burst(t, n, tlsHandshake(addr)); got > perIP || got == 0 {
			t.Errorf("%d of %d TLS handshakes completed, limit %d a client", got, n, perIP)
		}
	})
	t.Run("WebSocket upgrades and tokens", func(t *testing.T) {
		sys := startSystem(t, append([]string{"-ws-listen", "127.0.0.1:0"}, perIPFlags...)...)
		addr := listening(sys, "gateway: web client listening", "http://")
		upgrades, tokens := wsCounts(t, addr, n)
		if upgrades > perIP || tokens > perIP || tokens == 0 {
			t.Errorf("%d upgrades and %d tokens of %d, limit %d a client", upgrades, tokens, n, perIP)
		}
	})
	t.Run("the rate", func(t *testing.T) {
		sys := startSystem(t, append([]string{"-tls-listen", "127.0.0.1:0", "-ws-listen", "127.0.0.1:0", "-max-per-ip", "0",
			"-conn-rate", "0.001", "-conn-burst", "3"}, tlsFlags...)...)
		addr := listening(sys, "gateway: telnet over TLS listening", "")
		shaken := burst(t, n, tlsHandshake(addr))
		upgrades, tokens := wsCounts(t, listening(sys, "gateway: web client listening", "http://"), n)
		if shaken+upgrades > burstSize || shaken == 0 || tokens > upgrades {
			t.Errorf("%d TLS handshakes, %d upgrades, %d tokens of %d and %d, burst %d", shaken, upgrades, tokens, n, n, burstSize)
		}
	})
}
