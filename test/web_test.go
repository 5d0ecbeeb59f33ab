package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// page is a resumable web client, as the embedded page is: it opts in
// with ?hold, keeps its token and counts the output it has had.
type page struct {
	t       *testing.T
	c       *websocket.Conn
	ctx     context.Context
	token   string
	got     uint64
	resumed bool
	missed  uint64
	dec     telnet.Decoder
	text    strings.Builder // the game's text since this connection opened
	notices []string        // the gateway's notices, out of band
}

type nopHandler struct{}

func (nopHandler) Negotiate(verb, opt byte)                      {}
func (nopHandler) Subnegotiation(opt byte, p []byte, trunc bool) {}
func (nopHandler) Command(c byte)                                {}

// openPage connects and says hello: {} for a new session, or the resume.
func openPage(t *testing.T, addr string, hello string) *page {
	t.Helper()
	c, _, err := wsDial(t, addr, "?hold", []string{"telnet.mudstandards.org"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	t.Cleanup(cancel)
	if err := c.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
		t.Fatal(err)
	}
	return &page{t: t, c: c, ctx: ctx}
}

// next reads one message; it returns the error that ended the connection.
func (p *page) next() error {
	typ, msg, err := p.c.Read(p.ctx)
	if err != nil {
		return err
	}
	if typ == websocket.MessageText {
		var m struct {
			Token   string
			Resumed bool
			Missed  uint64
			Notice  *string
			Session string
			In      *uint64
		}
		if err := json.Unmarshal(msg, &m); err == nil && m.Notice != nil {
			p.notices = append(p.notices, *m.Notice)
			return nil
		}
		if m.Token == "" && (m.Session != "" || m.In != nil) {
			return nil // the session's id, or how much of the input the game has
		}
		if err := json.Unmarshal(msg, &m); err != nil || m.Token == "" {
			p.t.Fatalf("a control message without a token: %q", msg)
		}
		p.token, p.resumed, p.missed = m.Token, p.resumed || m.Resumed, p.missed+m.Missed
		// As the web client does: the token it had is spent once this one
		// is kept.
		return p.c.Write(p.ctx, websocket.MessageText, []byte(`{"kept_token":true}`))
	}
	p.got += uint64(len(msg))
	p.text.Write(p.dec.Decode(nil, msg, nopHandler{}))
	return nil
}

func (p *page) readUntil(s string) {
	p.t.Helper()
	for !strings.Contains(p.text.String(), s) {
		if err := p.next(); err != nil {
			p.t.Fatalf("waiting for %q: %v (have %q)", s, err, p.text.String())
		}
	}
}

func (p *page) send(line string) {
	p.t.Helper()
	if err := p.c.Write(p.ctx, websocket.MessageBinary, []byte(line+"\r\n")); err != nil {
		p.t.Fatal(err)
	}
}

// closedWith reads until the gateway closes the WebSocket, and checks the
// status it gave.
func closedWith(t *testing.T, c *websocket.Conn, want websocket.StatusCode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != want {
			t.Fatalf("closed with %v (%v), want %v", got, err, want)
		}
		return
	}
}

func (p *page) login(name string) {
	p.t.Helper()
	p.readUntil("What is your name?")
	p.send(name)
	p.readUntil("Welcome, " + name + ".")
}

// sessionID asks the demo for the session's id and resume count.
func (p *page) sessionID() (id, resumed string) {
	p.t.Helper()
	mark := p.text.Len()
	p.send("session")
	for !strings.Contains(p.text.String()[mark:], "client_ip:") {
		if err := p.next(); err != nil {
			p.t.Fatalf("waiting for the session's facts: %v", err)
		}
	}
	for _, l := range strings.Split(p.text.String()[mark:], "\n") {
		if v, ok := strings.CutPrefix(l, "id: "); ok {
			id = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "resumed: "); ok {
			resumed = strings.TrimSpace(v)
		}
	}
	return id, resumed
}

