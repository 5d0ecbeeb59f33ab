package netx

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"holdfast/internal/testnet"
)

// received returns a Conn of a copy of c's socket, as another process
// would receive it.
func received(t *testing.T, c net.Conn) *Conn {
	t.Helper()
	fd, err := DupFD(c)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := NewConn(os.NewFile(uintptr(fd), "received"))
	if err != nil {
		fd.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// TestConn: a received socket reads, writes, keeps deadlines, knows both
// addresses and shuts its sending side, with a net.Conn's errors.
func TestConn(t *testing.T) {
	a, b := testnet.TCPPair(t)
	c := received(t, a)
	a.Close() // the copy is the connection now

	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("the other end read %q, %v", buf, err)
	}
	b.Write([]byte("pong"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}

	if got, want := c.LocalAddr().String(), b.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr %s, want %s", got, want)
	}
	if got, want := c.RemoteAddr().String(), b.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}

	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read past its deadline: %v; want a net.Error that timed out", err)
	}
	c.SetReadDeadline(time.Time{})

	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("the other end read %d, %v after CloseWrite; want EOF", n, err)
	}
	b.Close()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v after the other end closed; want EOF", n, err)
	}

	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		if !nonblocking(t, int(fd)) {
			t.Error("the socket is blocking: it would tie up a thread")
		}
	})

	c.Close()
	if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a read after Close: %v; want net.ErrClosed", err)
	}
	if _, err := c.Write(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a write after Close: %v; want net.ErrClosed", err)
	}
}

// TestConnBlocking: a blocking descriptor is refused, since deadlines, on
// which moving a session and idle players rely, would not work on it.
func TestConnBlocking(t *testing.T) {
	a, _ := testnet.TCPPair(t)
	fd, err := DupFD(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetNonblock(int(fd), false); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "blocking")
	_, err = NewConn(f)
	unix.SetNonblock(int(fd), true) // the flag is a's too
	f.Close()
	if !errors.Is(err, ErrNotPolled) {
		t.Fatalf("NewConn of a blocking socket: %v; want ErrNotPolled", err)
	}
}
