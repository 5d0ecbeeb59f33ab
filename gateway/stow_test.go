package gateway

import (
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"holdfast/link"
)

// TestHoldSweeps: how many sweeps must find a stream parked before its
// session is stowed, for each -hold-idle: the default, never, at least
// one, and no more than the session's counter holds (a larger count
// would wrap it, and the session would never be stowed).
func TestHoldSweeps(t *testing.T) {
	for _, tc := range []struct {
		holdIdle time.Duration
		want     int
	}{
		{0, int(defaultHoldIdle / parkInterval)},
		{-1, 0},
		{time.Millisecond, 1},
		{10 * time.Second, int(10 * time.Second / parkInterval)},
		{24 * time.Hour, math.MaxUint16},
	} {
		if got := (&Server{HoldIdle: tc.holdIdle}).holdSweeps(); got != tc.want {
			t.Errorf("HoldIdle %v: %d sweeps, want %d", tc.holdIdle, got, tc.want)
		}
	}
}

// TestAttachHeldWaitsForWake: a session held on a link whose backend
// answers held sessions on the control stream is not opened on a stream
// of that link until the backend wakes it, whoever asks (a player's
// reader resuming it after its old backend died, as the new link holds
// it): the stream could overtake the answers the backend sends it there,
// which a session on a stream drops, and whose lines the stream's
// acknowledgement would then forget. The link here has no multiplexer:
// opening a stream would fail the test.
func TestAttachHeldWaitsForWake(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := &Server{}
	lk := &backendLink{goodbye: make(chan struct{})}
	lk.features.Store(uint32(link.FeatureHeldFrames))
	s := newSession(srv, "w-1", a, a.RemoteAddr(), netip.Addr{})
	s.cond.stream, s.cond.phase = streamHeld, phaseLive
	s.lk = lk
	if !s.attach(lk) {
		t.Fatal("attach of a session held on its link, not woken: false, want true (held there)")
	}
	if s.cond.stream != streamHeld {
		t.Fatalf("after attach: %v, want held", s.cond)
	}
}
