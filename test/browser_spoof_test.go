package test

import (
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserSpoofing has a telnet player say, to a browser player, a line
// that looks like the gateway's notice and two OSC 8 hyperlinks: the notice
// is shown as the player's words, not the gateway's, and only the link to
// the origin the operator allowed is live, with its address shown. Then
// the game restarts: the gateway's real notices are shown as its own.
func TestBrowserSpoofing(t *testing.T) {
	sys, b, addr := startWebSystem(t, "-ws-link-origins", "https://wiki.example.org")
	bob := dial(t, sys.telnet, "Bob")
	bob.login()

	page := newBrowser(t, 1000, 700, false)
	page.run(chromedp.Navigate("http://" + addr + "/"))
	page.waitText("What is your name?")
	page.typeLine("Ann")
	page.waitText("Welcome, Ann.")
	page.waitTrue("connected", `document.getElementById("state").textContent === "connected"`)

	bob.send("say [holdfast] The game is restarting. Stay connected: what you type is kept.")
	bob.send("say \x1b]8;;https://evil.example/login\x1b\\claim your prize\x1b]8;;\x1b\\ now")
	bob.send("say \x1b]8;;https://wiki.example.org.evil.example/\x07the wiki too\x1b]8;;\x07 here")
	bob.send("say see \x1b]8;;https://wiki.example.org/help\x1b\\the wiki\x1b]8;;\x1b\\ for help")
	page.waitText("for help")
	page.waitText("claim your prize now")
	page.waitText("the wiki too here")

	// The fake notice is Bob's words.
	if s := page.state(); s != "connected" {
		t.Errorf("a player's line made the state %q", s)
	}
	if n := evalAs[int](page, `document.querySelectorAll("#out .gateway-notice").length`); n != 0 {
		t.Errorf("%d gateway notices shown after a player's line", n)
	}
	// No live link but to the allowed origin, which opens apart, its
	// address shown.
	foreign := evalAs[[]string](page, `[...document.querySelectorAll("#out a")].map(a => a.href).filter(h => new URL(h).origin !== "https://wiki.example.org")`)
	if len(foreign) != 0 {
		t.Errorf("live links to other origins: %q", foreign)
	}
	wiki := evalAs[map[string]any](page, `(() => {
		const a = [...document.querySelectorAll("#out a")].find(a => a.textContent === "the wiki");
		if (!a) return {};
		return {href: a.href, rel: a.rel, target: a.target, shown: a.parentElement.textContent};
	})()`)
	if wiki["href"] != "https://wiki.example.org/help" {
		t.Fatalf("the allowed link is not live: %v\n%s", wiki, page.output())
	}
	if rel, _ := wiki["rel"].(string); !slices.Contains(strings.Fields(rel), "noopener") || wiki["target"] != "_blank" {
		t.Errorf("the allowed link opens with rel %q target %v", rel, wiki["target"])
	}
	if shown, _ := wiki["shown"].(string); !strings.Contains(shown, "the wiki <https://wiki.example.org/help>") {
		t.Errorf("the allowed link's address is not shown: %q", shown)
	}

	// The gateway's own notices.
	b.kill(syscall.SIGKILL)
	b.wait()
	page.waitTrue("the restart shown", `document.getElementById("state").textContent === "the game is restarting"`)
	page.waitTrue("the gateway's notice shown as its own",
		`[...document.querySelectorAll("#out .gateway-notice")].some(n => n.textContent.startsWith("[holdfast] The game is"))`)
	sys.startBackend()
	page.waitTrue("connected again", `document.getElementById("state").textContent === "connected"`)
	page.waitTrue("the game's return shown as the gateway's",
		`[...document.querySelectorAll("#out .gateway-notice")].some(n => n.textContent.startsWith("[holdfast] The game is back"))`)
	if n := evalAs[int](page, `[...document.querySelectorAll("#out .gateway-notice")].filter(n => n.textContent.includes("Bob")).length`); n != 0 {
		t.Error("a player's words shown as a gateway notice")
	}
	page.screenshot("web-client-spoofing.png")
}
