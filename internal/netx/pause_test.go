package netx

import (
	"errors"
	"net"
	"testing"
	"time"
)

// TestPauseListener: a paused listener accepts nothing, its connections
// waiting in the kernel's queue, and takes them once resumed; Close ends
// a paused Accept.
func TestPauseListener(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = t.TempDir() + "/s"
			}
			raw, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			ln := Pausable(raw)
			ln.Pause() // before any Accept: nothing may be taken
			accepted := make(chan net.Conn, 4)
			errs := make(chan error, 1)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						errs <- err
						return
					}
					accepted <- c
				}
			}()
			dial := func() net.Conn {
				c, err := net.Dial(network, raw.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			dial() // waits in the kernel's queue
			select {
			case c := <-accepted:
				c.Close()
				t.Fatal("a paused listener accepted")
			case <-time.After(300 * time.Millisecond): // nothing may come: a bounded look, not synchronisation
			}
			ln.Resume()
			select {
			case c := <-accepted:
				c.Close() // the connection that waited in the queue
			case <-time.After(5 * time.Second):
				t.Fatal("the resumed listener did not take the waiting connection")
			}
			dial()
			(<-accepted).Close()
			ln.Pause()
			ln.Close()
			select {
			case err := <-errs:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("Accept after Close: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not end a paused Accept")
			}
		})
	}
}
