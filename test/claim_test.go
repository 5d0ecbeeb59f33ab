package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"holdfast/gateway/telnet"
)

// claimPage is a browser page as the web client is, driven by hand: it
// acknowledges output as it comes, keeps what it typed until the game has
// it ({"in":N}), and comes back, to whichever gateway it is given, with its
// token and its session's id.
type claimPage struct {
	t *testing.T

	// sendMu keeps the page's input in order: a line typed waits while
	// the page comes back and sends its kept typing again.
	sendMu sync.Mutex

	mu         sync.Mutex
	ws         *websocket.Conn
	ready      bool // the gateway answered this WebSocket's hello
	token      string
	session    string
	got        uint64
	game       uint64 // the game's output, counted as the web client does
	afterCR    bool
	typed      []typedLine
	typedTotal uint64
	dec        telnet.Decoder
	partial    []byte

	lines   chan string         // the game's text, a line at a time
	replies chan map[string]any // answers to the page's hello
	gone    chan error          // the current WebSocket ended
}

type typedLine struct {
	at uint64
	b  []byte
}

func newClaimPage(t *testing.T) *claimPage {
	return &claimPage{t: t, lines: make(chan string, 1000), replies: make(chan map[string]any, 4)}
}

// open connects to addr with hello and returns the gateway's answer.
func (p *claimPage) open(addr string, hello any) map[string]any {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	q := "/ws?hold"
	if _, ok := hello.(map[string]any)["resume"]; ok {
		q += "&resume"
	}
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+q, &websocket.DialOptions{Subprotocols: []string{"telnet.mudstandards.org"}})
	if err != nil {
		p.t.Fatalf("page: dial %s: %v", addr, err)
	}
	ws.SetReadLimit(-1)
	b, _ := json.Marshal(hello)
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ws = ws
	p.gone = make(chan error, 1)
	gone := p.gone
	p.mu.Unlock()
	go p.read(ws, gone)
	select {
	case m := <-p.replies:
		p.mu.Lock()
		p.ready = true
		p.mu.Unlock()
		return m
	case err := <-gone:
		p.t.Fatalf("page: the gateway at %s closed before answering: %v", addr, err)
	case <-ctx.Done():
		p.t.Fatalf("page: no answer from %s", addr)
	}
	return nil
}

func (p *claimPage) read(ws *websocket.Conn, gone chan<- error) {
	for {
		typ, msg, err := ws.Read(context.Background())
		if err != nil {
			gone <- err
			return
		}
		if typ == websocket.MessageText {
			var m map[string]any
			if json.Unmarshal(msg, &m) != nil {
				continue
			}
			p.mu.Lock()
			if s, ok := m["session"].(string); ok && s != "" {
				p.session = s
			}
			if in, ok := m["in"].(float64); ok {
				p.gameHasLocked(uint64(in))
			}
			p.mu.Unlock()
			if tok, ok := m["token"].(string); ok {
				p.mu.Lock()
				p.token = tok
				if m["elsewhere"] == true {
					// A new connection to the session: telnet starts again.
					p.dec, p.got, p.partial, p.afterCR = telnet.Decoder{}, 0, nil, false
				}
				p.mu.Unlock()
				write(ws, `{"kept_token":true}`)
				p.replies <- m
			}
			continue
		}
		p.mu.Lock()
		p.got += uint64(len(msg))
		got := p.got
		p.countGame(msg)
		text := p.dec.Decode(nil, msg, nopHandler{})
		p.partial = append(p.partial, text...)
		for {
			i := bytes.IndexByte(p.partial, '\n')
			if i < 0 {
				break
			}
			p.lines <- strings.TrimRight(string(p.partial[:i]), "\r")
			p.partial = p.partial[i+1:]
		}
		p.mu.Unlock()
		write(ws, fmt.Sprintf(`{"ack":%d}`, got)) // at once: the page has it
	}
}

func write(ws *websocket.Conn, s string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws.Write(ctx, websocket.MessageText, []byte(s))
}

