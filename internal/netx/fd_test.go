package netx

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"holdfast/internal/testnet"
)

func nonblocking(t *testing.T, fd int) bool {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fl&unix.O_NONBLOCK != 0
}

// TestDupFD: the copy is the same connection, closed on exec, and keeps it
// open after the original is closed; SetNonblock undoes what a process
// sharing the socket did to its flag.
func TestDupFD(t *testing.T) {
	a, b := testnet.TCPPair(t)
	fd, err := DupFD(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("the copy's flags: %#x, %v; want close-on-exec", fl, err)
	}
	var sent int
	raw, _ := fd.SyscallConn()
	if err := raw.Control(func(s uintptr) { sent = int(s) }); err != nil || sent != int(fd) {
		t.Fatalf("Control gave %d, %v; want %d", sent, err, fd)
	}
	a.Close()
	if _, err := syscall.Write(int(fd), []byte("x")); err != nil {
		t.Fatalf("writing through the copy after the original closed: %v", err)
	}
	buf := make([]byte, 1)
	if n, err := b.Read(buf); n != 1 || buf[0] != 'x' {
		t.Fatalf("the other end read %q, %v", buf[:n], err)
	}

	c, _ := testnet.TCPPair(t)
	cfd, err := DupFD(c)
	if err != nil {
		t.Fatal(err)
	}
	defer cfd.Close()
	if err := syscall.SetNonblock(int(cfd), false); err != nil {
		t.Fatal(err)
	}
	if nonblocking(t, int(cfd)) {
		t.Fatal("the flag is not shared: nothing to test")
	}
	if err := SetNonblock(c); err != nil {
		t.Fatal(err)
	}
	if !nonblocking(t, int(cfd)) {
		t.Error("SetNonblock left the socket blocking")
	}
	if _, err := DupFD(struct{ net.Conn }{}); err == nil {
		t.Error("DupFD of a connection without a descriptor: no error")
	}
}
