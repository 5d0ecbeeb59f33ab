package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/backend"
	"holdfast/gateway"
	"holdfast/link"
)

// TestResumeCarriesStateAndFacts: a session moves from one backend to the
// next with its id, its state and the facts about the player.
func TestResumeCarriesStateAndFacts(t *testing.T) {
	e := newEnv(t, nil)
	type seen struct {
		id      string
		resumed int
		state   string
		client  string
	}
	got := make(chan seen, 2)
	first := e.backend(func(s *backend.Session) {
		if err := s.SetState([]byte("logged in as Ada")); err != nil {
			t.Error(err)
		}
		got <- seen{s.ID(), s.Resumed(), "", s.Facts().ClientAddr}
		s.ReadLine() // until detached
	})
	// Linked before the player comes: a session that opens as the link
	// comes up may be opened twice on it, the second time on a link that
	// the Close below has ended, and counted as resumed for each.
	e.waitLog("gateway: backend linked")
	p := e.dial()
	a := <-got
	if a.resumed != 0 || a.client != p.conn.LocalAddr().String() {
		t.Fatalf("new session: %+v, want resumed 0 and client %s", a, p.conn.LocalAddr())
	}
	first.Close()
	p.expect("The game is restarting")
	e.backend(func(s *backend.Session) {
		got <- seen{s.ID(), s.Resumed(), string(s.State()), s.Facts().ClientAddr}
		s.ReadLine()
	})
	b := <-got
	if b.id != a.id || b.resumed != 1 || b.state != "logged in as Ada" || b.client != a.client {
		t.Fatalf("resumed session: %+v, want id %s, resumed 1, the state, client %s", b, a.id, a.client)
	}
	p.expect("The game is back")
}

// TestHeldInputBackpressure: with no backend, the gateway holds input up to
// its bound and then stops reading the socket; every byte is delivered, in
// order, once a backend comes.
func TestHeldInputBackpressure(t *testing.T) {
	e := newEnv(t, &gateway.Server{MaxHeldInput: 1024})
	p := e.dial()
	p.expect("The game is not running")

	written := p.fillUntilBlocked()
	t.Logf("the socket stopped taking input after %d lines", written)

	ch := make(chan string, 100)
	e.backend(lines(ch))
	for i := 0; i < written; i++ {
		if l := recv(t, ch); l != fmt.Sprintf("line %06d", i) {
			t.Fatalf("line %d arrived as %q", i, l)
		}
	}
	// And the socket is read again.
	p.send("after\r\n")
	if l := recv(t, ch); l != "after" {
		t.Fatalf("after the backlog: %q", l)
	}
}