// countGame counts the game's bytes in a message, as the web client does:
// each is one unit, CR LF and CR NUL one, IAC IAC one. The game's text
// here has no other telnet command in it.
func (p *claimPage) countGame(msg []byte) {
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		switch {
		case c == telnet.IAC && i+1 < len(msg) && msg[i+1] == telnet.IAC:
			i++
			p.game++
			p.afterCR = false
		case c == telnet.IAC:
			i = skipCommand(msg, i)
		case p.afterCR && (c == '\n' || c == 0):
			p.afterCR = false
		default:
			p.game++
			p.afterCR = c == '\r'
		}
	}
}

// skipCommand returns the index of the last byte of the telnet command at
// msg[i] (the gateway's negotiation: WILL/WONT/DO/DONT, SB ... SE).
func skipCommand(msg []byte, i int) int {
	if i+1 >= len(msg) {
		return i
	}
	switch msg[i+1] {
	case telnet.WILL, telnet.WONT, telnet.DO, telnet.DONT:
		return min(i+2, len(msg)-1)
	case telnet.SB:
		for j := i + 2; j+1 < len(msg); j++ {
			if msg[j] == telnet.IAC && msg[j+1] == telnet.SE {
				return j + 1
			}
		}
		return len(msg) - 1
	}
	return i + 1
}

func (p *claimPage) gameHasLocked(in uint64) {
	for len(p.typed) > 0 && p.typed[0].at+uint64(len(p.typed[0].b))-1 <= in {
		p.typed = p.typed[1:]
	}
}

// typeLine types a line: sent now if connected, and kept until the game
// has it.
func (p *claimPage) typeLine(s string) {
	b := []byte(s + "\r\n")
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	p.mu.Lock()
	p.typed = append(p.typed, typedLine{p.typedTotal, b})
	p.typedTotal += uint64(len(s)) + 1 // the gateway makes "\r\n" one "\n"
	ws, ready := p.ws, p.ready
	p.mu.Unlock()
	if ws != nil && ready {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ws.Write(ctx, websocket.MessageBinary, b)
		cancel()
	}
}

// cutOff waits for the current WebSocket to end, its gateway gone.
func (p *claimPage) cutOff() {
	p.t.Helper()
	p.mu.Lock()
	gone := p.gone
	p.mu.Unlock()
	select {
	case <-gone:
	case <-time.After(waitFor):
		p.t.Fatal("page: the WebSocket did not end")
	}
	p.mu.Lock()
	p.ws, p.ready = nil, false
	p.mu.Unlock()
}

// comeBack opens the session again at addr, as the page does after a
// break, and sends again what it typed that the game may not have.
func (p *claimPage) comeBack(addr string) map[string]any {
	p.t.Helper()
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	p.mu.Lock()
	from := p.typedTotal
	if len(p.typed) > 0 {
		from = p.typed[0].at
	}
	hello := map[string]any{"resume": p.token, "got": p.got, "session": p.session, "in": from, "out": p.game}
	p.mu.Unlock()
	m := p.open(addr, hello)
	if m["elsewhere"] == true {
		p.mu.Lock()
		typed, ws := p.typed, p.ws
		p.mu.Unlock()
		for _, l := range typed {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ws.Write(ctx, websocket.MessageBinary, l.b)
			cancel()
		}
	}
	return m
}

// until reads the game's lines until one starts with want, and returns
// those before it.
func (p *claimPage) until(want string) []string {
	p.t.Helper()
	var seen []string
	deadline := time.After(waitFor)
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l, want) {
				return seen
			}
			seen = append(seen, l)
		case <-deadline:
			p.t.Fatalf("page: no %q; saw %q", want, seen)
		}
	}
}

// twoWebGateways starts two gateways with web listeners on a registry of
// their own, and the demo game linked to both.
func twoWebGateways(t *testing.T) (a, b *system, be *proc) {
	t.Helper()
	_, port := startEPMD(t, ourEPMD)
	flags := []string{"-epmd-port", fmt.Sprint(port), "-embed-epmd=false", "-ws-listen", "127.0.0.1:0", "-max-per-ip", "0"}
	a = startSystemOn(t, port, flags...)
	b = startSystemOn(t, port, flags...)
	be = a.startBackend()
	b.gw.waitLog("gateway: backend linked", 1)
	return a, b, be
}

