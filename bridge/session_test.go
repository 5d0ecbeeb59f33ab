package bridge

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/goleak"

	"holdfast/backend"
	"holdfast/gateway/telnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBridgeCarries: the game's negotiation is answered from the facts,
// its text, prompts, echo and GMCP reach the player, and the player's
// input, resizes and GMCP reach the game.
func TestBridgeCarries(t *testing.T) {
	g := startGame(t)
	b := newBridge(t, g.addr)
	p := newPlayer(t, "s1", mudlet)
	p.in <- gmcpMsg{"Core.Hello", `{"client":"Mudlet"}`}
	p.in <- gmcpMsg{"Core.Supports.Set", `["Char 1"]`}
	b.Handle(p)

	gc := g.accept()
	gc.send(iac, telnet.DO, 24, iac, telnet.DO, 31, iac, telnet.WILL, 201, iac, telnet.WILL, 86)
	gc.sendText("Welcome!\r\n")
	gc.send(sbytes(24, 1)...)
	gc.waitEvent(`SB 24 "\x00MUDLET"`)
	gc.waitEvent(`SB 31 "\x00x\x00("`)
	gc.waitEvent("DONT 86")
	gc.waitEvent(`SB 201 "Core.Hello {\"client\":\"Mudlet\"}"`)
	gc.waitEvent(`SB 201 "Core.Supports.Set [\"Char 1\"]"`)
	p.waitOutput("Welcome!\r\n")

	p.typeLine("connect ada secret")
	gc.waitText("connect ada secret\n")
	if raw := string(gc.raw); !strings.Contains(raw, "connect ada secret\r\n") {
		t.Errorf("the game got %q; want the line ended with CR LF", raw)
	}

	gc.sendText("Password: ")
	gc.send(iac, telnet.WILL, 1, iac, telnet.GA)
	p.waitEvent("echo off")
	p.waitEvent(`prompt after "Password: "`)
	gc.send(iac, telnet.WONT, 1)
	p.waitEvent("echo on")

	f := mudlet
	f.Width, f.Height = 100, 30
	p.in <- f
	gc.waitEvent(`SB 31 "\x00d\x00\x1e"`)

	p.in <- gmcpMsg{"Char.Login", `{"name":"ada"}`}
	gc.waitEvent(`SB 201 "Char.Login {\"name\":\"ada\"}"`)
	gc.send(telnet.AppendSubneg(nil, 201, []byte(`Char.Vitals {"hp":10}`))...)
	p.waitEvent(`gmcp Char.Vitals {"hp":10}`)

	p.leave()
	gc.waitEOF()
	p.waitEvent("closed")
}

// TestBridgeGameRestart: the game goes down; the player is told once and
// stays; what the player types meanwhile reaches the game after its
// welcome on the new connection, with the facts answered again.
func TestBridgeGameRestart(t *testing.T) {
	g := startGame(t)
	b := newBridge(t, g.addr)
	p := newPlayer(t, "s1", mudlet)
	b.Handle(p)
	gc := g.accept()
	gc.sendText("Welcome!\r\n")
	p.waitOutput("Welcome!")
	p.typeLine("look")
	gc.waitText("look\n")

	g.stop()
	p.waitOutput(DefaultNotice)
	p.typeLine("connect ada secret")
	p.typeLine("say I am back")
	g.restart()
	gc = g.accept()
	gc.send(iac, telnet.DO, 24)
	if got := gc.gotText(); got != "" {
		t.Fatalf("the game got %q before its welcome", got)
	}
	gc.sendText("Welcome again!\r\n")
	gc.send(sbytes(24, 1)...)
	gc.waitText("connect ada secret\nsay I am back\n")
	if i, j := strings.Index(string(gc.raw), "MUDLET"), strings.Index(string(gc.raw), "connect"); i < 0 || j < i {
		t.Errorf("the game got %q: the terminal type should come before the held input", gc.raw)
	}
	p.waitOutput("Welcome again!")
	if n := strings.Count(p.output(), DefaultNotice); n != 1 {
		t.Errorf("told %d times that the game is restarting, want once", n)
	}
	if p.isClosed() {
		t.Error("the player was closed")
	}
}