// TestGracefulStopRepeatsNothing: lines the application was handed are
// acknowledged when the backend shuts down; only the rest go to the next.
func TestGracefulStopRepeatsNothing(t *testing.T) {
	e := newEnv(t, nil)
	ch := make(chan string, 10)
	first := e.backend(func(s *backend.Session) {
		for i := 0; i < 2; i++ {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			ch <- l
		}
		// "three" has arrived too, but a detached session hands out nothing.
		<-s.Detached()
		if _, err := s.ReadLine(); !errors.Is(err, backend.ErrDetached) {
			t.Errorf("read after the detach: %v, want ErrDetached", err)
		}
	})
	p := e.dial()
	p.send("one\r\ntwo\r\nthree\r\n")
	if a, b := recv(t, ch), recv(t, ch); a != "one" || b != "two" {
		t.Fatalf("first backend read %q %q", a, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	e.backend(lines(ch))
	if l := recv(t, ch); l != "three" {
		t.Fatalf("after a graceful stop the next backend first read %q, want three", l)
	}
}

// TestCrashRepeatsOnlyUnacknowledged: a backend that dies holding lines it
// has not acknowledged gets them again on the next backend, and nothing is
// lost.
func TestCrashRepeatsOnlyUnacknowledged(t *testing.T) {
	e := newEnv(t, nil)
	ch := make(chan string, 10)
	first := e.backend(lines(ch))
	p := e.dial()
	p.send("one\r\n")
	if l := recv(t, ch); l != "one" {
		t.Fatal(l)
	}
	// "one" is acknowledged when the handler blocks for the next line;
	// "two" and "three" arrive together and the second is never read.
	p.send("two\r\nthree\r\n")
	if l := recv(t, ch); l != "two" {
		t.Fatal(l)
	}
	if l := recv(t, ch); l != "three" {
		t.Fatal(l)
	}
	first.Close() // like a crash: nothing more is flushed
	e.backend(lines(ch))
	p.send("four\r\n")
	var got []string
	for l := ""; l != "four"; {
		l = recv(t, ch)
		got = append(got, l)
	}
	// "one" was certainly acknowledged (the handler blocked after it);
	// "two" and "three" may come again; "four" must come, once.
	for _, l := range got[:len(got)-1] {
		if l != "two" && l != "three" {
			t.Fatalf("after the crash the next backend read %q (all: %q)", l, got)
		}
	}
}

func TestQuitAndHangup(t *testing.T) {
	e := newEnv(t, nil)
	ended := make(chan error, 1)
	staying := make(chan struct{})
	e.backend(func(s *backend.Session) {
		l, err := s.ReadLine()
		if err != nil {
			ended <- err
			return
		}
		if l == "quit" {
			io.WriteString(s, "bye\n")
			return // Close ends the session
		}
		close(staying)
		_, err = s.ReadLine()
		ended <- err
	})
	p := e.dial()
	p.send("quit\r\n")
	p.expect("bye")
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	if rest, err := io.ReadAll(p.r); err != nil {
		t.Fatalf("after quit: %q %v, want a clean close", rest, err)
	}

	q := e.dial()
	q.send("stay\r\n")
	<-staying
	q.conn.Close()
	select {
	case err := <-ended:
		if err != io.EOF {
			t.Fatalf("the backend read %v after the player left, want io.EOF", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the backend never learnt that the player left")
	}
}

// TestSlowPlayerIsDisconnected: a player who never reads is disconnected
// once the bounded wait runs out, and the other player is not held up.
func TestSlowPlayerIsDisconnected(t *testing.T) {
	e := newEnv(t, &gateway.Server{OutputQueue: 4 << 10, SlowPlayerTimeout: 200 * time.Millisecond})
	e.backend(func(s *backend.Session) {
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			if l == "flood" {
				line := strings.Repeat("x", 1000) + "\n"
				for {
					if _, err := io.WriteString(s, line); err != nil {
						return
					}
				}
			}
			fmt.Fprintf(s, "echo: %s\n", l)
		}
	})
	slow := e.dial()
	slow.send("flood\r\n")
	fast := e.dial()
	for i := 0; i < 20; i++ {
		fast.send(fmt.Sprintf("ping %d\r\n", i))
		fast.expect(fmt.Sprintf("echo: ping %d", i))
	}
	// The slow player's socket is closed by the gateway: reading it drains
	// what was queued and then ends.
	e.waitLog("gateway: disconnecting a player who does not read")
	slow.conn.SetReadDeadline(time.Now().Add(waitFor))
	_, err := io.Copy(io.Discard, slow.conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the player who does not read was never disconnected")
	}
}

func TestSetStateBound(t *testing.T) {
	e := newEnv(t, nil)
	errs := make(chan error, 2)
	e.backend(func(s *backend.Session) {
		errs <- s.SetState(make([]byte, link.MaxState+1))
		errs <- s.SetState(make([]byte, link.MaxState))
		s.ReadLine()
	})
	e.dial()
	if err := <-errs; !errors.Is(err, backend.ErrStateTooLarge) {
		t.Fatalf("oversize state: %v, want ErrStateTooLarge", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("state at the bound: %v", err)
	}
}

// TestTelnetRefusals: an option the gateway does not support is refused
// once per request, and data around the negotiation gets through.
func TestTelnetRefusals(t *testing.T) {
	e := newEnv(t, nil)
	ch := make(chan string, 10)
	e.backend(lines(ch))
	p := e.dial()
	// WILL LINEMODE, DO MCCP3 and an unknown option 99.
	p.send("\xff\xfb\x22\xff\xfd\x57hel\xff\xf1lo\xff\xfd\x63\r\n")
	if l := recv(t, ch); l != "hello" {
		t.Fatalf("data around the negotiation arrived as %q", l)
	}
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	var buf []byte
	for _, want := range []string{"\xff\xfe\x22", "\xff\xfc\x57", "\xff\xfc\x63"} {
		for !strings.Contains(string(buf), want) {
			b := make([]byte, 64)
			n, err := p.conn.Read(b)
			if err != nil {
				t.Fatalf("refusal %q not received (got %q): %v", want, buf, err)
			}
			buf = append(buf, b[:n]...)
		}
	}
}

// TestCloseWithFullHeldInput closes the gateway while a player's reader
// waits for room in its held input: Close still returns, and the leak check
// in TestMain finds no goroutine left.
func TestCloseWithFullHeldInput(t *testing.T) {
	e := newEnv(t, &gateway.Server{MaxHeldInput: 16})
	p := e.dial()
	p.expect("The game is not running")
	p.fillUntilBlocked() // the gateway has stopped reading: its reader waits for room
	closed := make(chan struct{})
	go func() { e.gw.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitFor):
		t.Fatal("Close hangs on a session whose held input is full")
	}
}

const numbered = len("line 000000\r\n")

// fillUntilBlocked writes numbered lines until the socket stops taking them,
// which shows that the gateway has stopped reading it, and returns how many
// whole lines were written.
func (p *player) fillUntilBlocked() int {
	p.t.Helper()
	written := 0
	var chunk strings.Builder
	for {
		chunk.Reset()
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&chunk, "line %06d\r\n", written+i)
		}
		p.conn.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := io.WriteString(p.conn, chunk.String())
		written += n / numbered
		if rest := n % numbered; rest != 0 {
			// Finish the partial line once the gateway reads again.
			p.conn.SetWriteDeadline(time.Time{})
			go io.WriteString(p.conn, chunk.String()[n:n+numbered-rest])
			written++
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				p.t.Fatal(err)
			}
			return written
		}
		if written > 10_000_000 {
			p.t.Fatal("the gateway never stopped reading: held input is not bounded")
		}
	}
}

