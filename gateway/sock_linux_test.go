package gateway

import (
	"net"
	"testing"
	"time"

	"holdfast/internal/testnet"
)

// rawConn stands for a connection that came with a PROXY header.
type rawConn struct{ net.Conn }

func (r rawConn) Raw() net.Conn { return r.Conn }

// TestSilentWait: a client on a nearby network gets a few of its
// round trips, not the whole wait; one whose round trip is unknown, or
// is a proxy's, gets the whole wait.
func TestSilentWait(t *testing.T) {
	_, server := testnet.TCPPair(t)
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	for _, tc := range []struct {
		name     string
		c        net.Conn
		min, max time.Duration
	}{
		{"loopback", server, minNegotiationWait, negotiationWait - 1},
		{"through a proxy", rawConn{server}, negotiationWait, negotiationWait},
		{"no TCP", p1, negotiationWait, negotiationWait},
	} {
		if got := silentWait(tc.c); got < tc.min || got > tc.max {
			t.Errorf("%s: %v, want between %v and %v", tc.name, got, tc.min, tc.max)
		}
	}
}
