package gateway

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"holdfast/internal/testnet"

	"go.uber.org/zap"
)

// rawConn stands for a connection that came with a PROXY header.
type rawConn struct{ net.Conn }

func (r rawConn) Raw() net.Conn { return r.Conn }

// TestSilentWait: a client on a nearby network gets a few of its
// round trips, not the whole wait, unless the clients that answered
// lately took longer; one whose round trip is unknown, or is a proxy's,
// gets the whole wait.
func TestSilentWait(t *testing.T) {
	_, server := testnet.TCPPair(t)
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	now := time.Now()
	// A loaded machine's loopback round trip may be milliseconds: the
	// bounds leave it room.
	rtt, ok := roundTrip(server)
	if !ok {
		t.Fatal("no round trip on a loopback socket")
	}
	slack := negotiationTrips * rtt
	for _, tc := range []struct {
		name     string
		c        net.Conn
		answers  map[time.Duration]time.Duration // how late, how long ago
		min, max time.Duration
	}{
		{"loopback", server, nil, minNegotiationWait, 5*minNegotiationWait + slack},
		{"loopback, a client answered 30 ms late", server,
			map[time.Duration]time.Duration{30 * time.Millisecond: time.Second}, 60 * time.Millisecond, 60*time.Millisecond + slack},
		{"loopback, one answered later than the whole wait", server,
			map[time.Duration]time.Duration{time.Second: time.Second}, negotiationWait, negotiationWait},
		{"loopback, a slow answer forgotten", server,
			map[time.Duration]time.Duration{100 * time.Millisecond: answerMemory}, minNegotiationWait, 5*minNegotiationWait + slack},
		{"through a proxy", rawConn{server}, nil, negotiationWait, negotiationWait},
		{"no TCP", p1, nil, negotiationWait, negotiationWait},
	} {
		var srv Server
		for late, ago := range tc.answers {
			srv.answers.observe(now.Add(-ago), late)
		}
		if got, _, _ := srv.silentWait(tc.c, now); got < tc.min || got > tc.max {
			t.Errorf("%s: %v, want between %v and %v", tc.name, got, tc.min, tc.max)
		}
	}
}

// TestUnread: bytes the player sent that no read has taken are seen; a
// socket with none, a wrapped one, or one that is no socket has none.
func TestUnread(t *testing.T) {
	client, server := testnet.TCPPair(t)
	if unread(server) {
		t.Fatal("unread bytes before the client sent any")
	}
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !unread(server) {
		if time.Now().After(deadline) {
			t.Fatal("the byte the client sent is not seen")
		}
		time.Sleep(time.Millisecond) // loopback delivers at once; polling with the deadline above
	}
	if unread(rawConn{server}) {
		t.Error("a PROXY-wrapped socket has unread bytes: its wrapper may hold more")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if unread(p1) {
		t.Error("a pipe has unread bytes")
	}
	if _, err := server.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if unread(server) {
		t.Error("unread bytes after the read took them")
	}
}

// TestWriteNow: a plain socket takes what its buffer has room for at
// once, and no more, without waiting; the rest is left to the caller. A
// connection that is not a plain socket (under TLS, a pipe) is left to
// the caller whole.
func TestWriteNow(t *testing.T) {
	client, server := testnet.TCPPair(t)
	if n := writeNow(server, []byte("hello")); n != 5 {
		t.Fatalf("a short write took %d of 5 bytes", n)
	}
	got := make([]byte, 5)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v", got, err)
	}
	// The client reads nothing: the buffers fill, and a write returns
	// with what went, at once.
	big := make([]byte, 64<<20)
	done := make(chan int, 1)
	go func() { done <- writeNow(server, big) }()
	select {
	case n := <-done:
		if n == 0 || n >= len(big) {
			t.Fatalf("a write past the buffers took %d of %d bytes", n, len(big))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writeNow waited for a reader that reads nothing")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if n := writeNow(p1, []byte("x")); n != 0 {
		t.Fatalf("a pipe: %d bytes written", n)
	}
	if n := writeNow(rawConn{server}, []byte("x")); n != 0 {
		t.Fatalf("a connection behind a wrapper: %d bytes written", n)
	}
}

// TestWriteAfterDeadline: a write that needed the deadline (the kernel
// took only part of it at once) clears it after, so that the next writes
// go without one again: writeNow writes nothing once a deadline has
// passed.
func TestWriteAfterDeadline(t *testing.T) {
	client, server := testnet.TCPPair(t)
	srv := &Server{metrics: newMetrics(), Logger: zap.NewNop(), WriteTimeout: 300 * time.Millisecond}
	s := newSession(srv, "p-1", server, server.RemoteAddr(), netip.Addr{})
	// More than the socket takes at once: the rest is written with a
	// deadline, while the client reads it all.
	go io.Copy(io.Discard, client)
	if !s.write(make([]byte, 16<<20)) {
		t.Fatal("the write failed")
	}
	for passed := time.Now().Add(srv.WriteTimeout); !time.Now().After(passed); {
		time.Sleep(10 * time.Millisecond) // until the deadline the write had is past
	}
	if n := writeNow(server, []byte("hello")); n != 5 {
		t.Fatalf("after a write with a deadline, writeNow wrote %d of 5 bytes", n)
	}
}