// TestBridgeGameEndsPlayer: the game closing one player's connection while
// it still serves ends that player's session, and no other. With another
// connection open to the game, that connection says the game is up; alone,
// the player's session asks the game on a connection of its own.
func TestBridgeGameEndsPlayer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		witness bool
	}{{"beside another player", true}, {"alone", false}} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGame(t)
			b := newBridge(t, g.addr)
			p1, p2 := newPlayer(t, "s1", mudlet), newPlayer(t, "s2", mudlet)
			b.Handle(p1)
			gc1 := g.accept()
			gc1.sendText("hi 1\r\n")
			p1.waitOutput("hi 1")
			var gc2 *gameConn
			if tc.witness {
				b.Handle(p2)
				gc2 = g.accept()
				gc2.sendText("hi 2\r\n")
				p2.waitOutput("hi 2")
			}
			gc1.sendText("Bye.\r\n")
			gc1.c.Close()
			if !tc.witness {
				// The question whether the game is up: a game greets it.
				g.accept().sendText("Welcome!\r\n")
			}
			p1.waitEvent("closed")
			if !strings.Contains(p1.output(), "Bye.") || strings.Contains(p1.output(), DefaultNotice) {
				t.Errorf("player 1 saw %q; want the game's goodbye and no notice", p1.output())
			}
			if !tc.witness {
				return
			}
			p2.typeLine("still here")
			gc2.waitText("still here\n")
			if p2.isClosed() {
				t.Error("player 2 was closed")
			}
			select {
			case gc := <-g.conns:
				t.Errorf("the game got a connection from %v: the other player's said it was up", gc.c.RemoteAddr())
			default:
			}
		})
	}
}

// TestBridgeGameRestartsAtOnce: a game that drops every connection and
// accepts new ones at once (restarted faster than the bridge's first
// attempt) has restarted: every player is told once, stays, and finds its
// welcome again on a new connection.
func TestBridgeGameRestartsAtOnce(t *testing.T) {
	const n = 3
	g := startGame(t)
	b := newBridge(t, g.addr)
	var ps []*fakePlayer
	for i := range n {
		p := newPlayer(t, fmt.Sprintf("s%d", i), mudlet)
		ps = append(ps, p)
		b.Handle(p)
		gc := g.accept()
		gc.sendText("Welcome!\r\n")
		p.waitOutput("Welcome!")
	}
	g.dropAll()
	for range n {
		g.accept().sendText("Welcome back!\r\n")
	}
	for _, p := range ps {
		p.waitOutput("Welcome back!")
		if p.isClosed() {
			t.Errorf("player %s was closed", p.id)
		}
		if c := strings.Count(p.output(), DefaultNotice); c != 1 {
			t.Errorf("player %s was told %d times that the game is restarting, want once", p.id, c)
		}
	}
}

