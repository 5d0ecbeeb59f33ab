package bridge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"holdfast/backend"
	"holdfast/gateway/telnet"
)

// TestHandover: a deploy moves the connection to the game with the
// player: the game sees no disconnect, no new connection, and the state of
// both telnet sides goes on, input and output included.
func TestHandover(t *testing.T) {
	addr := fmt.Sprintf("@holdfast-bridge-test-%d", rand.Uint64())
	g := startGame(t)
	a := newBridge(t, g.addr)
	a.HandoverAddr = addr
	a.startHandover()
	waitHandoverListening(t, a)
	p := newPlayer(t, "s1", mudlet)
	p.in <- gmcpMsg{"Core.Hello", `{"client":"Mudlet"}`}
	a.Handle(p)
	gc := g.accept()
	gc.send(iac, telnet.DO, 24, iac, telnet.WILL, 201, iac, telnet.DO, 31)
	gc.sendText("Welcome!\r\n")
	gc.send(sbytes(24, 1)...)
	gc.waitEvent(`SB 24 "\x00MUDLET"`)
	gc.waitEvent(`SB 31 "\x00x\x00("`)
	gc.waitEvent(`SB 201 "Core.Hello {\"client\":\"Mudlet\"}"`)
	p.waitOutput("Welcome!")
	gc.sendText("Password: ")
	gc.send(iac, telnet.WILL, 1, iac, telnet.GA)
	p.waitEvent("echo off")

	b := newBridge(t, g.addr)
	b.HandoverAddr = addr
	if err := b.TakeOver(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The gateway releases the session on the old bridge, and opens it on
	// the new one.
	p.detach()
	p.waitEvent("closed")
	resized := mudlet
	resized.Width = 90 // while the session moved
	q := newPlayer(t, "s1", resized)
	q.handedOver = true
	b.Handle(q)
	gc.waitEvent(`SB 31 "\x00Z\x00("`)

	q.typeLine("secret")
	gc.waitText("secret\n")
	gc.send(iac, telnet.WONT, 1)
	q.waitEvent("echo on") // the echo state came over: WONT changes it
	gc.send(sbytes(24, 1)...)
	gc.waitEvent(`SB 24 "\x00XTERM-256COLOR"`) // the MTTS cycle goes on
	gc.sendText("Hello again.\r\n")
	q.waitOutput("Hello again.")
	q.in <- gmcpMsg{"Char.Login", "{}"}
	gc.waitEvent(`SB 201 "Char.Login {}"`) // GMCP stayed on
	gc.mu.Lock()
	eof := gc.eof
	gc.mu.Unlock()
	if eof {
		t.Fatal("the game saw its connection close")
	}
	select {
	case c := <-g.conns:
		t.Fatalf("the game got a new connection from %v", c.c.RemoteAddr())
	default:
	}
	if strings.Contains(q.output(), DefaultNotice) {
		t.Errorf("the player was told the game is restarting: %q", q.output())
	}

	// The old bridge gone, the new one takes successors of its own.
	a.Close()
	c := newBridge(t, g.addr)
	c.HandoverAddr = addr
	waitListening(t, b)
	if err := c.TakeOver(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	succ := b.succ
	b.mu.Unlock()
	if succ == nil {
		t.Fatal("the new bridge did not take a successor")
	}
}

// waitListening waits until b listens for a successor: a successor's
// listener comes up once its predecessor has gone.
func waitListening(t *testing.T, b *Bridge) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		b.mu.Lock()
		ln := b.hln
		b.mu.Unlock()
		if ln != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bridge does not listen on %s", b.HandoverAddr)
		}
		time.Sleep(10 * time.Millisecond) // polling for a listener that comes up by itself
	}
}

