package backend

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"holdfast/epmd"
	"holdfast/link"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 10 * time.Second

var cookie = []byte("backend-test")

// fakeGateway is the gateway's side of the link, spoken frame by frame.
type fakeGateway struct {
	t        *testing.T
	mux      *link.Mux
	ctrl     *link.Stream
	cfr      link.Reader
	instance string // the backend's, from the handshake
}

// setup starts a registry and a Listener, and links a fake gateway to it.
func setup(t *testing.T) (*Listener, *fakeGateway) {
	t.Helper()
	return setupWith(t, Config{})
}

// setupWith is setup with cfg's other settings.
func setupWith(t *testing.T, cfg Config) (*Listener, *fakeGateway) {
	t.Helper()
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := &epmd.Server{}
	done := make(chan struct{})
	go func() { reg.Serve(rl); close(done) }()
	t.Cleanup(func() { reg.Close(); <-done })

	cfg.EPMD, cfg.Cookie, cfg.Logger = rl.Addr().String(), cookie, zaptest.NewLogger(t)
	l, err := Listen(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	node, err := (&epmd.Client{Addr: rl.Addr().String()}).Lookup(context.Background(), DefaultName)
	if err != nil || int(node.Port) != l.Addr().(*net.TCPAddr).Port {
		t.Fatalf("registration: %+v %v", node, err)
	}
	return l, linkGateway(t, l)
}

// linkGateway links another fake gateway to l.
func linkGateway(t *testing.T, l *Listener) *fakeGateway {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, inst, err := link.GatewayHandshake(c, cookie)
	if err != nil {
		t.Fatal(err)
	}
	if inst == "" {
		t.Fatal("the backend named no instance in the handshake")
	}
	mux := link.Client(sc, nil, zaptest.NewLogger(t))
	t.Cleanup(func() { mux.Close() })
	ctrl, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	link.WriteFrame(ctrl, link.FrameControl, nil)
	g := &fakeGateway{t: t, mux: mux, ctrl: ctrl, cfr: link.Reader{R: ctrl}, instance: inst}
	// The backend says what it can do before anything else.
	if typ, p := g.control(); typ != link.FrameFeatures {
		t.Fatalf("the control stream began with %v, want Features", typ)
	} else if f, err := link.ParseFeatures(p); err != nil || f&link.FeatureHold == 0 {
		t.Fatalf("features %v %v: want Hold", f, err)
	}
	return g
}

// control reads the next frame on the control stream.
func (g *fakeGateway) control() (link.FrameType, []byte) {
	g.t.Helper()
	return frame(g.t, &g.cfr)
}

// open starts a session and returns its stream and the Session Accept gave.
func (g *fakeGateway) open(l *Listener, o link.Open) (*link.Stream, *Session) {
	g.t.Helper()
	st, err := g.mux.OpenStream()
	if err != nil {
		g.t.Fatal(err)
	}
	if err := link.WriteFrame(st, link.FrameOpen, o.Append(nil)); err != nil {
		g.t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		g.t.Fatal(err)
	}
	return st, s
}

// frame reads the next frame the backend sent on st.
func frame(t *testing.T, fr *link.Reader) (link.FrameType, []byte) {
	t.Helper()
	fr.R.(*link.Stream).SetReadDeadline(time.Now().Add(waitFor))
	typ, _, err := fr.Next()
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	p, err := fr.Payload()
	if err != nil {
		t.Fatal(err)
	}
	return typ, p
}

// readLine reads a line from s and fails the test unless it is want.
func readLine(t *testing.T, s *Session, want string) {
	t.Helper()
	if line, err := s.ReadLine(); line != want || err != nil {
		t.Fatalf("line %q %v, want %q", line, err, want)
	}
}

// eventually waits until cond holds, polling it, and fails the test with
// what it waited for past waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition, with the deadline above
	}
}

// TestReadLineAcknowledgesWholeLines: a partial line is never acknowledged,
// and acknowledgements count from the offset the gateway gave.
func TestReadLineAcknowledgesWholeLines(t *testing.T) {
	l, g := setup(t)
	st, s := g.open(l, link.Open{ID: "7", Resumed: 2, Offset: 100, Facts: link.Facts{ClientAddr: "192.0.2.1:4000", Terminal: "ANSI"}})
	if s.ID() != "7" || s.Resumed() != 2 || s.Facts().Terminal != "ANSI" || s.RemoteAddr().String() != "192.0.2.1:4000" {
		t.Fatalf("session %s resumed %d facts %+v addr %v", s.ID(), s.Resumed(), s.Facts(), s.RemoteAddr())
	}
	link.WriteFrame(st, link.FrameInput, []byte("look\nno"))
	line, err := s.ReadLine()
	if err != nil || line != "look" {
		t.Fatalf("ReadLine = %q %v", line, err)
	}
	got := make(chan string, 1)
	go func() { l, _ := s.ReadLine(); got <- l }()
	// Blocking for the rest of "north" acknowledges "look\n" only.
	fr := link.Reader{R: st}
	typ, p := frame(t, &fr)
	off, _ := link.ParseAck(p)
	if typ != link.FrameAck || off != 105 {
		t.Fatalf("frame %v offset %d, want Ack 105", typ, off)
	}
	link.WriteFrame(st, link.FrameInput, []byte("rth\n"))
	if l := <-got; l != "north" {
		t.Fatalf("second line %q", l)
	}
	// Output goes out first, then the acknowledgement of what caused it,
	// once the application is back for more: a write is no sign that it
	// is done with the line (another goroutine may write).
	io.WriteString(s, "You go north.\n")
	if typ, p := frame(t, &fr); typ != link.FrameOutput || string(p) != "You go north.\n" {
		t.Fatalf("frame %v %q, want the output", typ, p)
	}
	go s.ReadLine()
	if typ, p := frame(t, &fr); typ != link.FrameAck || string(p) != string(link.AppendAck(nil, 111)) {
		t.Fatalf("frame %v %v, want Ack 111", typ, p)
	}
	s.Close()
	if typ, _ := frame(t, &fr); typ != link.FrameEnd {
		t.Fatalf("Close sent frame %v, want End", typ)
	}
}

