package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// pageConn is a resumable page, speaking the control messages by hand.
type pageConn struct {
	t     *testing.T
	ws    *websocket.Conn
	token string
	info  control
	data  []byte
}

func dialPage(t *testing.T, url, hello string) *pageConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url+"/ws?hold", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
		t.Fatal(err)
	}
	return &pageConn{t: t, ws: ws}
}

// readData reads until n bytes of data came, taking control messages on
// the way.
func (p *pageConn) readData(n int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(p.data) < n {
		typ, msg, err := p.ws.Read(ctx)
		if err != nil {
			p.t.Fatalf("reading (have %q): %v", p.data, err)
		}
		if typ == websocket.MessageText {
			if err := json.Unmarshal(msg, &p.info); err != nil {
				p.t.Fatal(err)
			}
			p.token = p.info.Token
			continue
		}
		p.data = append(p.data, msg...)
	}
}

func (p *pageConn) waitToken() {
	p.t.Helper()
	p.readData(0)
	for p.token == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		typ, msg, err := p.ws.Read(ctx)
		cancel()
		if err != nil || typ != websocket.MessageText {
			p.t.Fatalf("no token: %v", err)
		}
		json.Unmarshal(msg, &p.info)
		p.token = p.info.Token
	}
}

func serveListener(t *testing.T, l *Listener) string {
	t.Helper()
	srv := httptest.NewServer(l)
	t.Cleanup(func() { srv.Close(); l.Close() })
	return "ws://" + strings.TrimPrefix(srv.URL, "http://")
}

// accept accepts a Conn and reads it, as the gateway does: a Conn's
// reader is what takes the page's messages, acknowledgements included.
func accept(t *testing.T, l *Listener) *Conn {
	t.Helper()
	c := acceptUnread(t, l)
	r := &reader{more: make(chan struct{}, 1)}
	readers.Store(c, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256)
		for {
			n, err := c.Read(buf)
			r.mu.Lock()
			r.in = append(r.in, buf[:n]...)
			r.err = err
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done; readers.Delete(c) })
	return c
}

// acceptUnread accepts a Conn that the test reads itself.
func acceptUnread(t *testing.T, l *Listener) *Conn {
	t.Helper()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Conn)
}

// reader is what accept's reader has read.
type reader struct {
	mu   sync.Mutex
	in   []byte
	err  error
	more chan struct{}
}

var readers sync.Map // *Conn to *reader

// input waits until accept's reader has read n bytes of c's input.
func input(t *testing.T, c *Conn, n int) []byte {
	t.Helper()
	v, _ := readers.Load(c)
	r := v.(*reader)
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		in, err := r.in, r.err
		r.mu.Unlock()
		if len(in) >= n {
			return in[:n]
		}
		if err != nil {
			t.Fatalf("read %q, then %v", in, err)
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("read %q of %d bytes", in, n)
		}
	}
}

