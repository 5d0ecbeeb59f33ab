package backend

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"holdfast/epmd"
	"holdfast/link"
)

// registry serves an in-process registry on addr until the test ends, or
// until the returned stop is called.
func registry(t *testing.T, addr string) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	for deadline := time.Now().Add(waitFor); err != nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // a registry stopped on it is still releasing the port
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := &epmd.Server{}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			srv.Close()
			<-done
		}
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// holder returns the port registered under name, 0 for none.
func holder(addr, name string) int {
	n, err := (&epmd.Client{Addr: addr}).Lookup(context.Background(), name)
	if err != nil {
		return 0
	}
	return int(n.Port)
}

func port(l *Listener) int { return l.Addr().(*net.TCPAddr).Port }

// waitHolder waits until name is registered to want (0: to nobody).
func waitHolder(t *testing.T, addr, name string, want int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for holder(addr, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s is registered to port %d, want %d", name, holder(addr, name), want)
		}
		time.Sleep(10 * time.Millisecond) // another goroutine's registration: nothing to wait on
	}
}

func listenTakeover(t *testing.T, addr string, takeover bool) *Listener {
	t.Helper()
	l, err := Listen(context.Background(), Config{EPMD: addr, Cookie: cookie, Logger: zaptest.NewLogger(t), Takeover: takeover})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestReadyTakesOver: a successor registers the successor's name while
// the backend holds the name, and takes the name when it is let go; a
// second successor is refused; a successor that finds the name free (a
// registry that restarted and forgot the running backend) takes it at
// once, and is proven newer than the backend it replaces, so that the
// gateways move the players to it all the same.
func TestReadyTakesOver(t *testing.T) {
	addr, _ := registry(t, "127.0.0.1:0")
	next := DefaultName + link.TakeoverSuffix

	old := listenTakeover(t, addr, false)
	succ := listenTakeover(t, addr, true)
	if err := succ.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitHolder(t, addr, next, port(succ))
	if got := holder(addr, DefaultName); got != port(old) {
		t.Fatalf("the name went to port %d while the backend on %d held it", got, port(old))
	}
	second := listenTakeover(t, addr, true)
	if err := second.Ready(context.Background()); !errors.Is(err, ErrHandoverBusy) {
		t.Fatalf("a second successor: %v, want ErrHandoverBusy", err)
	}
	old.Close()
	waitHolder(t, addr, DefaultName, port(succ))
	waitHolder(t, addr, next, 0)

	// The name free: a successor takes it at once, and is the newer.
	free := listenTakeover(t, addr, true)
	succ.Close()
	waitHolder(t, addr, DefaultName, 0)
	if err := free.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := holder(addr, DefaultName); got != port(free) {
		t.Fatalf("the free name is registered to port %d, want the successor's %d", got, port(free))
	}
	if !link.Newer(free.creds.Instance, succ.creds.Instance) {
		t.Fatalf("the successor %q is not proven newer than the backend before it %q", free.creds.Instance, succ.creds.Instance)
	}
}

// TestReadyRegistryDown: a successor whose registry does not answer is
// told so, not refused as busy, and holds nothing; once the registry
// answers again, Ready succeeds.
func TestReadyRegistryDown(t *testing.T) {
	addr, stop := registry(t, "127.0.0.1:0")
	l := listenTakeover(t, addr, true)
	stop()
	if err := l.Ready(context.Background()); err == nil || errors.Is(err, ErrHandoverBusy) {
		t.Fatalf("Ready with the registry down: %v, want an error other than ErrHandoverBusy", err)
	}
	registry(t, addr) // started again on its port, empty
	if err := l.Ready(context.Background()); err != nil {
		t.Fatalf("Ready once the registry answers: %v", err)
	}
	if got := holder(addr, DefaultName); got != port(l) {
		t.Fatalf("the name is registered to port %d, want %d", got, port(l))
	}
}
