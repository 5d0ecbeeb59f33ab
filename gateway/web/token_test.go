package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
)

// waitFor waits until cond holds, checking it under the Conn's lock.
func waitFor(t *testing.T, c *Conn, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		ok := cond()
		c.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen", what)
		}
		time.Sleep(time.Millisecond) // the Conn has no event for each of these
	}
}

// keep acknowledges the page's last token, as the web client does, and
// waits until the Conn has taken the acknowledgement.
func (p *pageConn) keep(c *Conn) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, []byte(`{"kept_token":true}`)); err != nil {
		p.t.Fatal(err)
	}
	waitFor(p.t, c, "the token's acknowledgement", func() bool { return c.token == tokenHash(p.token) && c.fresh == "" })
}

// refused checks that the page is turned away with 4404.
func (p *pageConn) refused() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := p.ws.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != closeUnknownToken {
				p.t.Fatalf("closed with %v, want %d", err, closeUnknownToken)
			}
			return
		}
	}
}

// TestTokenExchange breaks the connection of a page that resumed before
// it has its new token: the token it came with still resumes it. Once the
// page acknowledges a token, the one before is spent; a page that comes
// back with the newest token, never acknowledged, spends the one before.
func TestTokenExchange(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := accept(t, l)
	p.waitToken()
	p.keep(c)
	t0 := p.token

	// The page resumes and its connection breaks before the new token
	// reaches it: it never reads it.
	p.ws.CloseNow()
	waitAway(t, c)
	lost := dialPage(t, url, `{"resume":"`+t0+`","got":0}`)
	lost.ws.CloseNow()
	waitFor(t, c, "the resume", func() bool {
		var m dto.Metric
		l.metrics.resumed.Write(&m)
		return m.GetCounter().GetValue() == 1
	})
	waitAway(t, c)

	// Its old token still resumes it.
	back := dialPage(t, url, `{"resume":"`+t0+`","got":0}`)
	back.waitToken()
	if !back.info.Resumed || back.token == t0 {
		t.Fatalf("resumed %v, token changed %v", back.info.Resumed, back.token != t0)
	}
	back.keep(c)
	t1 := back.token

	// Acknowledged: the old token is spent.
	back.ws.CloseNow()
	waitAway(t, c)
	dialPage(t, url, `{"resume":"`+t0+`","got":0}`).refused()

	// Back with t1, given t2, never acknowledged; back with t2: t1 is spent.
	again := dialPage(t, url, `{"resume":"`+t1+`","got":0}`)
	again.waitToken()
	t2 := again.token
	again.ws.CloseNow()
	waitAway(t, c)
	last := dialPage(t, url, `{"resume":"`+t2+`","got":0}`)
	last.waitToken()
	last.ws.CloseNow()
	waitAway(t, c)
	dialPage(t, url, `{"resume":"`+t1+`","got":0}`).refused()
	final := dialPage(t, url, `{"resume":"`+last.token+`","got":0}`)
	final.waitToken()
	if !final.info.Resumed {
		t.Fatal("the newest token did not resume the session")
	}

	// The session's end spends every token.
	c.Close()
	waitFor(t, c, "the end", func() bool { return c.token == "" && c.fresh == "" })
	l.mu.Lock()
	n := len(l.tokens)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("%d tokens still resume an ended session", n)
	}
}

// TestValidSessionID: the session id a page names is bounded and made of
// what gateways make ids of, since it is logged and listed as it is.
func TestValidSessionID(t *testing.T) {
	for id, want := range map[string]bool{
		"sqq1azd3-1":                    true,
		"":                              false,
		strings.Repeat("a", 65):         false,
		"a\x1b[31m":                     false,
		"a b":                           false,
		"x\n":                           false,
		strings.Repeat("Z9-", 21) + "a": true,
	} {
		if got := validSessionID(id); got != want {
			t.Errorf("validSessionID(%q) = %v, want %v", id, got, want)
		}
	}
}
