package link

import (
	"errors"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"
)

const (
	// keepaliveInterval is how long a link may be quiet before the peer
	// is asked whether it is there.
	keepaliveInterval = 5 * time.Second
	// pingWait bounds the wait for a ping's answer, and yamux's for room
	// to send a frame.
	pingWait = 10 * time.Second
)

// keepalive ends a link whose peer has gone: for interval nothing arrived
// from it and it took in nothing of what was sent (see drainedWrite), and
// neither happened while a ping waited for its answer (pingWait).
//
// Either proves the peer alive, the ping's answer or not. A gateway that
// reads slowly (a login storm's arrival lines, on a machine shared with
// other work) has megabytes of the game's output to read before the
// backend's ping, and before its own ping's answer; a link closed as dead
// then loses that output.
func keepalive(mux *yamux.Session, c *coalescedConn, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	progress := func() uint64 { return c.reads.Load() + c.drained.Load() }
	seen := progress()
	for {
		select {
		case <-mux.CloseChan():
			return
		case <-t.C:
		}
		if n := progress(); n != seen {
			seen = n
			continue
		}
		_, err := mux.Ping()
		if n := progress(); err == nil || n != seen {
			seen = n
			continue
		}
		if errors.Is(err, yamux.ErrSessionShutdown) {
			return
		}
		log.Warn("link: the peer has said nothing and read nothing; closing the link",
			zap.Duration("quiet", interval+pingWait), zap.Error(err))
		mux.Close()
		return
	}
}
