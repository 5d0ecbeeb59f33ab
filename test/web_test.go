package test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"

	"holdfast/gateway/telnet"
)

// startWebSystem starts a gateway serving browser players too, and the
// demo backend; it returns the system and the web address (host:port).
func startWebSystem(t *testing.T, flags ...string) (*system, *proc, string) {
	t.Helper()
	sys := startSystem(t, append([]string{"-ws-listen", "127.0.0.1:0"}, flags...)...)
	url := sys.gw.waitLog("gateway: web client listening", 1)["url"].(string)
	b := sys.startBackend()
	return sys, b, strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
}

func wsDial(t *testing.T, addr, query string, protos []string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/ws"+query, &websocket.DialOptions{Subprotocols: protos, HTTPHeader: hdr})
	if err == nil {
		c.SetReadLimit(-1)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// frameCounter notes what came in each message of a WebSocket read as a
// net.Conn.
type frameCounter struct {
	net.Conn
	iac int // bytes 255 seen
}

func (f *frameCounter) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	f.iac += bytes.Count(p[:n], []byte{255})
	return n, err
}

// wsPlayer plays over a WebSocket as the line-reading player does.
func wsPlayer(t *testing.T, addr, name, query string, protos []string, typ websocket.MessageType) (*player, *websocket.Conn, *frameCounter) {
	t.Helper()
	c, _, err := wsDial(t, addr, query, protos, nil)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	nc := &frameCounter{Conn: websocket.NetConn(context.Background(), c, typ)}
	return &player{t: t, name: name, conn: nc, r: bufio.NewReader(telnet.Strip(nc))}, c, nc
}

// TestWebSocketProtocols plays the demo over each WebSocket protocol beside
// a telnet player: the telnet stream, the terminal's text in binary
// messages, and text messages.
func TestWebSocketProtocols(t *testing.T) {
	sys, _, addr := startWebSystem(t)
	bob := dial(t, sys.telnet, "Bob")
	bob.login()

	t.Run("telnet", func(t *testing.T) {
		for _, protos := range [][]string{nil, {"telnet.mudstandards.org"}} {
			p, c, fc := wsPlayer(t, addr, "Tess", "", protos, websocket.MessageBinary)
			if want := strings.Join(protos, ""); c.Subprotocol() != want {
				t.Errorf("subprotocol %q, want %q", c.Subprotocol(), want)
			}
			p.login()
			if fc.iac == 0 {
				t.Errorf("offered %v: no telnet negotiation in the stream", protos)
			}
			p.who("Bob, Tess")
			p.send("say hello from the browser")
			p.expect("Tess says: hello from the browser")
			bob.expect("Tess says: hello from the browser")
			bob.send("say hello from telnet")
			p.expect("Bob says: hello from telnet")
			p.send("quit")
			p.expect("Goodbye, Tess.")
			p.expectClosed()
			bob.expect("Tess has left.")
		}
	})

	t.Run("terminal", func(t *testing.T) {
		p, c, fc := wsPlayer(t, addr, "Tom", "?client=TermTest&cols=100&rows=30", []string{"terminal.mudstandards.org"}, websocket.MessageBinary)
		if c.Subprotocol() != "terminal.mudstandards.org" {
			t.Fatalf("subprotocol %q", c.Subprotocol())
		}
		p.login()
		f := p.facts()
		for k, want := range map[string]string{"client": "TermTest", "terminal": "ANSI", "mtts": "5", "width": "100", "height": "30", "charset": "UTF-8", "client_ip": "127.0.0.1"} {
			if f[k] != want {
				t.Errorf("session %s = %q, want %q", k, f[k], want)
			}
		}
		p.send("say grüße ✓")
		bob.expect("Tom says: grüße ✓")
		if fc.iac != 0 {
			t.Errorf("%d bytes 255 reached a terminal client: telnet leaked", fc.iac)
		}
		out := runTool(t, "gateway", "sessions", "-control", sys.control)
		if !strings.Contains(out, "websocket:terminal") || !strings.Contains(out, "100x30") {
			t.Errorf("gateway sessions does not show the WebSocket player:\n%s", out)
		}
	})

	t.Run("text", func(t *testing.T) {
		c, _, err := wsDial(t, addr, "", []string{"text.holdfast"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		var all strings.Builder
		read := func(until string) {
			t.Helper()
			for !strings.Contains(all.String(), until) {
				typ, msg, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("reading (have %q): %v", all.String(), err)
				}
				if typ != websocket.MessageText || !utf8.Valid(msg) {
					t.Fatalf("a %v message, valid UTF-8 %v: %q", typ, utf8.Valid(msg), msg)
				}
				all.Write(msg)
			}
		}
		read("What is your name?")
		c.Write(ctx, websocket.MessageText, []byte("Tia"))
		read("Welcome, Tia.")
		c.Write(ctx, websocket.MessageText, []byte("say ünïcödé"))
		read("Tia says: ünïcödé")
		bob.expect("Tia says: ünïcödé")
		if strings.ContainsRune(all.String(), utf8.RuneError) {
			t.Errorf("replacement characters in the text: %q", all.String())
		}
	})
}
