package backend

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/link"
)

// TestClaimFromAnotherGateway: a kept session goes to the gateway that
// proves one of its tokens, with the output the first had not acknowledged
// sent again and the rest never; the first gateway hears Taken; the game
// notices nothing. A wrong token, or a session not opened to be kept,
// gets End and changes nothing.
func TestClaimFromAnotherGateway(t *testing.T) {
	l, g1 := setup(t)
	st1, s := g1.open(l, link.Open{ID: "k1", Keep: true, Output: 1000, State: []byte("ada")})
	in := lines(s)
	h := sha256.Sum256([]byte("k1.secret"))
	link.WriteFrame(st1, link.FrameTokens, link.AppendTokens(nil, [][32]byte{h}))
	link.WriteFrame(st1, link.FrameInput, []byte("one\n"))
	want(t, in, "one")
	io.WriteString(s, "seen\n")
	link.WriteFrame(st1, link.FrameOutAck, link.AppendAck(nil, 1000+5)) // "seen\n": the page has it
	io.WriteString(s, "not acknowledged\n")
	l.Broadcast([]*Session{s}, []byte("a broadcast\n"))
	fr1 := link.Reader{R: st1}
	var out string
	for out != "seen\nnot acknowledged\na broadcast\n" && len(out) < 100 {
		if typ, p := frame(t, &fr1); typ == link.FrameOutput {
			out += string(p)
		}
	}

	g2 := linkGateway(t, l)
	claim := func(o link.Open) *link.Reader {
		st, err := g2.mux.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		link.WriteFrame(st, link.FrameOpen, o.Append(nil))
		return &link.Reader{R: st}
	}
	for _, o := range []link.Open{
		{ID: "k1", Keep: true, Claim: "k1.wrong"},
		{ID: "nobody", Keep: true, Claim: "k1.secret"},
	} {
		if typ, _ := frame(t, claim(o)); typ != link.FrameEnd {
			t.Fatalf("claim %+v answered %v, want End", o, typ)
		}
	}
	noAccept(t, l)

	// The page says it has what came before the broadcast: that is all
	// that comes again.
	fr2 := claim(link.Open{ID: "k1", Keep: true, Offset: 0, Output: 1005 + uint64(len("not acknowledged\n")), Claim: "k1.secret"})
	if typ, p := frame(t, fr2); typ != link.FrameState || string(p) != "ada" {
		t.Fatalf("first frame of the claim: %v %q, want the state", typ, p)
	}
	typ, p := frame(t, fr2)
	if off, _ := link.ParseAck(p); typ != link.FrameOutAck || off != 1022 {
		t.Fatalf("then %v %d, want OutAck 1022", typ, off)
	}
	var again string
	for again != "a broadcast\n" && len(again) < 100 {
		if typ, p := frame(t, fr2); typ == link.FrameOutput {
			again += string(p)
		}
	}
	if again != "a broadcast\n" {
		t.Fatalf("output sent again: %q", again)
	}
	// The first gateway hears it, after nothing more.
	if out := readUntil(t, &fr1, link.FrameTaken); out != "" {
		t.Fatalf("output on the first stream after the claim: %q", out)
	}
	// The input the new gateway repeats is skipped; the next is read.
	link.WriteFrame(fr2.R.(io.Writer), link.FrameInput, []byte("one\ntwo\n"))
	want(t, in, "two")
	noAccept(t, l)
}