// TestBridgeToldWhileQueued: once one attempt finds the game down, a
// player waiting for a slot among the connections being opened is told at
// once, not after its turn.
func TestBridgeToldWhileQueued(t *testing.T) {
	g := startGame(t)
	b := newBridge(t, g.addr)
	b.MaxConnecting = 1
	var (
		mu       sync.Mutex
		hold     bool
		blocking = make(chan struct{})
	)
	b.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		h := hold
		hold = false
		mu.Unlock()
		if h {
			// Holds the only slot until the bridge closes.
			close(blocking)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	a := newPlayer(t, "a", mudlet)
	b.Handle(a)
	g.accept().sendText("Welcome!\r\n")
	a.waitOutput("Welcome!")
	mu.Lock()
	hold = true
	mu.Unlock()
	slow := newPlayer(t, "slow", mudlet)
	b.Handle(slow)
	<-blocking
	queued := newPlayer(t, "queued", mudlet)
	b.Handle(queued)
	g.stop() // a's connection drops; the question whether the game is up is refused
	a.waitOutput(DefaultNotice)
	queued.waitOutput(DefaultNotice)
	if strings.Contains(slow.output(), DefaultNotice) {
		t.Errorf("the player whose attempt is still under way was told: %q", slow.output())
	}
}

// TestBridgeGameNeverUp: a game whose port never opens holds the players,
// told once; closing the bridge leaves them to the listener.
func TestBridgeGameNeverUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b := newBridge(t, addr)
	p := newPlayer(t, "s1", mudlet)
	b.Handle(p)
	p.waitOutput(DefaultNotice)
	p.typeLine("hello?")
	b.Close()
	if p.isClosed() {
		t.Error("the player was closed by the bridge")
	}
	if n := strings.Count(p.output(), DefaultNotice); n != 1 {
		t.Errorf("told %d times, want once", n)
	}
}

// TestBridgeSilentListener: a listener that accepts but never speaks (a
// game's child holding its socket after the game died) counts as down.
func TestBridgeSilentListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b := newBridge(t, ln.Addr().String())
	b.GreetWait = 100 * time.Millisecond
	p := newPlayer(t, "s1", mudlet)
	b.Handle(p)
	p.waitOutput(DefaultNotice)
	if p.isClosed() {
		t.Error("the player was closed")
	}
}

// TestBridgeHeldInputBounded: input beyond MaxHeld is not read from the
// player while the game is down (the gateway keeps it), and all of it
// reaches the game, in order, when it is back.
func TestBridgeHeldInputBounded(t *testing.T) {
	g := startGame(t)
	b := newBridge(t, g.addr)
	b.MaxHeld = 32
	g.stop()
	p := newPlayer(t, "s1", mudlet)
	b.Handle(p)
	p.waitOutput(DefaultNotice)
	var want strings.Builder
	for i := range 20 {
		line := fmt.Sprintf("line %02d", i)
		want.WriteString(line + "\n")
		p.typeLine(line)
	}
	// The reader stops once MaxHeld is kept; the rest waits in p.in.
	p.waitFor("the reader to stop", func() bool { return len(p.in) > 0 && p.reads < 20 })
	g.restart()
	gc := g.accept()
	gc.sendText("Welcome!\r\n")
	gc.waitText(want.String())
}

// TestBridgeBoundsConnecting: thousands of players coming back at once do
// not all land on the game at once: at most MaxConnecting connections are
// opened and not yet greeted.
func TestBridgeBoundsConnecting(t *testing.T) {
	const players, bound = 12, 3
	g := startGame(t)
	b := newBridge(t, g.addr)
	b.MaxConnecting = bound
	for i := range players {
		b.Handle(newPlayer(t, fmt.Sprint(i), mudlet))
	}
	var waiting []*gameConn
	most := 0
	for accepted := 0; accepted < players; {
		// Take every connection that has arrived, then greet the oldest.
		for more := true; more; {
			select {
			case gc := <-g.conns:
				waiting = append(waiting, gc)
				accepted++
			default:
				more = false
			}
		}
		most = max(most, len(waiting))
		if len(waiting) == 0 {
			waiting = append(waiting, g.accept())
			accepted++
			continue
		}
		waiting[0].sendText("Welcome!\r\n")
		waiting = waiting[1:]
		if len(waiting) < bound && accepted < players {
			waiting = append(waiting, g.accept())
			accepted++
		}
	}
	if most > bound {
		t.Fatalf("%d connections were waiting for the game's welcome at once, want at most %d", most, bound)
	}
}

