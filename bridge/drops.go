package bridge

import (
	"time"

	"go.uber.org/zap"
)

// When the game closes a player's connection, the bridge must tell a game
// that ended that player (a QUIT, a boot: the player leaves too) from a game
// that went down or restarted (the player is held). The rule:
//
// A process that dies takes every socket it has with it, at once; a game
// that ends one player closes that player's socket and no other. So the
// bridge's other connections to the game are its witnesses. A close by the
// game starts a drop, which every close by the game of a connection opened
// before the drop began joins. When every connection open to the game as the
// drop began has been closed by the game, it is a restart, decided at once.
// Otherwise it is decided dropWindow after it began, or after its last
// close while closes keep coming (up to dropMax): a restart if the game
// closed more of those connections than are still open (thousands of
// readers on a busy machine take a while to see their connections end), else
// the game is still running and ended the players of the drop on purpose. A
// drop that
// began with no other connection open has no witness: the player's session
// then asks the game itself (gameUp), which cannot tell a game that restarted
// faster than the question from one that ended the player.
//
// Connections opened after the drop began are no witnesses: they may be to
// the new process.

// dropWindow is how long the bridge waits, after the game closes a
// connection, for its other connections to close too before it takes the
// close for the game ending that player; dropMax bounds the wait while
// closes keep coming.
var (
	dropWindow = time.Second
	dropMax    = 5 * time.Second
)

// verdict is what a drop was.
type verdict uint8

const (
	verdictUnknown verdict = iota // no witness: ask the game
	verdictEnded                  // the game ended these players on purpose
	verdictRestart                // the game went down: hold the players
)

func (v verdict) String() string {
	return [...]string{"unknown", "ended", "restart"}[v]
}

// drop is the game closing connections together. Guarded by the Bridge's mu.
type drop struct {
	serial   uint64 // connections with a serial below it were open as it began
	open     int    // of those, the ones still open
	gone     int    // of those, the ones the game closed since
	began    time.Time
	last     time.Time // the last close by the game that joined it
	verdict  verdict
	decided  chan struct{} // closed once verdict is set
	resolved bool
}

// opened counts a connection to the game (not a probe) as a witness.
func (b *Bridge) opened(u *upstream) {
	b.mu.Lock()
	u.serial = b.serial
	b.serial++
	b.live++
	b.mu.Unlock()
}

// ended is told by u's reader that u has ended; byGame says the game
// closed it (or it broke), rather than the bridge. A close by the game
// joins the drop under way, or begins one, which u keeps for its session.
func (b *Bridge) ended(u *upstream, byGame bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.live--
	var joined *drop
	keep := b.drops[:0]
	for _, d := range b.drops {
		if u.serial < d.serial && !d.resolved {
			d.open--
			if byGame {
				d.gone++
				d.last = time.Now()
				if joined == nil {
					joined = d
				}
			}
			switch {
			case d.open > 0:
			case d.gone > 0:
				b.decide(d, verdictRestart)
			default:
				// The witnesses left with their players: nothing says
				// whether the game is up.
				b.decide(d, verdictUnknown)
			}
		}
		if !d.resolved {
			keep = append(keep, d)
		}
	}
	clear(b.drops[len(keep):])
	b.drops = keep
	if !byGame {
		return
	}
	if joined == nil {
		now := time.Now()
		joined = &drop{serial: b.serial, open: b.live, began: now, last: now, decided: make(chan struct{})}
		if b.live == 0 {
			b.decide(joined, verdictUnknown)
		} else {
			b.drops = append(b.drops, joined)
			b.settleLater(joined, dropWindow)
		}
	}
	u.drop = joined
}

// settleLater decides d after wait, unless closes are still coming then.
func (b *Bridge) settleLater(d *drop, wait time.Duration) {
	time.AfterFunc(wait, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if d.resolved {
			return
		}
		now := time.Now()
		if quiet := now.Sub(d.last); quiet < dropWindow && now.Sub(d.began) < dropMax {
			b.settleLater(d, dropWindow-quiet)
			return
		}
		if d.gone > d.open {
			b.decide(d, verdictRestart)
		} else {
			b.decide(d, verdictEnded)
		}
	})
}

// decide sets d's verdict. Called with b.mu held.
func (b *Bridge) decide(d *drop, v verdict) {
	d.verdict, d.resolved = v, true
	close(d.decided)
	if v == verdictRestart {
		b.downLocked()
	}
}

// judge waits for the verdict on the drop u's close joined; without one
// (the bridge closed u), or once the bridge closes, it is unknown.
func (b *Bridge) judge(u *upstream) verdict {
	<-u.done
	d := u.drop
	if d == nil {
		return verdictUnknown
	}
	select {
	case <-d.decided:
	case <-b.ctx.Done():
		return verdictUnknown
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return d.verdict
}

// down says the game is known to be down: players waiting for a slot to
// connect are told at once, rather than after their turn.
func (b *Bridge) down() {
	b.mu.Lock()
	b.downLocked()
	b.mu.Unlock()
}

func (b *Bridge) downLocked() {
	select {
	case <-b.isDown:
	default:
		close(b.isDown)
		// Once for the outage, not for each player: thousands of lines
		// written at once would hold up the players' notices.
		b.log().Info("bridge: the game went away; holding the players", zap.Int("players", len(b.sessions)))
	}
}

// downSignal returns the channel closed while the game is known down.
func (b *Bridge) downSignal() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.isDown
}