func TestLongLinesArriveInPieces(t *testing.T) {
	l, g := setup(t)
	st, s := g.open(l, link.Open{ID: "1"})
	long := strings.Repeat("x", MaxLine+10)
	go writeChunks(st, long+"\n")
	a, err := s.ReadLine()
	b, err2 := s.ReadLine()
	if err != nil || err2 != nil || len(a) != MaxLine || a+b != long {
		t.Fatalf("pieces of %d and %d bytes (%v %v), want %d then the rest", len(a), len(b), err, err2, MaxLine)
	}
}

func writeChunks(st *link.Stream, s string) {
	for len(s) > 0 {
		n := min(len(s), link.MaxChunk)
		link.WriteFrame(st, link.FrameInput, []byte(s[:n]))
		s = s[n:]
	}
}

func TestHangupIsEOF(t *testing.T) {
	l, g := setup(t)
	st, s := g.open(l, link.Open{ID: "1"})
	link.WriteFrame(st, link.FrameInput, []byte("bye"))
	link.WriteFrame(st, link.FrameHangup, nil)
	buf := make([]byte, 10)
	n, err := s.Read(buf)
	if string(buf[:n]) != "bye" || err != nil {
		t.Fatalf("Read = %q %v", buf[:n], err)
	}
	if _, err := s.Read(buf); err != io.EOF {
		t.Fatalf("after Hangup: %v, want io.EOF", err)
	}
	s.Close()
	fr := link.Reader{R: st}
	// The player has gone: Close acknowledges, and sends no End.
	for {
		st.SetReadDeadline(time.Now().Add(waitFor))
		typ, _, err := fr.Next()
		if err == io.EOF {
			break
		}
		if err != nil || typ == link.FrameEnd {
			t.Fatalf("after a hangup Close sent %v %v", typ, err)
		}
	}
}

func TestReadDeadline(t *testing.T) {
	l, g := setup(t)
	st, s := g.open(l, link.Open{ID: "1"})
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := s.ReadLine()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadLine past its deadline: %v, want a timeout", err)
	}
	// A timeout is not the end: the session reads on.
	s.SetReadDeadline(time.Time{})
	link.WriteFrame(st, link.FrameInput, []byte("still here\n"))
	if line, err := s.ReadLine(); err != nil || line != "still here" {
		t.Fatalf("after the timeout: %q %v", line, err)
	}
}

// TestShutdown: the gateway hears Goodbye, reads end with ErrDetached, and
// the session is released without ending the player's session.
func TestShutdown(t *testing.T) {
	l, g := setup(t)
	st, s := g.open(l, link.Open{ID: "1"})
	errs := make(chan error, 2)
	go func() {
		_, err := s.ReadLine()
		errs <- err
		// Detached, the application still finishes what it is writing.
		_, err = io.WriteString(s, "finishing\n")
		errs <- err
		s.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, ErrDetached) {
		t.Fatalf("read during shutdown: %v, want ErrDetached", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("write after the detach: %v", err)
	}
	if typ, _ := g.control(); typ != link.FrameGoodbye {
		t.Fatalf("control stream got frame %v, want Goodbye", typ)
	}
	fr := link.Reader{R: st}
	var output string
	for {
		st.SetReadDeadline(time.Now().Add(waitFor))
		typ, _, err := fr.Next()
		if err != nil {
			break
		}
		if typ == link.FrameEnd {
			t.Fatal("a detached session ended the player's session")
		}
		if typ == link.FrameOutput {
			p, _ := fr.Payload()
			output += string(p)
		}
	}
	if output != "finishing\n" {
		t.Fatalf("output during shutdown: %q", output)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Shutdown: %v", err)
	}
}

func TestWrongCookieRefused(t *testing.T) {
	l, _ := setup(t)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := link.GatewayHandshake(c, []byte("not it")); !errors.Is(err, link.ErrAuth) {
		t.Fatalf("handshake with the wrong cookie: %v, want ErrAuth", err)
	}
}

// TestInstance: every link to one Listener learns the same instance name in
// its handshake, and another Listener has another, which proves it
// started later: the gateways move players to it, never back.
func TestInstance(t *testing.T) {
	l, g1 := setup(t)
	g2 := linkGateway(t, l)
	if g1.instance != g2.instance {
		t.Fatalf("two links to one backend: instances %q and %q", g1.instance, g2.instance)
	}
	_, g3 := setup(t)
	if g3.instance == g1.instance {
		t.Fatalf("two backends share the instance %q", g1.instance)
	}
	if !link.Newer(g3.instance, g1.instance) || link.Newer(g1.instance, g3.instance) {
		t.Fatalf("the backend started second (%q) is not proven newer than the first (%q)", g3.instance, g1.instance)
	}
}
