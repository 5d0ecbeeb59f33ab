package test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromium finds the browser, which .ci/run installs: a missing one is
// skipped only outside CI.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium: .ci/run installs it")
	}
	t.Skip("no chromium on this machine (apt-get install chromium)")
	return ""
}

// cutter forwards TCP to the gateway and can cut every connection through
// it, and refuse new ones for a while, as a network that goes away does.
type cutter struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	blocked bool
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); c.cut() })
	go c.serve()
	return c
}

func (c *cutter) addr() string { return c.ln.Addr().String() }

func (c *cutter) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		blocked, target := c.blocked, c.target
		c.mu.Unlock()
		if blocked {
			in.(*net.TCPConn).SetLinger(0)
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		c.mu.Lock()
		c.conns[in], c.conns[out] = struct{}{}, struct{}{}
		c.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

// cut resets every connection through the cutter.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
	clear(c.conns)
}

// to sends the connections from now on to target, as a balancer does once
// the gateway it chose is gone.
func (c *cutter) to(target string) {
	c.mu.Lock()
	c.target = target
	c.mu.Unlock()
}

func (c *cutter) block(b bool) {
	c.mu.Lock()
	c.blocked = b
	c.mu.Unlock()
}

// browser drives one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T, width, height int, mobile bool) *browser {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(width, height))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	// The first run starts the browser, which lives as long as the
	// context of that run: no timeout on it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	b := &browser{t: t, ctx: ctx}
	if mobile {
		b.run(chromedp.EmulateViewport(int64(width), int64(height), chromedp.EmulateMobile, chromedp.EmulateTouch))
	}
	return b
}

func (b *browser) run(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*waitFor)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// evalAs evaluates a JavaScript expression in the page.
func evalAs[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*waitFor)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("browser: evaluating %s: %v", js, err)
	}
	return v
}

func (b *browser) output() string {
	return evalAs[string](b, `document.getElementById("out").innerText`)
}

// waitTrue waits until a JavaScript expression is true.
func (b *browser) waitTrue(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(waitFor)
	for !evalAs[bool](b, "!!("+js+")") {
		if time.Now().After(deadline) {
			b.t.Fatalf("browser: %s did not happen (state %q, output %q)", what, b.state(), b.output())
		}
		time.Sleep(20 * time.Millisecond) // polling the page: it has no way to call back
	}
}

// waitText waits until the output shows s.
func (b *browser) waitText(s string) {
	b.t.Helper()
	b.waitTrue("output "+strconvQuote(s), `document.getElementById("out").innerText.includes(`+strconvQuote(s)+`)`)
}

func (b *browser) countText(s string) int {
	return evalAs[int](b, `document.getElementById("out").innerText.split(`+strconvQuote(s)+`).length - 1`)
}

func (b *browser) typeLine(s string) {
	b.t.Helper()
	b.run(chromedp.SendKeys("#input", s+kb.Enter))
}

func (b *browser) state() string {
	return evalAs[string](b, `document.getElementById("state").textContent`)
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*waitFor)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "holdfast-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

func strconvQuote(s string) string {
	b, _ := jsonMarshal(s)
	return string(b)
}