// webAddr is the address of a gateway's web listener.
func webAddr(s *system) string {
	u := s.gw.waitLog("gateway: web client listening", 1)["url"].(string)
	return strings.TrimSuffix(strings.TrimPrefix(u, "http://"), "/")
}

// TestBrowserResumesOnAnotherGateway: two gateways on one game, a browser
// page on the first. The first gateway is killed; the page comes back to
// the second with its token and its session's id, and has the same game
// session: the game never saw it leave, what was said meanwhile arrives
// once, what it typed while away is answered once, and nothing the page
// had before comes again (it says how much of the game's output it has).
// A page that names the session without its token gets nothing of it.
func TestBrowserResumesOnAnotherGateway(t *testing.T) {
	a, b, be := twoWebGateways(t)
	webA, webB := webAddr(a), webAddr(b)

	page := newClaimPage(t)
	if m := page.open(webA, map[string]any{}); m["token"] == "" {
		t.Fatalf("first answer: %v", m)
	}
	page.until("What is your name?")
	page.typeLine("Pat")
	page.until("Welcome, Pat.")
	for i := 1; i <= 5; i++ {
		page.typeLine(fmt.Sprintf("echo before %d", i))
		page.until(fmt.Sprintf("echo: before %d", i))
	}
	page.typeLine("session")
	page.until("id: ")
	page.mu.Lock()
	id := page.session
	page.mu.Unlock()
	if id == "" {
		t.Fatal("the gateway did not tell the page its session's id")
	}
	// The last answer before the kill, which the game may not have heard
	// acknowledged: the page says it has it when it comes back.
	page.typeLine("echo sync")
	page.until("echo: sync")

	bob := dial(t, b.telnet, "Bob")
	bob.login()

	a.gw.kill(syscall.SIGKILL)
	page.cutOff()
	bob.send("say while you were away")
	bob.expect("Bob says: while you were away")
	page.typeLine("echo typed while away")

	// Someone with the session's id and not its token gets nothing.
	thief := newClaimPage(t)
	thief.open(webB, map[string]any{"resume": "not-the-token", "got": 0, "session": id, "in": 0})
	select {
	case <-thief.gone:
	case <-time.After(waitFor):
		t.Fatal("a claim with a wrong token was not ended")
	}
	be.waitLogged("backend: a claim refused: no such session, or not its token", "session", id)
	// Nor does a claim of a session the gateway holds itself (whose page
	// it would know): it never reaches the game, and takes nothing from
	// the player who has it.
	bob.send("session")
	bobID := strings.TrimPrefix(bob.expect("id: "), "id: ")
	intruder := newClaimPage(t)
	intruder.open(webB, map[string]any{"resume": "not-the-token", "got": 0, "session": bobID, "in": 0})
	select {
	case <-intruder.gone:
	case <-time.After(waitFor):
		t.Fatal("a claim of a session held on the gateway was not refused")
	}
	if be.logged("backend: a claim refused: no such session, or not its token", "session", bobID) {
		t.Error("a claim of a session held on the gateway reached the game")
	}
	bob.send("echo still mine")
	bob.expect("echo: still mine")

	m := page.comeBack(webB)
	if m["elsewhere"] != true || m["resumed"] != true {
		t.Fatalf("the answer on the other gateway: %v", m)
	}
	be.waitLogged("backend: session claimed by another gateway", "session", id)
	seen := page.until("Bob says: while you were away")
	seen = append(seen, page.until("echo: typed while away")...)
	page.typeLine("echo after")
	seen = append(seen, page.until("echo: after")...)
	for _, l := range seen {
		if strings.HasPrefix(l, "echo: ") || strings.HasPrefix(l, "Welcome") || strings.Contains(l, "while you were away") {
			t.Errorf("on the other gateway, again: %q (all: %q)", l, seen)
		}
	}
	page.typeLine("session")
	f := map[string]string{}
	for _, l := range page.until("client_ip:") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			f[k] = v
		}
	}
	if f["id"] != id {
		t.Errorf("on the other gateway the session is %q, want %q", f["id"], id)
	}
	if be.logged("talker: player left", "session", id) || be.count("talker: new player") != 2 {
		t.Errorf("the game saw the page's player leave, or a new player: %d new", be.count("talker: new player"))
	}
	bob.send("echo still here")
	bob.expect("echo: still here")
}