// TestMegabytePaste: a player pastes a megabyte of lines while another
// chats; every byte arrives, in order, and the other player is answered
// throughout.
func TestMegabytePaste(t *testing.T) {
	e := newEnv(t, nil)
	type got struct {
		id    string
		bytes int
		sum   uint32
	}
	totals := make(chan got, 2)
	e.backend(func(s *backend.Session) {
		var n int
		var sum uint32
		for {
			l, err := s.ReadLine()
			if err != nil || l == "done" {
				totals <- got{s.ID(), n, sum}
				return
			}
			if strings.HasPrefix(l, "ping") {
				fmt.Fprintf(s, "pong %s\n", l)
				continue
			}
			n += len(l) + 1
			for i := 0; i < len(l); i++ {
				sum = sum*31 + uint32(l[i])
			}
			sum = sum*31 + '\n'
		}
	})
	paster, chatter := e.dial(), e.dial()
	var paste strings.Builder
	var want uint32
	for paste.Len() < 1<<20 {
		line := fmt.Sprintf("%07d %s", paste.Len(), strings.Repeat("abcdefgh", 120))
		paste.WriteString(line + "\r\n")
		for i := 0; i < len(line); i++ {
			want = want*31 + uint32(line[i])
		}
		want = want*31 + '\n'
	}
	wantBytes := len(strings.ReplaceAll(paste.String(), "\r\n", "\n"))
	pasted := make(chan error, 1)
	go func() {
		paster.conn.SetWriteDeadline(time.Now().Add(waitFor))
		_, err := io.WriteString(paster.conn, paste.String()+"done\r\n")
		pasted <- err
	}()
	for i := 0; i < 20; i++ {
		chatter.send(fmt.Sprintf("ping %d\r\n", i))
		chatter.expect(fmt.Sprintf("pong ping %d", i))
	}
	if err := <-pasted; err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-totals:
		if g.bytes != wantBytes || g.sum != want {
			t.Fatalf("the backend got %d bytes (checksum %x), want %d (%x)", g.bytes, g.sum, wantBytes, want)
		}
	case <-time.After(waitFor):
		t.Fatal("the paste never arrived whole")
	}
}

// TestIdleSessionGoroutines: an idle held session costs the gateway no
// goroutine. Its player's reader parks the socket with the server and
// returns, no writer runs once its output is written, and its stream's
// reader stops at the backend's Parked. Tens of thousands of held sessions
// make each goroutine count. A parked player who types gets a reader
// again and is heard, and the game's answer wakes the parked stream.
func TestIdleSessionGoroutines(t *testing.T) {
	e := newEnv(t, nil)
	ch := make(chan string, 16)
	sessions := make(chan *backend.Session, 16)
	e.backend(func(s *backend.Session) {
		sessions <- s
		s.Write([]byte("hello\n"))
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			ch <- l
			fmt.Fprintf(s, "got %s\n", l)
		}
	})
	e.waitLog("gateway: backend linked")
	const players = 5
	var ps []*player
	for range players {
		p := e.dial()
		p.expect("hello")
		p.send("hi\r\n")
		recv(t, ch)
		p.expect("got hi")
		ps = append(ps, p)
	}
	waitIdle(t)
	for i, p := range ps {
		line := fmt.Sprintf("again %d", i)
		p.send(line + "\r\n")
		if got := recv(t, ch); got != line {
			t.Fatalf("a parked player typed %q, the game got %q", line, got)
		}
		p.expect("got " + line)
	}
	waitIdle(t)
	// The game speaks first: the write wakes the stream.
	for range players {
		(<-sessions).Write([]byte("news\n"))
	}
	for _, p := range ps {
		p.expect("news")
	}
	waitIdle(t)
}