// waitAway waits until the Conn has lost its WebSocket.
func waitAway(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		away := c.ws == nil
		wake := c.wake
		c.mu.Unlock()
		if away {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the Conn did not notice the WebSocket break")
		}
		if wake == nil {
			time.Sleep(time.Millisecond) // nothing to wait on yet
			continue
		}
		select {
		case <-wake:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestReplay resumes with less than everything received, and past the
// replay bound.
func TestReplay(t *testing.T) {
	l := &Listener{MaxReplay: 16}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := accept(t, l)
	c.Write([]byte("0123456789"))
	p.readData(10)
	p.waitToken()

	// The page says it had only 7 bytes: the last 3 come again.
	p.ws.CloseNow()
	waitAway(t, c)
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatalf("a write while the page is away: %v", err)
	}
	back := dialPage(t, url, `{"resume":"`+p.token+`","got":7}`)
	back.readData(6)
	if string(back.data) != "789abc" || back.info.Missed != 0 || !back.info.Resumed {
		t.Fatalf("replay %q %+v, want 789abc and nothing missed", back.data, back.info)
	}

	// Away for longer than the bound: the page is told what it missed.
	back.ws.CloseNow()
	waitAway(t, c)
	c.Write([]byte(strings.Repeat("x", 20) + "0123456789ABCDEF"))
	again := dialPage(t, url, `{"resume":"`+back.token+`","got":13}`)
	again.readData(16)
	if string(again.data) != "0123456789ABCDEF" || again.info.Missed != 20 {
		t.Fatalf("replay %q missed %d, want the last 16 bytes and 20 missed", again.data, again.info.Missed)
	}

	// Input after the resume reaches the reader.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	again.ws.Write(ctx, websocket.MessageBinary, []byte("look\r\n"))
	if in := input(t, c, 6); string(in) != "look\r\n" {
		t.Fatalf("read %q", in)
	}
}

// TestAckTrims checks that acknowledged output is let go of, and that a
// page claiming more than was sent gets nothing twice.
func TestAckTrims(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := accept(t, l)
	c.Write([]byte("hello"))
	p.readData(5)
	p.waitToken()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.ws.Write(ctx, websocket.MessageText, []byte(`{"ack":5}`))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		kept := len(c.replay)
		c.mu.Unlock()
		if kept == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes kept after the page acknowledged them all", kept)
		}
		time.Sleep(time.Millisecond)
	}
	p.ws.CloseNow()
	waitAway(t, c)
	back := dialPage(t, url, `{"resume":"`+p.token+`","got":999}`)
	back.waitToken()
	c.Write([]byte("new"))
	back.readData(3)
	if string(back.data) != "new" {
		t.Fatalf("got %q after resuming past the end, want only the new output", back.data)
	}
}

// TestReadDeadline checks that Read honours its deadline, as the gateway's
// negotiation wait and session moves need, without harming the WebSocket.
func TestReadDeadline(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := acceptUnread(t, l)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errorsAs(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	c.Write([]byte("still"))
	p.readData(5)
}

func errorsAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

func FuzzParseHello(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"resume":"abc","got":12}`))
	f.Add([]byte(`{"got":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHello(b)
		if err == nil && len(b) > maxControl {
			t.Fatalf("a %d-byte hello accepted: %+v", len(b), h)
		}
	})
}