// TestBridgeProxyHeader: each connection starts with a PROXY header that
// carries the player's address.
func TestBridgeProxyHeader(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			g := startGame(t)
			b := newBridge(t, g.addr)
			b.ProxyHeader = version
			b.Handle(newPlayer(t, "s1", mudlet))
			gc := g.accept()
			gc.sendText("Welcome!\r\n")
			gc.waitFor("a PROXY header", func() bool { return len(gc.raw) >= 16 })
			gc.mu.Lock()
			raw := append([]byte(nil), gc.raw...)
			gc.mu.Unlock()
			h, err := proxyproto.Read(bufio.NewReader(strings.NewReader(string(raw))))
			if err != nil {
				t.Fatalf("no PROXY header in %q: %v", raw, err)
			}
			if h.Version != byte(version) || h.SourceAddr.String() != mudlet.ClientAddr {
				t.Fatalf("PROXY header v%d from %v, want v%d from %s", h.Version, h.SourceAddr, version, mudlet.ClientAddr)
			}
		})
	}
	t.Run("unknown address", func(t *testing.T) {
		h, err := proxyHeader(1, "", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000})
		if err != nil || string(h) != "PROXY UNKNOWN\r\n" {
			t.Fatalf("proxyHeader = %q, %v", h, err)
		}
	})
}

// TestFetchMSSP: the game's MSSP table, fetched over a connection of its
// own; a game without MSSP says so.
func TestFetchMSSP(t *testing.T) {
	g := startGame(t)
	b := newBridge(t, g.addr)
	go func() {
		gc := g.accept()
		gc.send(iac, telnet.WILL, 70, iac, telnet.DO, 24)
		gc.sendText("Welcome!\r\n")
		gc.waitEvent("DO 70")
		gc.send(telnet.AppendSubneg(nil, 70, []byte("\x01NAME\x02Tiny\x01PORT\x024000"))...)
	}()
	vars, err := b.FetchMSSP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) != 2 || vars[0].Name != "NAME" || vars[0].Values[0] != "Tiny" {
		t.Fatalf("FetchMSSP = %q", vars)
	}

	go func() {
		gc := g.accept()
		gc.sendText("Welcome!\r\n")
	}()
	if _, err := b.FetchMSSP(context.Background()); err != ErrNoMSSP {
		t.Fatalf("FetchMSSP from a game without MSSP: %v, want ErrNoMSSP", err)
	}
}

// TestBridgeCloseLeavesNothing: Close ends every goroutine, with players
// in every state: connected, waiting for the game, and gone.
func TestBridgeCloseLeavesNothing(t *testing.T) {
	g := startGame(t)
	b := newBridge(t, g.addr)
	p1 := newPlayer(t, "s1", mudlet)
	b.Handle(p1)
	gc := g.accept()
	gc.sendText("Welcome!\r\n")
	p1.waitOutput("Welcome!")
	p2 := newPlayer(t, "s2", backend.Facts{})
	b.Handle(p2)
	g.accept() // never greeted
	b.Close()
	b.Close()
	if b.Sessions() != 0 {
		t.Fatalf("%d sessions after Close", b.Sessions())
	}
	if p1.isClosed() || p2.isClosed() {
		t.Error("Close closed a player")
	}
	if b.Handle(newPlayer(t, "s3", mudlet)) {
		t.Error("Handle after Close took a player")
	}
}

// TestServeReturnsServerClosed: Serve's accept loop ends with
// ErrServerClosed after Close.
func TestServeReturnsServerClosed(t *testing.T) {
	b := newBridge(t, "127.0.0.1:1")
	accepted := make(chan Player)
	done := make(chan error, 1)
	go func() {
		done <- b.serve(func() (Player, error) {
			p, ok := <-accepted
			if !ok {
				return nil, net.ErrClosed
			}
			return p, nil
		})
	}()
	b.Close()
	close(accepted)
	if err := <-done; err != ErrServerClosed {
		t.Fatalf("serve = %v, want ErrServerClosed", err)
	}
}