// TestWebSocketResume cuts a browser's connection under it and brings it
// back with its token: the same session, the game told nothing, the output
// produced meanwhile shown once, and input after it answered.
func TestWebSocketResume(t *testing.T) {
	sys, b, addr := startWebSystem(t)
	bob := dial(t, sys.telnet, "Bob")
	bob.login()
	ann := openPage(t, addr, `{}`)
	ann.login("Ann")
	bob.expect("Ann has arrived.")
	id, _ := ann.sessionID()
	ann.send("echo before the cut")
	ann.readUntil("echo: before the cut")
	if ann.token == "" {
		t.Fatal("no resume token")
	}
	token, got := ann.token, ann.got

	ann.c.CloseNow() // the connection breaks: no closing handshake
	sys.gw.waitLog("web: connection lost; holding the session", 1)
	bob.send("say while you were away 1")
	bob.expect("Bob says: while you were away 1")
	bob.send("say while you were away 2")
	bob.expect("Bob says: while you were away 2")

	back := openPage(t, addr, `{"resume":"`+token+`","got":`+jsonUint(got)+`}`)
	back.readUntil("Bob says: while you were away 2")
	if !back.resumed || back.token == "" || back.token == token {
		t.Errorf("resumed %v with token changed %v", back.resumed, back.token != token)
	}
	text := back.text.String()
	if n := strings.Count(text, "while you were away 1"); n != 1 {
		t.Errorf("output from while away shown %d times: %q", n, text)
	}
	if strings.Contains(text, "before the cut") || strings.Contains(text, "Welcome") || strings.Contains(text, "[holdfast]") {
		t.Errorf("output from before the cut, or a notice, shown again: %q", text)
	}
	if gotID, resumed := back.sessionID(); gotID != id || resumed != "0" {
		t.Errorf("session %q resumed %q after the reconnect, want %q and 0", gotID, resumed, id)
	}
	back.send("echo after the reconnect")
	back.readUntil("echo: after the reconnect")
	bob.who("Ann, Bob")
	if n := b.count("talker: player left"); n != 0 {
		t.Errorf("the game saw %d players leave", n)
	}
	if sys.gw.count("web: player's connection resumed") != 1 {
		t.Error("the gateway did not log the resume")
	}

	// The token was good once.
	again := openPage(t, addr, `{"resume":"`+token+`","got":0}`)
	closedWith(t, again.c, 4404)
	back.send("echo still here")
	back.readUntil("echo: still here")

	m := scrape(t, sys.admin)
	for name, want := range map[string]float64{
		"holdfast_web_connections_lost_total":                        1,
		"holdfast_web_resumes_total":                                 1,
		`holdfast_web_resumes_refused_total{reason="unknown_token"}`: 1,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}

	// A backend SIGKILL and restart on top: the page notices nothing but
	// the notices.
	b.kill(9)
	b.wait()
	sys.startBackend()
	back.send("echo after the restart")
	back.readUntil("echo: after the restart")
	if _, resumed := back.sessionID(); resumed != "1" {
		t.Errorf("resumed %q after a backend restart, want 1", resumed)
	}
}

