package test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBridgeBrowser: the web client, in headless Chromium, plays TinyMUX
// through gateway and bridge: the game learns the page's window width and
// terminal type from the bridge; when the game is killed and started
// again, the page stays, is told once, and sees the game's welcome again.
func TestBridgeBrowser(t *testing.T) {
	mux := startTinyMUX(t)
	sys := startSystem(t, "-ws-listen", "127.0.0.1:0")
	u := sys.gw.waitLog("gateway: web client listening", 1)["url"].(string)
	sys.startBridge(mux.addr)

	page := newBrowser(t, 1000, 700, false)
	page.run(chromedp.Navigate(u))
	page.waitText("Welcome to TinyMUX")
	page.typeLine("connect wizard potrzebie")
	page.waitText("Last connect")
	page.typeLine("think FACTS=<[width(me)] [terminfo(me)]>")
	page.waitTrue("the game's answer", `/FACTS=<\d+ /.test(document.getElementById("out").innerText)`)
	got := regexp.MustCompile(`FACTS=<(\d+) ([^>]*)>`).FindStringSubmatch(page.output())
	if got == nil || got[1] == "0" || !strings.HasPrefix(strings.ToLower(got[2]), "holdfast-web") {
		t.Fatalf("the game learnt %q of the page, want its width and holdfast-web", got)
	}

	mux.kill()
	page.waitText(bridgeNotice)
	mux.start()
	page.waitTrue("the welcome again", `document.getElementById("out").innerText.split("Welcome to TinyMUX").length === 3`)
	if n := page.countText(bridgeNotice); n != 1 {
		t.Errorf("the page was told %d times that the game is restarting, want once", n)
	}
	page.typeLine("connect wizard potrzebie")
	page.typeLine("think AGAIN=<[width(me)]>")
	page.waitTrue("the width again", `document.getElementById("out").innerText.includes("AGAIN=<`+got[1]+`>")`)
}