// TestBridgeGameFloods: a game that floods text reaches the player whole;
// one that asks faster than the answers can go is dropped once they pass
// maxOut, and the player, the game still up, leaves with it.
func TestBridgeGameFloods(t *testing.T) {
	g := startGame(t)
	b := newBridge(t, g.addr)
	p := newPlayer(t, "s1", mudlet)
	b.Handle(p)
	gc := g.accept()
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	go gc.c.Write([]byte(big + "END\r\n"))
	p.waitOutput("END\r\n")
	if got := p.output(); !strings.Contains(got, big) {
		t.Fatalf("the player got %d bytes of the flood", len(got))
	}

	q := newPlayer(t, "s2", mudlet)
	b.Handle(q)
	gc2 := g.accept()
	gc2.sendText("Welcome!\r\n")
	q.waitOutput("Welcome!")
	go func() {
		// Greet the probe that asks whether the game is up.
		if gc := g.accept(); gc != nil {
			gc.sendText("Welcome!\r\n")
		}
	}()
	asks := bytes.Repeat(sbytes(24, 1), 1<<10)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			gc2.c.SetWriteDeadline(time.Now().Add(waitFor))
			if _, err := gc2.c.Write(append([]byte{iac, telnet.DO, 24}, asks...)); err != nil {
				return
			}
		}
	}()
	q.waitEvent("closed")
	gc2.c.Close()
	<-stopped
}

// TestBridgeComesBackTogether: once one player reaches the game after an
// outage, the others waiting out a long backoff come back soon too.
func TestBridgeComesBackTogether(t *testing.T) {
	g := startGame(t)
	g.stop()
	b := newBridge(t, g.addr)
	b.RetryMin, b.RetryMax = time.Minute, time.Minute // longer than the test waits
	var waiting []*fakePlayer
	for i := range 5 {
		p := newPlayer(t, fmt.Sprint(i), mudlet)
		b.Handle(p)
		p.waitOutput(DefaultNotice)
		waiting = append(waiting, p)
	}
	g.restart()
	go func() {
		for gc := range g.conns {
			gc.sendText("Welcome!\r\n")
		}
	}()
	b.Handle(newPlayer(t, "new", mudlet)) // connects at once, and finds the game back
	for _, p := range waiting {
		p.waitOutput("Welcome!")
	}
}

// TestBridgeInputAfterWelcome: a game that turns TTYPE on but never asks
// for it gets the player's input shortly after its welcome all the same.
func TestBridgeInputAfterWelcome(t *testing.T) {
	g := startGame(t)
	b := newBridge(t, g.addr)
	b.GreetWait = time.Minute // longer than the test waits
	p := newPlayer(t, "s1", mudlet)
	p.typeLine("connect ada")
	b.Handle(p)
	gc := g.accept()
	gc.send(iac, telnet.DO, 24)
	gc.sendText("Welcome!\r\n")
	gc.waitText("connect ada\n")
}

