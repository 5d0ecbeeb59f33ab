package link

import (
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// closeNoting is a connection whose Close is noted.
type closeNoting struct {
	net.Conn
	note func(string)
}

func (c closeNoting) Close() error {
	c.note("close")
	return c.Conn.Close()
}

// TestBrokenBeforeClose: when yamux closes the connection (its owner or
// yamux itself ended the session), broken runs first, once, though the
// read that fails after runs it too.
func TestBrokenBeforeClose(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	var mu sync.Mutex
	var order []string
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	c := Coalesce(closeNoting{a, note}, func() { note("broken") })
	c.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a read after Close succeeded")
	}
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"broken", "close"}; !slices.Equal(order, want) {
		t.Fatalf("order %q, want %q", order, want)
	}
}

// TestKeepaliveFailure: a peer that stops answering (here, one that reads
// and says nothing) ends the session through yamux's keepalive. The
// failure is logged as a warning, broken runs before the connection
// closes, and a stream reader it wakes leaves at once.
func TestKeepaliveFailure(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := YamuxConfig(zap.New(core))
	cfg.KeepAliveInterval = 10 * time.Millisecond
	cfg.ConnectionWriteTimeout = 100 * time.Millisecond
	var st *yamux.Stream
	var mu sync.Mutex
	brokenAt := make(chan struct{})
	mux, err := yamux.Client(Coalesce(a, func() {
		mu.Lock()
		if st != nil {
			st.SetReadDeadline(time.Now())
		}
		mu.Unlock()
		close(brokenAt)
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	s, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	st = s
	mu.Unlock()
	read := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("a stream on a dead session read something")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's reader did not leave after the keepalive failed")
	}
	select {
	case <-brokenAt:
	default:
		t.Fatal("the reader left without broken")
	}
	<-mux.CloseChan()
	if n := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("keepalive failed").Len(); n != 1 {
		t.Errorf("%d warnings of the keepalive failing, want 1: %v", n, logs.All())
	}
	if !mux.IsClosed() {
		t.Error("the session is not closed")
	}
}

// TestYamuxLogger: yamux's errors are warnings; its other messages, debug.
func TestYamuxLogger(t *testing.T) {
	for _, tc := range []struct {
		in    string
		level zapcore.Level
		msg   string
	}{
		{"[ERR] yamux: keepalive failed: i/o deadline reached", zapcore.WarnLevel, "link: yamux: keepalive failed: i/o deadline reached"},
		{"[ERR] yamux: Invalid protocol version: 9", zapcore.WarnLevel, "link: yamux: Invalid protocol version: 9"},
		{"[WARN] yamux: frame for missing stream: Vsn:0 Type:1", zapcore.DebugLevel, "[WARN] yamux: frame for missing stream: Vsn:0 Type:1"},
		{"", zapcore.DebugLevel, ""},
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		yamuxLogger{zap.New(core)}.Printf("%s", tc.in)
		got := logs.All()
		if len(got) != 1 || got[0].Level != tc.level || got[0].Message != tc.msg {
			t.Errorf("%q: logged %v, want %v %q", tc.in, got, tc.level, tc.msg)
		}
	}
}