// TestKept: the bound, acknowledgements inside, before and past what is
// kept, and a session not kept.
func TestKept(t *testing.T) {
	k := kept{on: true, off: 10}
	k.add([]byte("hello"))
	k.ack(12)
	if k.off != 12 || string(k.buf) != "llo" {
		t.Fatalf("after ack 12: %d %q", k.off, k.buf)
	}
	k.ack(5) // already forgotten
	if k.off != 12 || k.end() != 15 {
		t.Fatalf("after an old ack: %d..%d", k.off, k.end())
	}
	k.acked(50) // a page's acknowledgement of a line not kept yet
	if k.off != 15 || len(k.buf) != 0 {
		t.Fatalf("after OutAck 50: %d %q", k.off, k.buf)
	}
	k.ack(100) // a count from elsewhere goes on
	if k.off != 100 || len(k.buf) != 0 {
		t.Fatalf("after ack 100: %d %q", k.off, k.buf)
	}
	k.add(make([]byte, link.MaxKept+7))
	if len(k.buf) != link.MaxKept+7 || k.off != 100 {
		t.Fatalf("a little past the bound: %d bytes from %d", len(k.buf), k.off)
	}
	k.add(make([]byte, link.MaxKept/4))
	if len(k.buf) != link.MaxKept || k.off != 107+link.MaxKept/4 || k.end() != 100+link.MaxKept+7+link.MaxKept/4 {
		t.Fatalf("a quarter past the bound: %d bytes from %d", len(k.buf), k.off)
	}
	off := kept{off: 3}
	off.add([]byte("x"))
	if len(off.buf) != 0 || off.end() != 3 {
		t.Fatalf("a session not kept kept %q", off.buf)
	}
	if off.proves("anything") {
		t.Fatal("a session without tokens proved a claim")
	}
}

// TestKeptSessionWaitsLonger: when the gateway's link goes, a session
// that a page may claim elsewhere waits KeptTimeout for it, a telnet
// player's OrphanTimeout.
func TestKeptSessionWaitsLonger(t *testing.T) {
	l, g := setupWith(t, Config{OrphanTimeout: 50 * time.Millisecond, KeptTimeout: time.Minute})
	_, telnetPlayer := g.open(l, link.Open{ID: "t1"})
	_, page := g.open(l, link.Open{ID: "p1", Keep: true})
	tl, pl := lines(telnetPlayer), lines(page)
	g.mux.Close()
	if got := <-tl; !strings.HasPrefix(got, "error: EOF") {
		t.Fatalf("the telnet player's session: %q, want it ended", got)
	}
	if away, ended := page.awayState(); !away || ended {
		t.Fatalf("the page's session: away %v, ended %v; want it waiting", away, ended)
	}
	select {
	case got := <-pl:
		t.Fatalf("the page's session read %q", got)
	default:
	}
}