// TestBridgeKeepsInputAndGMCPInOrder: a GMCP message the client sends
// right after a line reaches the game after that line, also with the game
// down when both were sent (both then wait for its welcome), and a Core
// message ahead of every line goes at once (with GMCP on) and only once.
func TestBridgeKeepsInputAndGMCPInOrder(t *testing.T) {
	const n = 30 // within maxGMCPWaiting, however slow the writer
	g := startGame(t)
	b := newBridge(t, g.addr)
	p := newPlayer(t, "s1", mudlet)
	p.in <- gmcpMsg{"Core.Hello", `{"client":"Mudlet"}`}
	// Typed before the game greets the player: they wait for the welcome,
	// in order.
	p.typeLine("early")
	p.in <- gmcpMsg{"Char.Early", "1"}
	b.Handle(p)
	gc := g.accept()
	gc.send(iac, telnet.WILL, 201)
	gc.waitEvent(`SB 201 "Core.Hello {\"client\":\"Mudlet\"}"`)
	gc.sendText("Welcome!\r\n")
	go func() {
		for i := range n {
			p.typeLine(fmt.Sprintf("line %d", i))
			p.in <- gmcpMsg{"Char.Line", fmt.Sprint(i)}
		}
	}()
	gc.waitEvent(fmt.Sprintf(`SB 201 "Char.Line %d"`, n-1))

	gc.mu.Lock()
	raw := append([]byte(nil), gc.raw...)
	gc.mu.Unlock()
	var r recorder
	var d decoder
	d.decode(raw, &r)
	var got []string
	for _, e := range r.events {
		if text, ok := strings.CutPrefix(e, "text "); ok {
			for l := range strings.Lines(text) {
				got = append(got, strings.TrimSpace(l))
			}
		} else if strings.HasPrefix(e, "SB 201") {
			got = append(got, e)
		}
	}
	want := []string{`SB 201 "Core.Hello {\"client\":\"Mudlet\"}" false`, "early", `SB 201 "Char.Early 1" false`}
	for i := range n {
		want = append(want, fmt.Sprintf("line %d", i), fmt.Sprintf(`SB 201 "Char.Line %d" false`, i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("the game got, in this order:\n%q\nwant\n%q", got, want)
	}
}

// TestBridgeLateFacts: on a new session whose client has not told its
// terminal yet, the game's TTYPE question waits for the client's answers
// and is answered from them, and the input typed meanwhile follows the
// answer at once, not at the settle wait, the greeting's or the end of
// the wait for the answers (each a minute here); a client that never tells is
// answered as unknown once the wait for it is over, and its input
// follows too.
func TestBridgeLateFacts(t *testing.T) {
	settle, late := settleWait, lateFactsWait
	settleWait = time.Minute // longer than the test waits
	t.Cleanup(func() { settleWait, lateFactsWait = settle, late })
	ttype := cat([]byte{iac, telnet.DO, 24}, []byte("Welcome!\r\n"), sbytes(24, ttypeSEND))
	charset := cat([]byte{iac, telnet.WILL, 42}, []byte("Welcome!\r\n"), sbytes(42, append([]byte{charsetREQUEST}, ";UTF-8"...)...))
	for _, tc := range []struct {
		name  string
		game  []byte // the game's greeting and question
		wait  time.Duration
		late  *backend.Facts
		first string // the answer, the one to the question asked
	}{
		{"the answers come", ttype, time.Minute, &mudlet, `SB 24 "\x00MUDLET"`},
		{"they never do", ttype, 50 * time.Millisecond, nil, `SB 24 "\x00UNKNOWN"`},
		{"a game that asks only the character set", charset, time.Minute, &mudlet, `SB 42 "\x02UTF-8"`},
		{"... of a client that never tells", charset, 50 * time.Millisecond, nil, `SB 42 "\x03"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lateFactsWait = tc.wait
			g := startGame(t)
			b := newBridge(t, g.addr)
			b.GreetWait = time.Minute
			p := newPlayer(t, "s1", backend.Facts{ClientAddr: "203.0.113.7:50123"})
			p.typeLine("connect ada")
			b.Handle(p)
			gc := g.accept()
			gc.send(tc.game...)
			p.waitOutput("Welcome!\r\n")
			if tc.late != nil {
				p.in <- *tc.late
			}
			gc.waitText("connect ada\n")
			gc.mu.Lock()
			defer gc.mu.Unlock()
			var answers []string
			for _, e := range gc.events {
				if strings.HasPrefix(e, "SB ") {
					answers = append(answers, e)
				}
			}
			if len(answers) != 1 || answers[0] != tc.first {
				t.Errorf("the game's question was answered %q, want %q", answers, tc.first)
			}
			if i := strings.Index(string(gc.raw), "connect ada"); i < 0 || !bytes.Contains(gc.raw[:i], []byte{iac, telnet.SB}) {
				t.Errorf("the input came before the answer: %q", gc.raw)
			}
		})
	}
}
