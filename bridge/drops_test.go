package bridge

import (
	"testing"
	"time"
)

// TestDrops: the verdict on the game closing connections, from the
// bridge's other connections to the game.
func TestDrops(t *testing.T) {
	defer func(w, m time.Duration) { dropWindow, dropMax = w, m }(dropWindow, dropMax)
	dropWindow, dropMax = 50*time.Millisecond, 500*time.Millisecond
	for _, tc := range []struct {
		name   string
		conns  int
		byGame int // the first ones, closed by the game in turn
		byUs   int // the next ones, closed by the bridge
		want   verdict
	}{
		{"alone", 1, 1, 0, verdictUnknown},
		{"one of two", 2, 1, 0, verdictEnded},
		{"one of five", 5, 1, 0, verdictEnded},
		{"two of three", 3, 2, 0, verdictEnded},
		{"all of two", 2, 2, 0, verdictRestart},
		{"all of five", 5, 5, 0, verdictRestart},
		{"four of five: one reader late", 5, 4, 0, verdictRestart},
		{"the witness left with its player", 2, 1, 1, verdictUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Bridge{}
			b.init()
			defer b.Close()
			us := make([]*upstream, tc.conns)
			for i := range us {
				us[i] = &upstream{done: make(chan struct{})}
				b.opened(us[i])
			}
			for i, u := range us[:tc.byGame+tc.byUs] {
				b.ended(u, i < tc.byGame)
				close(u.done)
			}
			if tc.byGame == tc.conns {
				// Nothing left open: decided at the last close, no wait.
				b.mu.Lock()
				resolved := us[0].drop.resolved
				b.mu.Unlock()
				if !resolved {
					t.Error("every connection closed, and the verdict waits")
				}
			}
			if got := b.judge(us[0]); got != tc.want {
				t.Errorf("verdict %v, want %v", got, tc.want)
			}
			select {
			case <-b.downSignal():
				if tc.want != verdictRestart {
					t.Error("the game is taken for down")
				}
			default:
				if tc.want == verdictRestart {
					t.Error("a restart, and the game is not taken for down")
				}
			}
		})
	}
}

// TestDropSlides: closes that keep coming keep the verdict waiting, so
// that readers slow to see their connections end still count.
func TestDropSlides(t *testing.T) {
	defer func(w, m time.Duration) { dropWindow, dropMax = w, m }(dropWindow, dropMax)
	dropWindow, dropMax = 400*time.Millisecond, 10*time.Second
	b := &Bridge{}
	b.init()
	defer b.Close()
	const n = 10
	us := make([]*upstream, n)
	for i := range us {
		us[i] = &upstream{done: make(chan struct{})}
		b.opened(us[i])
	}
	verdicts := make(chan verdict, 1)
	b.ended(us[0], true)
	close(us[0].done)
	go func() { verdicts <- b.judge(us[0]) }()
	// One close every quarter window, the last long after the first window.
	for _, u := range us[1:] {
		time.Sleep(dropWindow / 4) // the game's closes, spread out in time
		select {
		case v := <-verdicts:
			t.Fatalf("decided %v while closes were still coming", v)
		default:
		}
		b.ended(u, true)
		close(u.done)
	}
	if v := <-verdicts; v != verdictRestart {
		t.Errorf("verdict %v, want restart", v)
	}
}
