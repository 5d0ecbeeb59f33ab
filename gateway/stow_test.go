package gateway

import (
	"math"
	"testing"
	"time"
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
