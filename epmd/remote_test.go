package epmd

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// otherHosts makes the connections from 127.0.0.N look as if they came
// from 192.0.2.N, another host, to a server listening on loopback: the
// sockets are real, only the peer's address is translated.
type otherHosts struct{ net.Listener }

func (l otherHosts) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ra := c.RemoteAddr().(*net.TCPAddr)
	ip := ra.AddrPort().Addr().Unmap().As4()
	if ip[0] != 127 || ip[3] == 1 {
		return c, nil // 127.0.0.1 stays this host
	}
	far := netip.AddrFrom4([4]byte{192, 0, 2, ip[3]})
	return farConn{c, net.TCPAddrFromAddrPort(netip.AddrPortFrom(far, uint16(ra.Port)))}, nil
}

type farConn struct {
	net.Conn
	remote *net.TCPAddr
}

func (c farConn) RemoteAddr() net.Addr { return c.remote }

func startFar(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Logger = zaptest.NewLogger(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(otherHosts{ln}) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// dialFrom connects to addr from the loopback address 127.0.0.n.
func dialFrom(t *testing.T, n byte, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, n)}, Timeout: deadline}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closes c, within wait, without
// a word.
func closedByServer(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func (s *Server) remoteCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.remote)
}

// waitRemote waits until the server holds n connections from other hosts.
func waitRemote(t *testing.T, s *Server, n int) {
	t.Helper()
	end := time.Now().Add(deadline)
	for s.remoteCount() != n {
		if time.Now().After(end) {
			t.Fatalf("%d connections from other hosts held, want %d", s.remoteCount(), n)
		}
		time.Sleep(time.Millisecond) // the accept loop has no event to wait on
	}
}

// TestRemoteBounds fills the registry with silent connections from other
// hosts: past the bounds, in total and from one host, a new one is closed
// at once; this host is still answered; and a place freed is taken again.
func TestRemoteBounds(t *testing.T) {
	srv := &Server{MaxRemote: 4, MaxRemotePerIP: 2, RemoteTimeout: -1, IdleTimeout: -1}
	addr := startFar(t, srv)

	var held []net.Conn
	for _, host := range []byte{2, 2, 3, 3} {
		held = append(held, dialFrom(t, host, addr))
	}
	waitRemote(t, srv, 4)
	if !closedByServer(dialFrom(t, 4, addr), deadline) {
		t.Error("a fifth host's connection past MaxRemote was kept")
	}
	for _, c := range held {
		if closedByServer(c, time.Millisecond) {
			t.Error("a connection within the bounds was closed")
		}
	}
	// This host is never counted.
	if got := raw(t, addr, []byte{0, 1, tagNamesReq}); len(got) < 4 {
		t.Errorf("NAMES from this host answered %q", got)
	}

	held[0].Close()
	waitRemote(t, srv, 3)
	if !closedByServer(dialFrom(t, 3, addr), deadline) {
		t.Error("a third connection from one host past MaxRemotePerIP was kept")
	}
	dialFrom(t, 2, addr)
	waitRemote(t, srv, 4)
}

// TestRemoteTimeout leaves a connection from another host silent: it is
// closed after RemoteTimeout, though the idle timeout is off.
func TestRemoteTimeout(t *testing.T) {
	srv := &Server{RemoteTimeout: 100 * time.Millisecond, IdleTimeout: -1}
	addr := startFar(t, srv)
	c := dialFrom(t, 2, addr)
	c.Write([]byte{0}) // half a length, then nothing
	if !closedByServer(c, deadline) {
		t.Fatal("a silent connection from another host was kept past RemoteTimeout")
	}
	waitRemote(t, srv, 0)
	// The defaults bound it too.
	var d Server
	if d.maxRemote() <= 0 || d.maxRemotePerIP() <= 0 || d.remoteTimeout() <= 0 {
		t.Errorf("the zero Server's bounds: %d, %d, %v", d.maxRemote(), d.maxRemotePerIP(), d.remoteTimeout())
	}
}