func jsonUint(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestWebSocketRefusals sends what a gateway must refuse, each with a clear
// close, while a telnet player and a browser player go on playing.
func TestWebSocketRefusals(t *testing.T) {
	sys, b, addr := startWebSystem(t, "-reconnect-grace", "1s", "-handshake-timeout", "2s", "-ws-origins", "play.example.com")
	bob := dial(t, sys.telnet, "Bob")
	bob.login()
	cat := openPage(t, addr, `{}`)
	cat.login("Cat")
	unharmed := func(t *testing.T) {
		t.Helper()
		bob.send("echo still here")
		bob.expect("echo: still here")
		cat.send("echo me too")
		cat.readUntil("echo: me too")
	}

	t.Run("origin", func(t *testing.T) {
		_, resp, err := wsDial(t, addr, "", nil, http.Header{"Origin": {"http://evil.example"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("a page from another origin: %v, want 403", err)
		}
		if _, _, err := wsDial(t, addr, "", nil, http.Header{"Origin": {"http://play.example.com"}}); err != nil {
			t.Errorf("an origin allowed by -ws-origins: %v", err)
		}
		if _, _, err := wsDial(t, addr, "", nil, http.Header{"Origin": {"http://" + addr}}); err != nil {
			t.Errorf("the page's own origin: %v", err)
		}
		unharmed(t)
	})

	t.Run("oversized message", func(t *testing.T) {
		c, _, err := wsDial(t, addr, "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c.Write(ctx, websocket.MessageBinary, make([]byte, 10<<20)) // may fail half-way: the gateway closes
		closedWith(t, c, websocket.StatusMessageTooBig)
		unharmed(t)
	})

	t.Run("text not UTF-8", func(t *testing.T) {
		c, _, err := wsDial(t, addr, "", []string{"text.holdfast"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c.Write(ctx, websocket.MessageText, []byte{'h', 0xff, 0xfe, 'i'})
		closedWith(t, c, websocket.StatusInvalidFramePayloadData)
		unharmed(t)
	})

	t.Run("slow handshake", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\n") // and never the rest
		conn.SetReadDeadline(time.Now().Add(waitFor))
		if _, err := io.ReadAll(conn); err != nil {
			t.Errorf("the gateway did not close a stalled handshake: %v", err)
		}
		// A resumable page that never says hello.
		c, _, err := wsDial(t, addr, "?hold", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		closedWith(t, c, websocket.StatusPolicyViolation)
		unharmed(t)
	})

	t.Run("token after the grace period", func(t *testing.T) {
		gus := openPage(t, addr, `{}`)
		gus.login("Gus")
		token, got := gus.token, gus.got
		left := b.count("talker: player left")
		gus.c.CloseNow()
		sys.gw.waitLog("web: the page did not come back in time", 1)
		b.waitLog("talker: player left", left+1) // the game is told once the grace is over
		late := openPage(t, addr, `{"resume":"`+token+`","got":`+jsonUint(got)+`}`)
		closedWith(t, late.c, 4404)
		unharmed(t)
	})

	t.Run("guessing", func(t *testing.T) {
		// Ten failures a minute from one address (the late token above
		// was one of them), then every attempt is refused unread.
		refused := 0
		for i := 0; refused == 0; i++ {
			if i > 10 {
				t.Fatal("guessing is not limited")
			}
			g := openPage(t, addr, `{"resume":"guess`+jsonUint(uint64(i))+`","got":0}`)
			_, _, err := g.c.Read(g.ctx)
			switch websocket.CloseStatus(err) {
			case 4404:
			case 4429:
				refused++
			default:
				t.Fatalf("guess %d: %v", i, err)
			}
		}
		g := openPage(t, addr, `{"resume":"`+cat.token+`","got":0}`)
		closedWith(t, g.c, 4429) // refused before the lookup: even a good token
		unharmed(t)
	})
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// TestUpgradeWebPlayers upgrades a gateway under two browser players: a
// resumable page, told to reconnect (1012) and back on the new process at
// once, whatever batch its session is in; and a terminal client that
// cannot resume, relayed by the old process until it leaves.
func TestUpgradeWebPlayers(t *testing.T) {
	next := nextBuild(t)
	u := startUpgradable(t, nil, "-ws-listen", "127.0.0.1:0")
	url := u.gw.waitLog("gateway: web client listening", 1)["url"].(string)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	be := u.startBackend()
	ann := openPage(t, addr, `{}`)
	ann.login("Ann")
	id, _ := ann.sessionID()
	tom, _, _ := wsPlayer(t, addr, "Tom", "", []string{"terminal.mudstandards.org"}, websocket.MessageBinary)
	tom.login()
	ann.send("echo before the upgrade")
	ann.readUntil("echo: before the upgrade")

	copyFile(t, next, u.path)
	upgraded := make(chan error, 1)
	go func() {
		out, err := exec.Command(filepath.Join(binDir, "gateway"), "upgrade", "-control", u.control).CombinedOutput()
		if err == nil && !strings.Contains(string(out), "2 sessions moved") {
			err = errors.New("gateway upgrade printed " + string(out))
		}
		upgraded <- err
	}()
	// The page hears 1012 and comes back at once, perhaps before its
	// session has reached the new process.
	closedWith(t, ann.c, 1012)
	back := openPage(t, addr, `{"resume":"`+ann.token+`","got":`+jsonUint(ann.got)+`}`)
	back.send("echo after the upgrade")
	back.readUntil("echo: after the upgrade")
	if err := <-upgraded; err != nil {
		t.Fatal(err)
	}
	newPID, _ := u.health()
	killOnCleanup(t, newPID)
	if gotID, resumed := back.sessionID(); gotID != id || resumed != "0" {
		t.Errorf("session %q resumed %q after the upgrade, want %q and 0", gotID, resumed, id)
	}
	if strings.Contains(back.text.String(), "before the upgrade") {
		t.Errorf("output from before the upgrade shown again: %q", back.text.String())
	}
	tom.send("echo relayed")
	tom.expect("echo: relayed")
	if n := be.count("talker: player left"); n != 0 {
		t.Errorf("the game saw %d players leave", n)
	}
	out := runTool(t, "gateway", "sessions", "-control", u.control)
	if !strings.Contains(out, "websocket:telnet") || !strings.Contains(out, "websocket:terminal") {
		t.Errorf("gateway sessions after the upgrade:\n%s", out)
	}
	// The old process stays for the relayed player only.
	tom.send("quit")
	tom.expect("Goodbye, Tom.")
	select {
	case <-u.gw.exited:
	case <-time.After(waitFor):
		t.Error("the old gateway did not exit after its last relayed player left")
	}
}

// TestWebSocketForwarded checks whose address a browser player has: the
// peer's, unless the peer is a proxy named by -ws-forwarded-for; and that
// the gateway's limits count that address.
func TestWebSocketForwarded(t *testing.T) {
	_, _, addr := startWebSystem(t, "-ws-forwarded-for", "127.0.0.1", "-max-per-ip", "1")
	dialAs := func(name, forwarded string) (*player, *websocket.Conn) {
		t.Helper()
		c, _, err := wsDial(t, addr, "", []string{"terminal.mudstandards.org"}, http.Header{"X-Forwarded-For": {forwarded}})
		if err != nil {
			t.Fatal(err)
		}
		nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
		return &player{t: t, name: name, conn: nc, r: bufio.NewReader(nc)}, c
	}
	// The proxy's own address is skipped: the player is the one before it.
	a, _ := dialAs("Ada", "198.51.100.7, 127.0.0.1")
	a.login()
	if ip := a.facts()["client_ip"]; ip != "198.51.100.7" {
		t.Errorf("client_ip %q through a trusted proxy, want 198.51.100.7", ip)
	}
	b, _ := dialAs("Ben", "203.0.113.9")
	b.login()
	// One session per address: a second from 198.51.100.7 is refused
	// before the upgrade, with the reason.
	_, resp, err := wsDial(t, addr, "", []string{"terminal.mudstandards.org"}, http.Header{"X-Forwarded-For": {"198.51.100.7"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a second session from one forwarded address: %v, %v", resp, err)
	}
	if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), "Too many connections from your address") {
		t.Errorf("a second session from one forwarded address was told %q", body)
	}
}

// TestWebSocketUntrustedForwarded checks that X-Forwarded-For from anybody
// but a trusted proxy is ignored.
func TestWebSocketUntrustedForwarded(t *testing.T) {
	_, _, addr := startWebSystem(t)
	c, _, err := wsDial(t, addr, "", []string{"terminal.mudstandards.org"}, http.Header{"X-Forwarded-For": {"198.51.100.7"}})
	if err != nil {
		t.Fatal(err)
	}
	nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
	p := &player{t: t, name: "Una", conn: nc, r: bufio.NewReader(nc)}
	p.login()
	if ip := p.facts()["client_ip"]; ip != "127.0.0.1" {
		t.Errorf("client_ip %q from an untrusted X-Forwarded-For, want the peer's 127.0.0.1", ip)
	}
}

// TestWebSocketTLS serves the web client and WebSocket over TLS.
func TestWebSocketTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeCert(t, certFile, keyFile, 1)
	sys := startSystem(t, "-wss-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	url := sys.gw.waitLog("gateway: web client listening", 1)["url"].(string)
	sys.startBackend()
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("web client at %q", url)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "client.js") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("the page over TLS: %d %q", resp.StatusCode, page)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(url, "https")+"ws", &websocket.DialOptions{HTTPClient: client, Subprotocols: []string{"terminal.mudstandards.org"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
	p := &player{t: t, name: "Sec", conn: nc, r: bufio.NewReader(nc)}
	p.login()
	if out := runTool(t, "gateway", "sessions", "-control", sys.control); !strings.Contains(out, "websocket+tls:terminal") {
		t.Errorf("gateway sessions:\n%s", out)
	}
}