// TestClaimStowed: a page's session stowed on one gateway, where the
// page acknowledges output without a stream, and claimed through
// another. The first hears it on its control stream (HeldTaken), and
// any Open of the session without a claim from it is answered Taken,
// wherever the session is then: on the claimer's stream, stowed there,
// or waiting after the claimer's link failed. The game notices nothing,
// and the claimer's link, made again, opens it.
func TestClaimStowed(t *testing.T) {
	l, g1 := heldGateway(t)
	st1, s := g1.open(l, link.Open{ID: "k1", Keep: true})
	in := lines(s)
	h := sha256.Sum256([]byte("k1.secret"))
	link.WriteFrame(st1, link.FrameTokens, link.AppendTokens(nil, [][32]byte{h}))
	link.WriteFrame(st1, link.FrameInput, []byte("one\n"))
	want(t, in, "one")
	fr1 := link.Reader{R: st1}
	stow := func(g *fakeGateway, fr *link.Reader) {
		t.Helper()
		link.WriteFrame(g.ctrl, link.FramePark, link.AppendMove(nil, []string{"k1"}))
		readUntil(t, fr, link.FrameParked)
		eventually(t, "k1 parked", func() bool {
			gl, _, _ := s.parkedOn()
			return gl != nil
		})
		if got := stowAnswer(t, g, "k1"); len(got) != 1 || got[0].Park == 0 {
			t.Fatalf("Stowed %+v, want k1 stowed", got)
		}
	}
	stow(g1, &fr1)

	// Stowed, its output comes held, and the page's acknowledgement goes
	// on the control stream (HeldOutAck); one from a gateway that does
	// not have the session is not taken.
	g2 := linkGateway(t, l)
	link.WriteFrame(g2.ctrl, link.FrameFeatures, link.AppendFeatures(nil, link.FeatureMovedParked|link.FeatureHeldFrames))
	io.WriteString(s, "while stowed\n")
	var out string
	for out == "" { // after, perhaps, the acknowledgement of "one" alone
		o, _ := outputAndAck(t, heldFrames(t, g1, "k1"))
		out += o
	}
	if out != "while stowed\n" {
		t.Fatalf("held output %q", out)
	}
	heldOutAck := func(g *fakeGateway, off uint64) {
		t.Helper()
		link.WriteFrame(g.ctrl, link.FrameHeldOutAck, link.AppendHeldOutAck(nil, "k1", off))
		// Answered after it: the HeldOutAck has been read.
		link.WriteFrame(g.ctrl, link.FrameWant, link.AppendMove(nil, []string{"nobody"}))
		controlNaming(t, g, link.FrameUnheld, "nobody")
	}
	heldOutAck(g2, uint64(len("while stowed\n")))
	heldOutAck(g1, uint64(len("while ")))

	// The claim: what the page had not acknowledged comes again.
	fr2 := claimK1(t, g2)
	if typ, _ := frame(t, fr2); typ != link.FrameState {
		t.Fatalf("the claim answered %v, want the state", typ)
	}
	if typ, p := frame(t, fr2); typ != link.FrameOutAck || string(p) != string(link.AppendAck(nil, 6)) {
		t.Fatalf("then %v %x, want OutAck 6", typ, p)
	}
	if out := readUntilOutput(t, fr2); out != "stowed\n" {
		t.Fatalf("sent again: %q, want what the page had not acknowledged", out)
	}
	controlNaming(t, g1, link.FrameHeldTaken, "k1")
	openTaken := func(g *fakeGateway, what string) {
		t.Helper()
		st, err := g.mux.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "k1", Keep: true, Offset: 4}).Append(nil))
		link.WriteFrame(st, link.FrameInput, []byte("stale\n"))
		fr := link.Reader{R: st}
		if typ, _ := frame(t, &fr); typ != link.FrameTaken {
			t.Fatalf("%s: answered %v, want Taken", what, typ)
		}
		if _, _, err := fr.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: after Taken, %v; want the stream's end", what, err)
		}
	}
	openTaken(g1, "an Open sent before the HeldTaken")

	io.WriteString(s, "still here\n")
	if out := readUntilOutput(t, fr2); out != "still here\n" {
		t.Fatalf("on the claim's stream: %q", out)
	}
	link.WriteFrame(fr2.R.(io.Writer), link.FrameInput, []byte("two\n"))
	want(t, in, "two")
	openTaken(g1, "an Open while another gateway's stream has it")
	stow(g2, fr2)
	openTaken(g1, "an Open while another gateway has it stowed")

	g2.mux.Close()
	eventually(t, "k1 waits for a gateway", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.away && s.holder == nil
	})
	openTaken(g1, "an Open once the claimer's link has failed")
	g3 := linkGateway(t, l) // the claimer's link made again
	st3, err := g3.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st3, link.FrameOpen, (&link.Open{ID: "k1", Keep: true, Offset: 8}).Append(nil))
	link.WriteFrame(st3, link.FrameInput, []byte("three\n"))
	want(t, in, "three")
	io.WriteString(s, "back\n")
	if out := readUntilOutput(t, &link.Reader{R: st3}); out != "back\n" {
		t.Fatalf("on the stream of the claimer's new link: %q", out)
	}
	select {
	case got := <-in:
		t.Fatalf("read %q, from a stream answered Taken", got)
	default:
	}
	noAccept(t, l)
}

// stowKept opens a kept session k1, with the token "k1.secret", on g,
// has it read a line, and stows it there.
func stowKept(t *testing.T, l *Listener, g *fakeGateway) (*Session, <-chan string) {
	t.Helper()
	st, s := g.open(l, link.Open{ID: "k1", Keep: true})
	in := lines(s)
	h := sha256.Sum256([]byte("k1.secret"))
	link.WriteFrame(st, link.FrameTokens, link.AppendTokens(nil, [][32]byte{h}))
	link.WriteFrame(st, link.FrameInput, []byte("one\n"))
	want(t, in, "one")
	fr := link.Reader{R: st}
	link.WriteFrame(g.ctrl, link.FramePark, link.AppendMove(nil, []string{"k1"}))
	readUntil(t, &fr, link.FrameParked)
	eventually(t, "k1 parked", func() bool {
		gl, _, _ := s.parkedOn()
		return gl != nil
	})
	if got := stowAnswer(t, g, "k1"); len(got) != 1 || got[0].Park == 0 {
		t.Fatalf("Stowed %+v, want k1 stowed", got)
	}
	return s, in
}