// TestBrowserMovesGateway: the web client itself, in headless Chromium,
// through an address that reaches one gateway and, once that gateway is
// killed, another (as a balancer's does): the page comes back by itself to
// the same game session, logged in, with what was said meanwhile and what
// it typed while away, each once.
func TestBrowserMovesGateway(t *testing.T) {
	a, b, be := twoWebGateways(t)
	balancer := newCutter(t, webAddr(a))
	bob := dial(t, b.telnet, "Bob")
	bob.login()

	page := newBrowser(t, 1000, 700, false)
	page.run(chromedp.Navigate("http://" + balancer.addr() + "/"))
	page.waitText("What is your name?")
	page.typeLine("Ann")
	page.waitText("Welcome, Ann.")
	page.typeLine("session")
	page.waitText("client_ip:")
	id := between(page.output(), "id: ", "\n")

	a.gw.kill(syscall.SIGKILL)
	balancer.block(true)
	balancer.cut()
	page.waitTrue("reconnecting shown", `document.getElementById("state").textContent.startsWith("reconnecting")`)
	bob.send("say while you were away")
	bob.expect("Bob says: while you were away")
	page.typeLine("echo typed while away")
	balancer.to(webAddr(b))
	balancer.block(false)

	page.waitText("echo: typed while away")
	be.waitLogged("backend: session claimed by another gateway", "session", id)
	page.waitTrue("connected again", `document.getElementById("state").textContent === "connected"`)
	page.typeLine("session")
	page.waitText("resumed: 1")
	out := page.output()
	if again := between(out[strings.LastIndex(out, "id: "):], "id: ", "\n"); again != id {
		t.Errorf("after the move the page's session is %q, want %q", again, id)
	}
	if n := page.countText("echo: typed while away"); n != 1 {
		t.Errorf("what the page typed while away was answered %d times", n)
	}
	if n := page.countText("Bob says: while you were away"); n != 1 {
		t.Errorf("what was said while the page was away came %d times", n)
	}
	for _, s := range []string{"What is your name?", "Welcome, Ann.", "resumed: 0"} {
		if n := page.countText(s); n != 1 {
			t.Errorf("%q shown %d times", s, n)
		}
	}
	if be.count("talker: new player") != 2 || be.logged("talker: player left", "session", id) {
		t.Error("the player had to log in again, or the game saw them leave")
	}
	page.typeLine("say from the other gateway")
	bob.expect("Ann says: from the other gateway")
	page.screenshot("web-client-moved-gateway.png")
}