// TestRecordCarriesEverything: every field of a record, of the negotiator
// and of the decoder survives the trip; a field added and not carried fails
// here.
func TestRecordCarriesEverything(t *testing.T) {
	n := negotiator{mssp: true, ttypes: 2, environ: true, factsBy: time.Now().Round(0), ttypeAsked: 1, charsetAsked: []byte(";UTF-8")}
	n.us.set(24, true)
	n.him.set(201, true)
	d := decoder{st: decSB, back: decCR, verb: telnet.DO, opt: 201, sb: []byte("Core"), truncated: true}
	neg, err := n.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r := record{ID: "s1", Conn: true, Neg: neg, Dec: dec, Out: []byte{iac, telnet.WILL, 24}, Held: []byte("look\r\n"),
		GMCP:     []heldGMCP{{At: 6, Msg: []byte("Char.Login {}")}},
		InputEnd: 42, Text: []byte("You see"), Hello: [][]byte{[]byte("Core.Hello {}")}, Flowing: true, EchoOff: true}
	nonZero(t, r, "Version")
	nonZero(t, n, "facts") // the facts come from the gateway
	nonZero(t, d, "out")   // empty between reads
	p, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var r2 record
	if err := r2.UnmarshalBinary(p); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, r2) {
		t.Fatalf("record %+v came back %+v", r, r2)
	}
	var n2 negotiator
	var d2 decoder
	if err := n2.UnmarshalBinary(r2.Neg); err != nil {
		t.Fatal(err)
	}
	if err := d2.UnmarshalBinary(r2.Dec); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(n, n2) || !reflect.DeepEqual(d, d2) {
		t.Fatalf("negotiator %+v came back %+v; decoder %+v came back %+v", n, n2, d, d2)
	}
	p[len(p)/2] ^= 0xff
	var r3 record
	if err := r3.UnmarshalBinary(p[:len(p)-3]); err == nil {
		t.Error("a cut record was read")
	}
}

// nonZero fails for a field of v left at its zero value, but those named.
func nonZero(t *testing.T, v any, except ...string) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		name := rv.Type().Field(i).Name
		if rv.Field(i).IsZero() && !contains(except, name) {
			t.Errorf("%T.%s is zero in the test: set it, so that the trip is tested", v, name)
		}
	}
}

// TestHandoverHeldInput: a session that leaves while the game is down, its
// held input at the bound, goes to the successor with every byte of it, and
// the successor sends it to the game when the game is back.
func TestHandoverHeldInput(t *testing.T) {
	addr := fmt.Sprintf("@holdfast-bridge-test-%d", rand.Uint64())
	g := startGame(t)
	g.stop()
	a := newBridge(t, g.addr)
	a.HandoverAddr = addr
	a.MaxHeld = 16
	a.startHandover()
	waitHandoverListening(t, a)
	p := newPlayer(t, "s1", mudlet)
	a.Handle(p)
	p.waitOutput(DefaultNotice)
	var want strings.Builder
	for i := range 6 {
		line := fmt.Sprintf("line %d", i)
		want.WriteString(line + "\n")
		p.typeLine(line)
	}
	p.waitFor("the reader to stop at the bound", func() bool { return len(p.in) > 0 })

	b := newBridge(t, g.addr)
	b.HandoverAddr = addr
	if err := b.TakeOver(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.detach()
	p.waitEvent("closed")
	q := newPlayer(t, "s1", mudlet)
	q.handedOver = true
	b.Handle(q)
	q.waitOutput(DefaultNotice) // the game is still down
	g.restart()
	gc := g.accept()
	gc.sendText("Welcome!\r\n")
	gc.waitText(want.String())
}

// TestHandoverSkipsReplayedInput: input the old bridge passed on to the
// game, which the gateway gives the successor again (the old bridge was
// not done with it when the session left), reaches the game once.
func TestHandoverSkipsReplayedInput(t *testing.T) {
	addr := fmt.Sprintf("@holdfast-bridge-test-%d", rand.Uint64())
	g := startGame(t)
	a := newBridge(t, g.addr)
	a.HandoverAddr = addr
	a.startHandover()
	waitHandoverListening(t, a)
	p := newPlayer(t, "s1", mudlet)
	p.offset = 100
	a.Handle(p)
	gc := g.accept()
	gc.sendText("Welcome!\r\n")
	p.typeLine("look")
	gc.waitText("look\n")

	b := newBridge(t, g.addr)
	b.HandoverAddr = addr
	if err := b.TakeOver(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.detach()
	p.waitEvent("closed")
	q := newPlayer(t, "s1", mudlet)
	q.handedOver, q.offset = true, 100 // the gateway starts where it had the acknowledgement
	q.typeLine("look")                 // given again
	q.typeLine("north")
	b.Handle(q)
	gc.waitText("north\n")
	if got := gc.gotText(); got != "look\nnorth\n" {
		t.Fatalf("the game got %q, want each line once", got)
	}
}

// TestHandoverLongDeploy: a deploy whose sessions come over slowly, some
// after handoverWait, still hands every one over: sending a record does
// not end the wait for the successor's end.
func TestHandoverLongDeploy(t *testing.T) {
	was := handoverWait
	t.Cleanup(func() { handoverWait = was }) // after the bridges', which run first
	handoverWait = 300 * time.Millisecond
	addr := fmt.Sprintf("@holdfast-bridge-test-%d", rand.Uint64())
	g := startGame(t)
	a := newBridge(t, g.addr)
	a.HandoverAddr = addr
	a.startHandover()
	waitHandoverListening(t, a)
	var players []*fakePlayer
	var conns []*gameConn
	for i := range 2 {
		p := newPlayer(t, fmt.Sprint(i), mudlet)
		a.Handle(p)
		gc := g.accept()
		gc.sendText("Welcome!\r\n")
		p.waitOutput("Welcome!")
		players, conns = append(players, p), append(conns, gc)
	}
	b := newBridge(t, g.addr)
	b.HandoverAddr = addr
	if err := b.TakeOver(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, p := range players {
		p.detach()
		p.waitEvent("closed")
		q := newPlayer(t, p.id, mudlet)
		q.handedOver = true
		b.Handle(q)
		q.typeLine(fmt.Sprint("hello ", i))
		conns[i].waitText(fmt.Sprint("hello ", i, "\n"))
		if i == 0 {
			time.Sleep(2 * handoverWait) // a slow deploy: past any deadline a record set
		}
	}
}

// waitHandoverListening waits until b listens for a successor: it starts
// listening on a goroutine of its own, and a successor that came first
// would find nobody to take over from.
func waitHandoverListening(t *testing.T, b *Bridge) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		ln := b.hln
		b.mu.Unlock()
		if ln != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the bridge never listened for a successor")
		}
		time.Sleep(time.Millisecond) // polling a condition, with the deadline above
	}
}

