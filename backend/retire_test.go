package backend

import (
	"testing"
	"time"

	"holdfast/link"
)

// stopped reports whether the listener has stopped taking sessions.
func stopped(l *Listener) bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// TestRetireWaitsForEveryGateway: a backend stops when every gateway
// linked to it has said Retire, not at the first: the other gateways, or
// the new process of a gateway's upgrade, may still have players there. A
// gateway whose link closes counts as having let go.
func TestRetireWaitsForEveryGateway(t *testing.T) {
	for _, tc := range []struct {
		name string
		last func(g *fakeGateway)
	}{
		{"both say Retire", func(g *fakeGateway) { link.WriteFrame(g.ctrl, link.FrameRetire, nil) }},
		{"the other link closes", func(g *fakeGateway) { g.mux.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, g1 := setup(t)
			g2 := linkGateway(t, l)
			g2.open(l, link.Open{ID: "held-elsewhere"})
			link.WriteFrame(g1.ctrl, link.FrameRetire, nil)
			deadline := time.Now().Add(5 * time.Second)
			for !l.retiringNow() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // the control stream is read on its own goroutine
			}
			if !l.retiringNow() {
				t.Fatal("the Retire was never read")
			}
			if stopped(l) {
				t.Fatal("the backend stopped while another gateway still had a player on it")
			}
			tc.last(g2)
			select {
			case <-l.done:
			case <-time.After(5 * time.Second):
				t.Fatal("the backend did not stop once every gateway had let go")
			}
		})
	}
}

func (l *Listener) retiringNow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.retiring
}