// TestBrowserTypesThroughGatewayDeath: a page types a numbered line every
// few milliseconds while its gateway is killed and it comes back through
// the other: every line is answered once, in order, and the game sees
// the same session throughout.
func TestBrowserTypesThroughGatewayDeath(t *testing.T) {
	a, b, be := twoWebGateways(t)
	page := newClaimPage(t)
	page.open(webAddr(a), map[string]any{})
	page.until("What is your name?")
	page.typeLine("Pat")
	page.until("Welcome, Pat.")

	const lines = 400
	typed := make(chan struct{})
	go func() {
		defer close(typed)
		for i := 1; i <= lines; i++ {
			page.typeLine(fmt.Sprintf("echo n%d", i))
			time.Sleep(3 * time.Millisecond) // a fast typist's pace, not synchronisation
		}
	}()
	var answers []string
	for len(answers) < 60 {
		l := <-page.lines
		if strings.HasPrefix(l, "echo: n") {
			answers = append(answers, l)
		}
	}
	a.gw.kill(syscall.SIGKILL)
	page.cutOff()
	if m := page.comeBack(webAddr(b)); m["elsewhere"] != true {
		t.Fatalf("the answer on the other gateway: %v", m)
	}
	<-typed
	page.typeLine("echo end")
	for _, l := range page.until("echo: end") {
		if strings.HasPrefix(l, "echo: n") {
			answers = append(answers, l)
		}
	}
	for i, l := range answers {
		if want := fmt.Sprintf("echo: n%d", i+1); l != want {
			t.Fatalf("answer %d is %q, want %q (all %d: %q)", i+1, l, want, len(answers), answers)
		}
	}
	if len(answers) != lines {
		t.Fatalf("%d answers, want %d", len(answers), lines)
	}
	if be.count("talker: new player") != 1 || be.count("talker: player left") != 0 {
		t.Error("the game saw the player leave, or arrive again")
	}
}

// TestStowedPageClaimed: a browser page idle on one gateway is stowed
// there (the game holds its session without a stream); its WebSocket
// breaks and it comes back through another gateway, which claims the
// session. While stowed it hears what is said. The first gateway hears
// of the claim and lets the session go (taken, without a Hangup), the page
// carries on through the second without a line twice, idles there until
// stowed again and answers, and the game never saw it leave.
func TestStowedPageClaimed(t *testing.T) {
	_, port := startEPMD(t, ourEPMD)
	flags := []string{"-epmd-port", fmt.Sprint(port), "-embed-epmd=false", "-ws-listen", "127.0.0.1:0", "-max-per-ip", "0",
		"-hold-idle", "1s", "-metrics", "127.0.0.1:0"}
	a, b := startSystemOn(t, port, flags...), startSystemOn(t, port, flags...)
	be := a.startBackend()
	b.gw.waitLog("gateway: backend linked", 1)
	adminA := a.gw.waitLog("gateway: admin listening", 1)["addr"].(string)
	adminB := b.gw.waitLog("gateway: admin listening", 1)["addr"].(string)

	page := newClaimPage(t)
	page.open(webAddr(a), map[string]any{})
	page.until("What is your name?")
	page.typeLine("Pat")
	page.until("Welcome, Pat.")
	page.typeLine("session")
	page.until("id: ")
	page.mu.Lock()
	id := page.session
	page.mu.Unlock()
	waitMetric(t, adminA, `holdfast_streams{state="held"}`, 1)
	bob := dial(t, a.telnet, "Bob")
	bob.login()
	bob.send("say to the page")
	page.until("Bob says: to the page")
	waitMetric(t, adminA, `holdfast_streams{state="held"}`, 2)

	page.mu.Lock()
	page.ws.CloseNow()
	page.mu.Unlock()
	page.cutOff()
	page.typeLine("echo typed while away")
	if m := page.comeBack(webAddr(b)); m["elsewhere"] != true || m["resumed"] != true {
		t.Fatalf("the answer on the other gateway: %v", m)
	}
	be.waitLogged("backend: session claimed by another gateway", "session", id)
	a.gw.waitLogged("gateway: player disconnected", "reason", "taken")
	waitMetric(t, adminA, `holdfast_sessions{state="attached"}`, 1)
	waitMetric(t, adminA, `holdfast_streams{state="held"}`, 1)
	if seen := page.until("echo: typed while away"); slices.ContainsFunc(seen, func(l string) bool { return strings.Contains(l, "Bob says") }) {
		t.Errorf("on the other gateway, again: %q", seen)
	}

	waitMetric(t, adminB, `holdfast_streams{state="held"}`, 1)
	page.typeLine("echo after")
	page.until("echo: after")
	if be.logged("talker: player left", "session", id) || be.count("talker: new player") != 2 { // the page's and Bob's
		t.Errorf("the game saw the page's player leave, or a new player: %d new", be.count("talker: new player"))
	}
}