// TestHandoverLateFacts: a deploy while the game's TTYPE question waits
// for a new client's late answers: the question waits on in the
// successor, and is answered from the answers when the gateway gives
// them there, not as unknown at the successor's first look at the facts.
func TestHandoverLateFacts(t *testing.T) {
	late := lateFactsWait
	lateFactsWait = time.Minute // longer than the test waits
	t.Cleanup(func() { lateFactsWait = late })
	addr := fmt.Sprintf("@holdfast-bridge-test-%d", rand.Uint64())
	g := startGame(t)
	a := newBridge(t, g.addr)
	a.HandoverAddr = addr
	a.GreetWait = time.Minute
	a.startHandover()
	waitHandoverListening(t, a)
	nothing := backend.Facts{ClientAddr: "203.0.113.7:50123"}
	p := newPlayer(t, "s1", nothing)
	a.Handle(p)
	gc := g.accept()
	gc.send(iac, telnet.DO, 24)
	gc.sendText("Welcome!\r\n")
	gc.send(sbytes(24, ttypeSEND)...)
	waitUntil(t, "the question to wait", func() bool { return askedTTYPE(a) })

	b := newBridge(t, g.addr)
	b.HandoverAddr = addr
	b.GreetWait = time.Minute
	if err := b.TakeOver(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.detach()
	p.waitEvent("closed")
	q := newPlayer(t, "s1", nothing)
	q.handedOver = true
	b.Handle(q)
	waitUntil(t, "the question to wait in the successor", func() bool { return askedTTYPE(b) })
	q.in <- mudlet // the client's late answers
	gc.waitEvent(`SB 24 "\x00MUDLET"`)
	gc.mu.Lock()
	defer gc.mu.Unlock()
	for _, e := range gc.events {
		if strings.HasPrefix(e, "SB 24") && e != `SB 24 "\x00MUDLET"` {
			t.Errorf("the game's question was answered %q too", e)
		}
	}
}

// waitUntil polls cond until it holds, for waitFor at most.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, waitFor)
		}
		time.Sleep(time.Millisecond) // polling state that tells no one when it changes
	}
}

// askedTTYPE reports whether a connection of b's has a TTYPE question
// waiting for the client's facts.
func askedTTYPE(b *Bridge) bool {
	b.mu.Lock()
	var ss []*session
	for s := range b.sessions {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	for _, s := range ss {
		s.mu.Lock()
		u := s.cur
		s.mu.Unlock()
		if u == nil {
			continue
		}
		u.mu.Lock()
		asked := u.neg.ttypeAsked > 0
		u.mu.Unlock()
		if asked {
			return true
		}
	}
	return false
}