// goroutines counts the running goroutines in the gateway's function fn.
func goroutines(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "holdfast/gateway."+fn+"(")
}

// waitIdle waits until no session has a goroutine: no writer, no reader
// of a player's socket, no reader of a stream.
func waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		writers, readers, streams := goroutines("(*session).writePlayer"), goroutines("(*session).readPlayer")+goroutines("(*session).readOn"), goroutines("(*session).readStream")
		if writers+readers+streams == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writers, %d readers and %d stream readers still run for idle players", writers, readers, streams)
		}
		time.Sleep(5 * time.Millisecond) // writers end once their queues are empty, readers once they have read all
	}
}

// TestBroadcastParked: a line the game broadcasts reaches every idle
// player without waking any stream's reader (one frame on the link for
// all of them), and a player whose stream is busy gets it there, after the
// output written before it.
func TestBroadcastParked(t *testing.T) {
	e := newEnv(t, nil)
	var mu sync.Mutex
	var all []*backend.Session
	var l *backend.Listener
	l = e.backend(func(s *backend.Session) {
		mu.Lock()
		all = append(all, s)
		mu.Unlock()
		s.Write([]byte("hello\n"))
		for {
			line, err := s.ReadLine()
			if err != nil {
				return
			}
			fmt.Fprintf(s, "got %s\n", line)
			mu.Lock()
			to := slices.Clone(all)
			mu.Unlock()
			l.Broadcast(to, []byte("after "+line+"\n"))
		}
	})
	e.waitLog("gateway: backend linked")
	const players = 5
	var ps []*player
	for range players {
		p := e.dial()
		p.expect("hello")
		ps = append(ps, p)
	}
	waitIdle(t)
	mu.Lock()
	to := slices.Clone(all)
	mu.Unlock()
	if err := l.Broadcast(to, []byte("news \xff\n")); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.expect("news \xff\xff\r\n") // telnet: IAC doubled, CR LF
	}
	if n := goroutines("(*session).readStream"); n != 0 {
		t.Errorf("the broadcast woke %d stream readers", n)
	}
	waitIdle(t)
	ps[0].send("hi\r\n")
	ps[0].expect("got hi")
	ps[0].expect("after hi")
	for _, p := range ps[1:] {
		p.expect("after hi")
	}
}

// TestPasteBeforeAttach: a raw client pastes more than the held-input
// bound before the gateway has attached its session (it is still waiting
// for telnet answers that never come). The bound must not stop the
// session from being attached; every byte arrives.
func TestPasteBeforeAttach(t *testing.T) {
	e := newEnv(t, &gateway.Server{MaxHeldInput: 4 << 10})
	got := make(chan int, 1)
	e.backend(func(s *backend.Session) {
		n := 0
		for {
			l, err := s.ReadLine()
			if err != nil || l == "done" {
				got <- n
				return
			}
			n += len(l) + 1
		}
	})
	e.waitLog("gateway: backend linked") // so that only the session's own attach can attach it
	p := e.dial()
	line := strings.Repeat("x", 99) + "\r\n"
	paste := strings.Repeat(line, 1000) // 100 KB: 25 times the bound
	go func() {
		p.conn.SetWriteDeadline(time.Now().Add(waitFor))
		io.WriteString(p.conn, paste+"done\r\n")
	}()
	select {
	case n := <-got:
		if want := 1000 * 100; n != want {
			t.Fatalf("the backend got %d bytes, want %d", n, want)
		}
	case <-time.After(waitFor):
		t.Fatal("the session was never attached: the paste filled held input before the negotiation ended")
	}
}

// TestLeavingWithFullHeldInput: a player fills held input while no backend
// runs, so the gateway stops reading them, and then disconnects. The
// session must end then, not when a backend next drains it: until it ends
// it counts toward the limits.
func TestLeavingWithFullHeldInput(t *testing.T) {
	e := newEnv(t, &gateway.Server{MaxHeldInput: 4 << 10})
	p := e.dial()
	p.expect("The game is not running right now")
	p.conn.SetWriteDeadline(time.Now().Add(waitFor))
	// 100 KB: past the bound, and within what the kernel buffers, so that
	// the FIN reaches the gateway behind the unread input.
	if _, err := io.WriteString(p.conn, strings.Repeat(strings.Repeat("y", 98)+"\r\n", 1000)); err != nil {
		t.Fatal(err)
	}
	p.conn.Close()
	e.waitLog("gateway: player disconnected")
	for deadline := time.Now().Add(waitFor); len(e.gw.Sessions()) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions held after the player left", len(e.gw.Sessions()))
		}
		time.Sleep(5 * time.Millisecond) // the session is forgotten once its socket is closed
	}
}