// TestOpenFromAnotherLink: a page's session that one link has, stowed or
// on a stream, opened without a claim on another link while the first
// lives: the same gateway's new process after an upgrade whose Move the
// backend read late, or its link made again before the backend saw the
// old one fail. Nothing claimed it: the new link carries it on.
func TestOpenFromAnotherLink(t *testing.T) {
	for _, stowed := range []bool{true, false} {
		t.Run(map[bool]string{true: "stowed", false: "on a stream"}[stowed], func(t *testing.T) {
			l, g1 := heldGateway(t)
			var in <-chan string
			if stowed {
				_, in = stowKept(t, l, g1)
			} else {
				st, s := g1.open(l, link.Open{ID: "k1", Keep: true})
				in = lines(s)
				link.WriteFrame(st, link.FrameInput, []byte("one\n"))
				want(t, in, "one")
			}
			g2 := linkGateway(t, l)
			st, err := g2.mux.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "k1", Keep: true}).Append(nil))
			link.WriteFrame(st, link.FrameInput, []byte("one\ntwo\n"))
			want(t, in, "two")
			noAccept(t, l)
		})
	}
}

// TestClaimAfterBroadcast: a line broadcast to a page stowed on g1,
// decided while g1's control stream is busy, and a claim through g2 read
// meanwhile: the claim waits for the line to be kept, and sends it again
// to g2; g1 hears of the claim after the line.
func TestClaimAfterBroadcast(t *testing.T) {
	l, g1 := heldGateway(t)
	s, _ := stowKept(t, l, g1)
	s.mu.Lock()
	gl1 := s.holder
	s.mu.Unlock()
	gl1.mu.Lock() // the control stream's writer is busy a moment
	done := make(chan error, 1)
	go func() { done <- l.Broadcast([]*Session{s}, []byte("the line\n")) }()
	eventually(t, "the broadcast decided", func() bool {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		return s.heldSent > 0
	})
	g2 := linkGateway(t, l)
	fr2 := claimK1(t, g2)
	eventually(t, "the claim waits for the broadcast", func() bool {
		if gl1.bcast.TryRLock() { // fails while a writer waits
			gl1.bcast.RUnlock()
			return false
		}
		return true
	})
	gl1.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if typ, _ := frame(t, fr2); typ != link.FrameState {
		t.Fatalf("the claim answered %v, want the state", typ)
	}
	if out := readUntilOutput(t, fr2); out != "the line\n" {
		t.Fatalf("the claimer got %q first, want the line broadcast as it claimed", out)
	}
	var order []link.FrameType
	for len(order) == 0 || order[len(order)-1] != link.FrameHeldTaken {
		typ, _ := g1.control()
		if typ == link.FrameBroadcast || typ == link.FrameHeldTaken {
			order = append(order, typ)
		}
	}
	if !slices.Equal(order, []link.FrameType{link.FrameBroadcast, link.FrameHeldTaken}) {
		t.Fatalf("g1 heard %v, want the line, then the claim", order)
	}
}

// TestHeldOutAckNeverWaits: a HeldOutAck read once the page's session is
// on a stream whose writer waits for a slow page is let go: the control
// stream goes on.
func TestHeldOutAckNeverWaits(t *testing.T) {
	l, g := heldGateway(t)
	st, s := g.open(l, link.Open{ID: "k1", Keep: true})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		io.WriteString(s, strings.Repeat("x", 1<<20)) // past the stream's window
	}()
	t.Cleanup(func() {
		go io.Copy(io.Discard, st) // the page reads at last
		<-wrote
	})
	eventually(t, "the writer waits for the window", func() bool {
		if !s.wmu.TryLock() {
			return true
		}
		s.wmu.Unlock()
		return false
	})
	link.WriteFrame(g.ctrl, link.FrameHeldOutAck, link.AppendHeldOutAck(nil, "k1", 10))
	link.WriteFrame(g.ctrl, link.FrameWant, link.AppendMove(nil, []string{"nobody"}))
	controlNaming(t, g, link.FrameUnheld, "nobody")
}

