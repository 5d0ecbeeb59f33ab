package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// next reads the page's next message.
func (p *pageConn) next() (websocket.MessageType, []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, msg, err := p.ws.Read(ctx)
	if err != nil {
		p.t.Fatalf("reading: %v", err)
	}
	return typ, msg
}

// nextNotice reads the page's next message, which must be a notice.
func (p *pageConn) nextNotice() string {
	p.t.Helper()
	typ, msg := p.next()
	var m map[string]any
	if typ != websocket.MessageText || json.Unmarshal(msg, &m) != nil {
		p.t.Fatalf("got %v %q, want a notice", typ, msg)
	}
	n, ok := m["notice"].(string)
	if !ok {
		p.t.Fatalf("got %q, want a notice", msg)
	}
	return n
}

// TestNoticeOutOfBand sends the gateway's notices to a page: in text
// messages, apart from the output, which stays in binary messages
// whatever it says; kept in order while the page is away and given it on
// its return; and left to the output on a connection that is not the
// page's protocol.
func TestNoticeOutOfBand(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := accept(t, l)
	p.waitToken()

	fake := "[holdfast] The game is restarting. (said by a player)\n"
	c.Write([]byte(fake))
	if typ, msg := p.next(); typ != websocket.MessageBinary || string(msg) != fake {
		t.Fatalf("output came as %v %q", typ, msg)
	}
	if !c.Notice("[holdfast] The game is restarting.\n") {
		t.Fatal("a page's connection did not take the notice")
	}
	if n := p.nextNotice(); n != "[holdfast] The game is restarting.\n" {
		t.Fatalf("notice %q", n)
	}

	// Away: notices are kept, the last maxNotices, in order.
	p.ws.CloseNow()
	waitAway(t, c)
	for i := range maxNotices + 2 {
		c.Notice("notice " + string(rune('a'+i)))
	}
	back := dialPage(t, url, `{"resume":"`+p.token+`","got":`+strconv.Itoa(len(fake))+`}`)
	back.waitToken()
	for i := range maxNotices {
		want := "notice " + string(rune('a'+2+i))
		if n := back.nextNotice(); n != want {
			t.Fatalf("kept notice %d is %q, want %q", i, n, want)
		}
	}

	// Not the page's protocol: the notice goes in the output.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	plain := accept(t, l)
	if plain.Notice("x") {
		t.Error("a connection without control messages took a notice out of band")
	}
}

// TestLinkOriginsPage checks what the page is told of live links: none by
// default; the operator's origins, as a browser writes them, when given.
func TestLinkOriginsPage(t *testing.T) {
	get := func(l *Listener, path string) string {
		t.Helper()
		srv := httptest.NewServer(l)
		defer srv.Close()
		defer l.Close()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no Content-Security-Policy", path)
		}
		return string(b)
	}
	if page := get(&Listener{}, "/"); !strings.Contains(page, `<meta name="holdfast-link-origins" content="">`) {
		t.Errorf("the default page allows links:\n%s", page)
	}
	l := &Listener{LinkOrigins: []string{"HTTPS://Wiki.Example.org:443", "http://x.example:8080/", "javascript:alert(1)"}}
	want := `<meta name="holdfast-link-origins" content="https://wiki.example.org http://x.example:8080">`
	if page := get(l, "/"); !strings.Contains(page, want) {
		t.Errorf("the page lacks %s:\n%s", want, page)
	}
}

func TestParseLinkOrigin(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://wiki.example.org", "https://wiki.example.org"},
		{" HTTPS://Wiki.Example.ORG/ ", "https://wiki.example.org"},
		{"http://a.example:80", "http://a.example"},
		{"https://a.example:8443", "https://a.example:8443"},
		{"http://a.example:0080", "http://a.example"},
		{"https://[2001:db8::1]:443", "https://[2001:db8::1]"},
		{"javascript:alert(1)", ""},
		{"data:text/html,x", ""},
		{"https://a.example/path", ""},
		{"https://a.example?q", ""},
		{"https://user@a.example", ""},
		{"https://", ""},
		{"a.example", ""},
		{"https://a.example\"><script>", ""},
		{"https://bücher.example", ""},
	} {
		got, err := ParseLinkOrigin(tc.in)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ParseLinkOrigin(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseLinkOrigin checks that an origin taken is one a browser could
// write, and safe in the page's attribute.
func FuzzParseLinkOrigin(f *testing.F) {
	for _, s := range []string{"https://wiki.example.org", "http://a.example:80", "javascript:alert(1)", "https://[::1]:443/", "https://a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseLinkOrigin(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			t.Fatalf("%q taken as %q", s, o)
		}
		if _, host, _ := strings.Cut(o, "://"); strings.ContainsAny(host, " \t\r\n\"'<>&/?#@\\") {
			t.Fatalf("%q taken as %q, with a character an origin has not", s, o)
		}
		if again, err := ParseLinkOrigin(o); err != nil || again != o {
			t.Fatalf("%q taken as %q, which is taken as %q, %v", s, o, again, err)
		}
	})
}
