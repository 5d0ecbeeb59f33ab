package gateway

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// testWait bounds each wait in these tests.
const testWait = 10 * time.Second

// tcpPair returns both ends of a loopback TCP connection, the accepted
// end's send buffer and the dialled end's receive buffer small, so that a
// player who does not read fills them soon.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	client, err = d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server.(*net.TCPConn).SetWriteBuffer(4096)
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// TestSendNow: output to an idle player goes out on the caller's
// goroutine; what the socket does not take at once goes out after it, in
// order, through a writer, while output that comes meanwhile waits its
// turn; a connection that is not a plain socket is left to the writer.
func TestSendNow(t *testing.T) {
	// No registry answers there: the server looks for no backend.
	nowhere, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere.Close()
	srv := &Server{Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), EPMD: nowhere.Addr().String()}
	srv.init()
	t.Cleanup(func() { srv.Close() })

	t.Run("idle player", func(t *testing.T) {
		sc, cc := tcpPair(t)
		s := newSession(srv, "n-1", sc, sc.RemoteAddr(), netip.Addr{})
		if !s.sendNow([]byte("hello\r\n")) {
			t.Fatal("output to an idle player was not written at once")
		}
		if s.out.writing {
			t.Fatal("a writer is left claimed after a whole write")
		}
		got := make([]byte, 7)
		cc.SetReadDeadline(time.Now().Add(testWait))
		if _, err := io.ReadFull(cc, got); err != nil || string(got) != "hello\r\n" {
			t.Fatalf("the player read %q, %v", got, err)
		}
		if s.bytesOut.Load() != 7 {
			t.Fatalf("bytes out %d, want 7", s.bytesOut.Load())
		}
	})

	t.Run("player who does not read", func(t *testing.T) {
		sc, cc := tcpPair(t)
		s := newSession(srv, "n-2", sc, sc.RemoteAddr(), netip.Addr{})
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: more than both buffers
		done := make(chan bool)
		go func() { done <- s.sendNow(big) }()
		select {
		case ok := <-done:
			if !ok {
				t.Fatal("output to an idle player was queued")
			}
		case <-time.After(testWait):
			t.Fatal("sendNow waited for a player who does not read")
		}
		s.sentNowAt.Store(micros() - 1<<20) // no burst: the rest is what waits
		if s.sendNow([]byte("x")) {
			t.Fatal("written at once while the rest of the last output waits")
		}
		if err := s.out.put([]byte("after"), 0); err != nil {
			t.Fatal(err)
		}
		want := append(bytes.Clone(big), "after"...)
		got := make([]byte, len(want))
		cc.SetReadDeadline(time.Now().Add(testWait))
		if _, err := io.ReadFull(cc, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("the player read the output out of order or with bytes missing")
		}
	})

	t.Run("past a write deadline", func(t *testing.T) {
		// The writer sets a deadline for each write and leaves it, and a
		// move's kick sets one in the past: a player idle for longer, or
		// back from a move that failed, is written to at once all the same.
		sc, cc := tcpPair(t)
		s := newSession(srv, "n-4", sc, sc.RemoteAddr(), netip.Addr{})
		sc.SetWriteDeadline(time.Now().Add(-time.Second))
		if n := writeNow(s.conn, []byte("answer\r\n")); n != 8 {
			t.Fatalf("wrote %d of 8 bytes to an empty socket past its write deadline", n)
		}
		got := make([]byte, 8)
		cc.SetReadDeadline(time.Now().Add(testWait))
		if _, err := io.ReadFull(cc, got); err != nil || string(got) != "answer\r\n" {
			t.Fatalf("the player read %q, %v", got, err)
		}
	})

	t.Run("not a plain socket", func(t *testing.T) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		s := newSession(srv, "n-3", a, a.RemoteAddr(), netip.Addr{})
		if s.sendNow([]byte("x")) {
			t.Fatal("written at once to a connection that is not a socket")
		}
	})
}

// TestInBurst: a write within burstGap of the last one is part of a burst,
// on a clock that wraps.
func TestInBurst(t *testing.T) {
	gap := uint32(burstGap / time.Microsecond)
	for _, c := range []struct {
		now, last uint32
		want      bool
	}{
		{1000, 1000, true},
		{1000 + gap - 1, 1000, true},
		{1000 + gap, 1000, false},
		{5, ^uint32(0) - 10, true}, // across the wrap, 16 µs apart
		{gap, ^uint32(0), false},   // across the wrap, gap+1 µs apart
		{1 << 31, 0, false},        // long after
		{0, 0 + gap + 1, false},    // a last write "after" now is a wrap ago
	} {
		if got := inBurst(c.now, c.last); got != c.want {
			t.Errorf("inBurst(%d, %d) = %v, want %v", c.now, c.last, got, c.want)
		}
	}
}
