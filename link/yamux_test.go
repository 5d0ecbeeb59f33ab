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

// keepaliveLink starts a client session on a over Coalesce, with a
// keepalive that asks after 10 ms and waits 100 ms for an answer, and a
// stream whose reader broken wakes. It returns the session, the stream's
// read error, whether broken ran, and the log.
func keepaliveLink(t *testing.T, a net.Conn) (*yamux.Session, <-chan error, <-chan struct{}, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	cfg := YamuxConfig(log)
	cfg.ConnectionWriteTimeout = 100 * time.Millisecond
	var mu sync.Mutex
	var st *yamux.Stream
	broken := make(chan struct{})
	cc := Coalesce(a, func() {
		mu.Lock()
		if st != nil {
			st.SetReadDeadline(time.Now())
		}
		mu.Unlock()
		close(broken)
	}).(*coalescedConn)
	mux, err := yamux.Client(cc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close() })
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
	go keepalive(mux, cc, 10*time.Millisecond, log)
	return mux, read, broken, logs
}

// TestKeepaliveSilentPeer: a peer that reads and says nothing (a process
// that hangs) is dropped: the failure is logged, broken runs, and the
// stream's reader leaves.
func TestKeepaliveSilentPeer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, b)
	mux, read, broken, logs := keepaliveLink(t, a)
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("a stream on a dead link read something")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's reader did not leave after the keepalive failed")
	}
	<-broken
	<-mux.CloseChan()
	if n := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("said nothing").Len(); n != 1 {
		t.Errorf("%d warnings of the peer saying nothing, want 1: %v", n, logs.All())
	}
}

// TestKeepaliveBusyPeer: a peer that sends, but whose answers to pings
// are late (behind what it sends), or that takes in what is sent to it
// and says nothing, is alive; once it stops, the link ends.
func TestKeepaliveBusyPeer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		peer  func(b net.Conn, stop <-chan struct{})
		local func(mux *yamux.Session, stop <-chan struct{})
	}{
		{"it sends", func(b net.Conn, stop <-chan struct{}) {
			go io.Copy(io.Discard, b)
			// The answer to a ping nobody sent: a frame yamux reads
			// and drops.
			frame := []byte{0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 3, 0xe7}
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				b.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := b.Write(frame); err != nil {
					return
				}
			}
		}, nil},
		{"it reads", func(b net.Conn, stop <-chan struct{}) {
			io.Copy(io.Discard, b)
		}, func(mux *yamux.Session, stop <-chan struct{}) {
			// Streams' first windows: the peer never opens more.
			chunk := make([]byte, 64<<10)
			for {
				st, err := mux.OpenStream()
				if err != nil {
					return
				}
				for range 3 {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := st.Write(chunk); err != nil {
						return
					}
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.peer(b, stop)
			}()
			mux, read, _, _ := keepaliveLink(t, a)
			if tc.local != nil {
				go tc.local(mux, stop)
			}
			// A hundred times the quiet a silent peer is allowed.
			select {
			case <-mux.CloseChan():
				t.Fatal("the keepalive ended a link whose peer was busy")
			case <-time.After(time.Second):
			}
			close(stop)
			select {
			case err := <-read:
				if err == nil {
					t.Fatal("a stream on a dead link read something")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the link stayed up after the peer stopped")
			}
			b.Close()
			<-done
		})
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
