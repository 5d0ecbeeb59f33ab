package backend

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap/zaptest"

	"holdfast/epmd"
)

// TestListenRetrying: with the registry down, ListenRetrying waits for it
// and registers once it answers; a name held by another backend is
// refused at once; an end to the wait ends it.
func TestListenRetrying(t *testing.T) {
	addr, stop := registry(t, "127.0.0.1:0")
	stop()
	cfg := Config{EPMD: addr, Cookie: cookie, Logger: zaptest.NewLogger(t)}
	type result struct {
		l   *Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := ListenRetrying(context.Background(), cfg)
		done <- result{l, err}
	}()
	registry(t, addr) // on the same port: the wait is over
	r := <-done
	if r.err != nil {
		t.Fatalf("once the registry answers: %v", r.err)
	}
	defer r.l.Close()
	if got := holder(addr, DefaultName); got != port(r.l) {
		t.Fatalf("the name is registered to port %d, want %d", got, port(r.l))
	}
	if _, err := ListenRetrying(context.Background(), cfg); !errors.Is(err, epmd.ErrRefused) {
		t.Fatalf("a name taken: %v, want epmd.ErrRefused", err)
	}
	stop2Addr, stop2 := registry(t, "127.0.0.1:0")
	stop2()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ListenRetrying(ctx, Config{EPMD: stop2Addr, Cookie: cookie}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while the registry is down: %v", err)
	}
}