// FuzzControl sends a resumable Conn whatever a page could: the output it
// keeps never grows, and never loses what was not acknowledged.
func FuzzControl(f *testing.F) {
	f.Add([]byte(`{"ack":3}`))
	f.Add([]byte(`{"ack":18446744073709551615}`))
	f.Add([]byte(`{"ack":-1,"x":[1,2]}`))
	f.Add([]byte(`{"kept_token":true,"ack":4}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		c := &Conn{l: &Listener{}, resumable: true, sent: 10, replay: []byte("0123456789"), token: "old", fresh: "new"}
		c.control(0, msg)
		if len(c.replay) > 10 || c.acked > c.sent || uint64(len(c.replay)) < c.sent-c.acked {
			t.Fatalf("replay %q acked %d sent %d", c.replay, c.acked, c.sent)
		}
		if !(c.token == "old" && c.fresh == "new") && !(c.token == "new" && c.fresh == "") {
			t.Fatalf("tokens %q and %q after %q", c.token, c.fresh, msg)
		}
	})
}

// FuzzClientAddr reads X-Forwarded-For as a trusted proxy sends it: the
// player's address is always one of the header's or the proxy's own.
func FuzzClientAddr(f *testing.F) {
	f.Add("198.51.100.7, 127.0.0.1")
	f.Add("::ffff:10.0.0.1,,garbage")
	f.Add("")
	l := &Listener{ForwardedFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, xff string) {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.RemoteAddr = "127.0.0.1:5555"
		r.Header.Set("X-Forwarded-For", xff)
		ta, ok := l.clientAddr(r).(*net.TCPAddr)
		if !ok {
			t.Fatalf("no TCP address from %q", xff)
		}
		ip, _ := netip.AddrFromSlice(ta.IP)
		ip = ip.Unmap()
		if ip == netip.MustParseAddr("127.0.0.1") {
			return
		}
		for _, hop := range strings.Split(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(hop)); err == nil && a.Unmap().WithZone("") == ip {
				if l.trusted(a) {
					t.Fatalf("a trusted proxy's address %v taken for the player's", a)
				}
				return
			}
		}
		t.Fatalf("address %v is neither the peer's nor in %q", ip, xff)
	})
}

// TestReadAhead sends the first message in the same write as the
// handshake, so that net/http has read it ahead: it must not be lost when
// the WebSocket takes the connection with buffers of its own.
func TestReadAhead(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET /ws?hold HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	hello := []byte{0x81, 0x80 | 2, 0, 0, 0, 0, '{', '}'} // a masked text message, mask zero
	if _, err := c.Write(append([]byte(req), hello...)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	// The gateway answers the hello it read ahead with a token.
	head := make([]byte, 2)
	if _, err := io.ReadFull(br, head); err != nil || head[0] != 0x81 || head[1] >= 126 {
		t.Fatalf("first frame %x: %v", head, err)
	}
	payload := make([]byte, head[1])
	if _, err := io.ReadFull(br, payload); err != nil || !strings.Contains(string(payload), `"token"`) {
		t.Fatalf("first message %q: %v", payload, err)
	}
}

// TestReceivedCount checks what a page coming back is told it sent: the
// input messages that reached the session, so that it sends the rest again.
func TestReceivedCount(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := accept(t, l)
	p.waitToken()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.ws.Write(ctx, websocket.MessageBinary, []byte("one\r\n"))
	p.ws.Write(ctx, websocket.MessageBinary, []byte("two\r\n"))
	in := input(t, c, 10)
	p.ws.CloseNow()
	waitAway(t, c)
	back := dialPage(t, url, `{"resume":"`+p.token+`","got":0}`)
	back.waitToken()
	if back.info.Received != 10 || string(in) != "one\r\ntwo\r\n" {
		t.Fatalf("told %d bytes received, read %q", back.info.Received, in)
	}
}

// TestQuitWhileWriting closes the page with 1000 while output streams to
// it: the player has quit, even when a write fails before the reader sees
// the close, and the session must not be held for the grace period.
func TestQuitWhileWriting(t *testing.T) {
	for range 20 {
		l := &Listener{}
		url := serveListener(t, l)
		p := dialPage(t, url, `{}`)
		c := acceptUnread(t, l)
		p.waitToken()
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Write([]byte(strings.Repeat("output ", 100)))
			}
		}()
		go p.ws.Close(websocket.StatusNormalClosure, "quit")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 8))
		close(stop)
		if err != io.EOF {
			t.Fatalf("read after the page quit: %v, want io.EOF", err)
		}
	}
}

// TestFailureTracking checks the count of failed resumes: by address, an
// IPv6 client's whole /64 as one, and bounded however many guess at once.
func TestFailureTracking(t *testing.T) {
	l := &Listener{}
	l.init()
	now := time.Now()
	a := addrOf(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::7")})
	b := addrOf(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9")})
	if a != b {
		t.Fatalf("two addresses of one /64 counted apart: %v, %v", a, b)
	}
	for range maxFailures {
		l.failed(a, now)
	}
	if l.mayTry(b, now) || !l.mayTry(addrOf(&net.TCPAddr{IP: net.ParseIP("192.0.2.1")}), now) {
		t.Error("the limit is not by client")
	}
	if !l.mayTry(b, now.Add(failureWindow+time.Second)) {
		t.Error("the limit outlasts its window")
	}
	for i := range 2 * maxFailTrack {
		l.failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if n := len(l.fails); n > maxFailTrack {
		t.Errorf("%d addresses tracked, bound %d", n, maxFailTrack)
	}
}

// TestWaitAfterClose checks that the goroutines of a closed connection end:
// its reader, and its closing handshake with the page.
func TestWaitAfterClose(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := accept(t, l)
	p.waitToken()
	go func() {
		for {
			if _, _, err := p.ws.Read(context.Background()); err != nil {
				return // the page answers the close as it reads
			}
		}
	}()
	c.Close()
	l.Close()
	done := make(chan struct{})
	go func() { l.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a closed connection's goroutines still run")
	}
}

// TestReplyWakesReader checks that what the terminal protocols answer the
// game (here WILL TTYPE to DO TTYPE) reaches the reader at once, though it
// waits on a socket on which the page sends nothing.
func TestReplyWakesReader(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url+"/ws", &websocket.DialOptions{Subprotocols: []string{ProtoTerminal}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	c := accept(t, l)
	// A line first: once it is read, the reader waits on the socket.
	if err := ws.Write(ctx, websocket.MessageBinary, []byte("look")); err != nil {
		t.Fatal(err)
	}
	n := len(input(t, c, len("look\r\n")))
	if _, err := c.Write([]byte{255, 253, 24}); err != nil {
		t.Fatal(err)
	}
	if in := input(t, c, n+3)[n:]; string(in) != "\xff\xfb\x18" {
		t.Fatalf("read %x, want IAC WILL TTYPE", in)
	}
}

// TestParkHooks checks the Conn's side of the gateway's parker: an idle
// Conn gives its socket, and the hook it was given wakes its reader when
// the page comes back on another WebSocket, and when the page, lost while
// parked, does not come back in time.
func TestParkHooks(t *testing.T) {
	l := &Listener{Grace: time.Hour}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := acceptUnread(t, l)
	p.waitToken()
	park := func() chan struct{} {
		t.Helper()
		fd, ok := c.ParkFD()
		if !ok || fd < 0 {
			t.Fatalf("an idle Conn gives no socket to park: %d %v", fd, ok)
		}
		woken := make(chan struct{})
		if !c.Parked(fd, func() { close(woken) }) {
			t.Fatal("Parked refused the socket ParkFD gave")
		}
		return woken
	}
	waitWoken := func(woken chan struct{}, what string) {
		t.Helper()
		select {
		case <-woken:
		case <-time.After(10 * time.Second):
			t.Fatalf("no wake when %s", what)
		}
	}

	woken := park()
	back := dialPage(t, url, `{"resume":"`+p.token+`","got":0}`)
	back.waitToken()
	waitWoken(woken, "the page came back on another WebSocket")

	// Lost while parked, by a write that fails: the page has gone.
	woken = park()
	c.mu.Lock()
	l.Grace = 20 * time.Millisecond
	c.mu.Unlock()
	back.ws.CloseNow()
	for {
		c.Write([]byte("output for nobody"))
		c.mu.Lock()
		away := c.ws == nil
		c.mu.Unlock()
		if away {
			break
		}
	}
	waitWoken(woken, "the grace period ended")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("read after the grace period: %v, want io.EOF", err)
	}
}

// FuzzReplay writes and acknowledges output in any order: the replay is
// always the last of the output not acknowledged, within its bound, in
// whatever array it is kept.
func FuzzReplay(f *testing.F) {
	f.Add([]byte{10, 200, 3, 130, 250, 250, 250, 140, 5})
	f.Add([]byte{255, 255, 255, 255, 129, 255, 255})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const max = 256
		c := &Conn{l: &Listener{MaxReplay: max}, resumable: true}
		var all []byte
		for i, op := range ops {
			if op < 128 { // write op+1 bytes
				out := make([]byte, int(op)+1)
				for j := range out {
					out[j] = byte(i + j)
				}
				all = append(all, out...)
				c.mu.Lock()
				c.sent += uint64(len(out))
				c.keepLocked(out)
				c.mu.Unlock()
			} else { // acknowledge up to a share of what was sent
				c.ack(c.sent * uint64(op-128) / 127)
			}
			c.mu.Lock()
			replay, acked := c.replay, c.acked
			c.mu.Unlock()
			if len(replay) > max+max/4 {
				t.Fatalf("replay of %d bytes, bound %d", len(replay), max)
			}
			unacked := all[acked:]
			if len(replay) > len(unacked) || !bytes.Equal(replay, unacked[len(unacked)-len(replay):]) {
				t.Fatalf("replay %x is not the end of the unacknowledged %x", replay, unacked)
			}
			if len(replay) < min(len(unacked), max) {
				t.Fatalf("replay of %d bytes keeps less than the bound of %d unacknowledged", len(replay), len(unacked))
			}
		}
	})
}

// TestInputWhole: a page's messages, small and larger than the read
// buffer, sent faster than they are read, arrive whole and in order, as
// the input queue moves out of its pooled array and back.
func TestInputWhole(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := acceptUnread(t, l)
	p.waitToken()
	var want []byte
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, n := range []int{300, 300, 6000, 100, readBuf, 1, 2 * readBuf, 50} {
		for k := 0; k < 20; k++ {
			msg := bytes.Repeat([]byte{byte('a' + (i+k)%26)}, n)
			want = append(want, msg...)
			if err := p.ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []byte
	small, large := make([]byte, 128), make([]byte, 9000)
	for i := 0; len(got) < len(want); i++ {
		b := small
		if i%3 == 2 {
			b = large
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(b)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", len(got), len(want), err)
		}
		got = append(got, b[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d sent in order", len(got), len(want))
	}
}

// TestResumeAfterMovedOut: a page whose session moved to another process
// in an upgrade, and whose next connection this process took all the same
// (the two accept on one socket until this one stops), is told to
// reconnect (1012), which takes it to the other process, and not that it
// has no session (4404), which would have it start a new one. A token
// this process never gave is still refused, and so is one of a page whose
// move failed after its session had ended here.
func TestResumeAfterMovedOut(t *testing.T) {
	l := &Listener{}
	url := serveListener(t, l)
	p := dialPage(t, url, `{}`)
	c := acceptUnread(t, l)
	p.waitToken()
	// A move that failed after the page's session ended here (its grace
	// ran out during the offer): its token resumes nothing, and says so.
	gone := dialPage(t, url, `{}`)
	g := acceptUnread(t, l)
	gone.waitToken()
	if _, err := g.Export(); err != nil {
		t.Fatal(err)
	}
	g.Close()
	g.Thaw()
	if _, err := c.Export(); err != nil {
		t.Fatal(err)
	}
	c.Moved()
	c.Close() // as the move's commit does: the page is the other process's
	for _, tc := range []struct {
		token string
		want  websocket.StatusCode
	}{
		{p.token, websocket.StatusCode(statusRestart)},
		// A page names its session, for a claim through another gateway:
		// sent on all the same, not claimed back into this process.
		{p.token + `","session":"k3f9q2xa-1`, websocket.StatusCode(statusRestart)},
		{"never-given", websocket.StatusCode(closeUnknownToken)},
		{gone.token, websocket.StatusCode(closeUnknownToken)},
	} {
		back := dialPage(t, url, `{"resume":"`+tc.token+`"}`)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := back.ws.Read(ctx)
		cancel()
		if code := websocket.CloseStatus(err); code != tc.want {
			t.Errorf("resume with %q: closed with %v (%v), want %v", tc.token, code, err, tc.want)
		}
	}
}

// awayPage connects a page and has its connection break: the Conn holds
// the session for the page's return with the token it has.
func awayPage(t *testing.T, l *Listener, url string) (*pageConn, *Conn) {
	t.Helper()
	p := dialPage(t, url, `{}`)
	c := accept(t, l)
	p.waitToken()
	p.ws.CloseNow()
	waitAway(t, c)
	return p, c
}

// movedExport exports c as an upgrade's move does, and restores it in a
// listener of its own, as the new process does at the offer.
func movedExport(t *testing.T, c *Conn, l2 *Listener) *Conn {
	t.Helper()
	state, err := c.Export()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := l2.Restore(state)
	if err != nil {
		t.Fatal(err)
	}
	return c2.(*Conn)
}

// sentOn checks that a page back with token is told to reconnect (1012).
func sentOn(t *testing.T, url, token, when string) {
	t.Helper()
	back := dialPage(t, url, `{"resume":"`+token+`"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, msg, err := back.ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusCode(statusRestart) {
		t.Fatalf("a page back %s: %q, closed with %v (%v), want %d", when, msg, code, err, statusRestart)
	}
}

// resumed checks that a page back with token is given its session.
func resumed(t *testing.T, url, token string) *pageConn {
	t.Helper()
	again := dialPage(t, url, `{"resume":"`+token+`"}`)
	again.waitToken()
	if !again.info.Resumed {
		t.Fatalf("the page was not given its session back: %+v", again.info)
	}
	return again
}

// TestResumeWhileMoving: a page that comes back while its session moves
// between processes (exported here and not thawed, or restored in the new
// process and not arrived) is sent on (1012) with its token unspent, so
// that it finds its session with the same token wherever the move leaves
// it: in the process the session went to once the move committed, or here
// again after a move that failed or was aborted.
func TestResumeWhileMoving(t *testing.T) {
	for _, end := range []string{"moved", "thawed", "aborted"} {
		t.Run(end, func(t *testing.T) {
			l, l2 := &Listener{}, &Listener{}
			url, url2 := serveListener(t, l), serveListener(t, l2)
			p, c := awayPage(t, l, url)
			c2 := movedExport(t, c, l2)
			sentOn(t, url, p.token, "to the old process during the move")
			sentOn(t, url2, p.token, "to the new process before the commit")
			switch end {
			case "moved":
				c.Moved()
				sentOn(t, url, p.token, "to the old process after the commit, before its Close")
				c.Close()
				sentOn(t, url, p.token, "to the old process after the commit")
				c2.Arrived()
				resumed(t, url2, p.token)
				return
			case "aborted":
				c2.Close() // the new process discards what it was offered
			}
			c.Thaw()
			c.Write([]byte("after"))
			again := resumed(t, url, p.token)
			if again.readData(5); string(again.data) != "after" {
				t.Fatalf("the page read %q, want the output written after the thaw", again.data)
			}
		})
	}
}

// TestGraceWhileSentOn: a page's grace does not run out while its
// session moves: the old process's waits for the move (Export stops it,
// Thaw starts it again), and a page sent on by the new process came back
// in time, so its grace there starts again. A move that takes the rest of
// the grace leaves the page its session, in whichever process it ends.
func TestGraceWhileSentOn(t *testing.T) {
	const grace = 3 * time.Second
	for _, tc := range []struct {
		name      string
		backToNew bool // the page is sent on by the new process (the old one no longer accepts)
		commit    bool
	}{
		{name: "by the old process, move failed"},
		{name: "by the new process, move aborted", backToNew: true},
		{name: "by the new process, move committed", backToNew: true, commit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, l2 := &Listener{Grace: grace}, &Listener{Grace: grace}
			url, url2 := serveListener(t, l), serveListener(t, l2)
			p, c := awayPage(t, l, url)
			away := time.Now()
			c2 := movedExport(t, c, l2)
			time.Sleep(grace * 7 / 10) // the page is away most of its grace
			if tc.backToNew {
				sentOn(t, url2, p.token, "to the new process during the move")
			} else {
				sentOn(t, url, p.token, "to the old process during the move")
			}
			time.Sleep(time.Until(away.Add(grace * 13 / 10))) // past the first grace: the move takes that long
			if tc.commit {
				c.Moved()
				c.Close()
				c2.Arrived()
				resumed(t, url2, p.token)
				return
			}
			c2.Close()
			c.Thaw()
			resumed(t, url, p.token)
		})
	}
}