// TestBroadcastLockOrder: Broadcasts at once, while claims, Stows, Moves
// and Releases take the links' bcast in turn: each Broadcast takes the
// links in the same order, so none waits for ever on another.
func TestBroadcastLockOrder(t *testing.T) {
	l, _ := heldGateway(t)
	linkGateway(t, l)
	l.mu.Lock()
	links := slices.Collect(maps.Keys(l.links))
	l.mu.Unlock()
	var broadcasts, writers sync.WaitGroup
	for range 2 {
		broadcasts.Go(func() {
			for range 3000 {
				l.Broadcast(nil, []byte("x\n"))
			}
		})
	}
	stop := make(chan struct{})
	for _, gl := range links {
		writers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				gl.bcast.Lock() // as a claim, a Stow, a Move or a Release
				gl.bcast.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() {
		broadcasts.Wait()
		close(stop)
		writers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Broadcasts and the links' other users wait on each other")
	}
}

// TestClaimAfterRelease: a deploy's Release of a stowed page that was
// woken (it is released on the stream its Wake opens), then a claim
// through another gateway: the claim carries the session on; the Release
// was the first gateway's, which forgets it.
func TestClaimAfterRelease(t *testing.T) {
	l, g1 := heldGateway(t)
	s, _ := stowKept(t, l, g1)
	link.WriteFrame(g1.ctrl, link.FrameWant, link.AppendMove(nil, []string{"k1"}))
	controlNaming(t, g1, link.FrameWake, "k1")
	link.WriteFrame(g1.ctrl, link.FrameRelease, link.AppendMove(nil, []string{"k1"}))
	eventually(t, "the Release waits for the stream", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.releaseAtAdopt
	})
	g2 := linkGateway(t, l)
	fr2 := claimK1(t, g2)
	if typ, _ := frame(t, fr2); typ != link.FrameState {
		t.Fatalf("the claim answered %v, want the state", typ)
	}
	io.WriteString(s, "still here\n")
	if out := readUntilOutput(t, fr2); out != "still here\n" {
		t.Fatalf("on the claim's stream: %q", out)
	}
	if s.isReleased() {
		t.Fatal("the claim released the session")
	}
}

// TestClaimUnderBroadcasts: a claim of a stowed page while Broadcasts
// that each hold the links for a while (a line to many) overlap without
// a pause: there is always one in progress, and the claim still comes
// through.
func TestClaimUnderBroadcasts(t *testing.T) {
	l, g1 := heldGateway(t)
	s, _ := stowKept(t, l, g1)
	g2 := linkGateway(t, l)
	l.mu.Lock()
	links := slices.SortedFunc(maps.Keys(l.links), func(a, b *gatewayLink) int { return cmp.Compare(a.seq, b.seq) })
	l.mu.Unlock()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan struct{}, 2)
	for range 2 {
		wg.Go(func() {
			for first := true; ; first = false {
				select {
				case <-stop:
					return
				default:
				}
				for _, gl := range links { // as broadcastParked
					gl.bcast.RLock()
				}
				if first {
					started <- struct{}{}
				}
				time.Sleep(time.Millisecond) // the line's work, under the locks
				for _, gl := range links {
					gl.bcast.RUnlock()
				}
			}
		})
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
	<-started
	<-started
	claimK1(t, g2)
	eventually(t, "the claim takes the session", func() bool { return !s.isAway() })
}

// claimK1 claims k1 through g with the token "k1.secret", saying the
// game has its input up to 4, and returns the claim's stream to read.
func claimK1(t *testing.T, g *fakeGateway) *link.Reader {
	t.Helper()
	st, err := g.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(st, link.FrameOpen, (&link.Open{ID: "k1", Keep: true, Offset: 4, Claim: "k1.secret"}).Append(nil))
	return &link.Reader{R: st}
}

// controlNaming reads g's control stream up to a frame of type typ naming
// exactly ids, skipping the others.
func controlNaming(t *testing.T, g *fakeGateway, typ link.FrameType, ids ...string) {
	t.Helper()
	for {
		got, p := g.control()
		if named, _ := link.ParseMove(p); got == typ && slices.Equal(named, ids) {
			return
		}
	}
}