// TestBrowser plays the demo from the embedded web client in headless
// Chromium, beside a telnet player: login, colours, a masked password and
// its prompt, a backend SIGKILL and a graceful restart, and a connection
// cut under the page that comes back to the same session.
func TestBrowser(t *testing.T) {
	sys, b, addr := startWebSystem(t)
	net := newCutter(t, addr)
	bob := dial(t, sys.telnet, "Bob")
	bob.login()

	page := newBrowser(t, 1000, 700, false)
	page.run(chromedp.Navigate("http://" + net.addr() + "/"))
	page.waitText("What is your name?")
	page.waitTrue("connected", `document.getElementById("state").textContent === "connected"`)
	page.typeLine("Ann")
	page.waitText("Welcome, Ann.")
	bob.expect("Ann has arrived.")

	// The facts the page gave the game.
	page.typeLine("session")
	page.waitText("client_ip:")
	out := page.output()
	for _, want := range []string{"client: holdfast-web", "charset: UTF-8", "mtts: 269", "terminal: ANSI-TRUECOLOR"} {
		if !strings.Contains(out, want) {
			t.Errorf("session facts lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "width: 0") || strings.Contains(out, "height: 0") {
		t.Errorf("the page sent no window size:\n%s", out)
	}
	id := between(out, "id: ", "\n")

	// Colours: ANSI codes become coloured text.
	page.typeLine("colours")
	page.waitText("bright blue")
	coloured := evalAs[bool](page, `(() => {
		const base = getComputedStyle(document.getElementById("out")).color;
		const spans = [...document.querySelectorAll("#out span span")];
		const red = spans.find(s => s.textContent === "red");
		return !!red && getComputedStyle(red).color !== base && !document.getElementById("out").innerText.includes("[31m");
	})()`)
	if !coloured {
		t.Error("the colours were not rendered")
	}

	// Each other's words, both ways.
	bob.send("say hello from telnet")
	page.waitText("Bob says: hello from telnet")
	page.typeLine("say hello from the browser")
	bob.expect("Ann says: hello from the browser")
	page.typeLine("who")
	page.waitText("online: Ann, Bob")

	// A password: masked while the game has echo off, its prompt shown.
	page.typeLine("password")
	page.waitTrue("the input masked", `document.getElementById("input").type === "password"`)
	page.waitTrue("the prompt shown", `document.getElementById("prompt").textContent.includes("Password:")`)
	page.typeLine("s3cret")
	page.waitText("Password of 6 characters noted.")
	page.waitTrue("the input unmasked", `document.getElementById("input").type === "text"`)
	if page.countText("s3cret") != 0 {
		t.Error("the password was shown")
	}
	page.screenshot("web-client.png")

	// The game restarts twice: SIGKILL, then SIGTERM. The login stays.
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		b.kill(sig)
		b.wait()
		page.waitTrue("the restart shown", `document.getElementById("state").textContent === "the game is restarting"`)
		b = sys.startBackend()
		page.waitTrue("connected again", `document.getElementById("state").textContent === "connected"`)
		page.typeLine("echo after restart " + string(rune('1'+i)))
		page.waitText("echo: after restart " + string(rune('1'+i)))
	}
	if page.countText("What is your name?") != 1 {
		t.Error("the game asked for the name again after a restart")
	}

	// The network goes away under the page, and comes back.
	left := b.count("talker: player left")
	net.block(true)
	net.cut()
	page.waitTrue("reconnecting shown", `document.getElementById("state").textContent.startsWith("reconnecting")`)
	bob.send("say while you were away")
	bob.expect("Bob says: while you were away")
	page.typeLine("say typed while away") // kept by the page, sent once back
	net.block(false)
	page.waitText("Bob says: while you were away")
	bob.expect("Ann says: typed while away")
	page.waitTrue("connected after the cut", `document.getElementById("state").textContent === "connected"`)
	page.typeLine("session")
	page.waitTrue("a second session listing", `document.getElementById("out").innerText.split("client_ip:").length === 3`)
	out = page.output()
	if got := between(out[strings.LastIndex(out, "id: "):], "id: ", "\n"); got != id {
		t.Errorf("session %q after the cut, want %q", got, id)
	}
	if n := page.countText("Bob says: while you were away"); n != 1 {
		t.Errorf("the output from while away shown %d times", n)
	}
	if b.count("talker: player left") != left {
		t.Error("the game was told the player left")
	}
	page.typeLine("say back again")
	bob.expect("Ann says: back again")
}

// TestBrowserPhone loads the web client at a phone's size: the input line
// fits the screen, and a player can log in.
func TestBrowserPhone(t *testing.T) {
	sys, _, addr := startWebSystem(t)
	_ = sys
	phone := newBrowser(t, 390, 844, true)
	phone.run(chromedp.Navigate("http://" + addr + "/"))
	phone.waitText("What is your name?")
	phone.typeLine("Pip")
	phone.waitText("Welcome, Pip.")
	fits := evalAs[bool](phone, `(() => {
		const r = document.getElementById("input").getBoundingClientRect();
		return r.left >= 0 && r.right <= window.innerWidth && r.bottom <= window.innerHeight && r.width > 150;
	})()`)
	if !fits {
		t.Error("the input line does not fit a phone's screen")
	}
	if evalAs[bool](phone, `document.documentElement.scrollWidth > window.innerWidth`) {
		t.Error("the page scrolls sideways on a phone")
	}
	phone.screenshot("web-client-phone.png")
}

func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, to)
	return strings.TrimSpace(v)
}
