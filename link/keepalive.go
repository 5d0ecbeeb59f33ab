package link

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

const (
	// keepaliveInterval is how long a link may be quiet before the peer
	// is asked whether it is there.
	keepaliveInterval = 5 * time.Second
	// pingWait bounds the wait for a ping's answer, and a write's for
	// room in the link's queue.
	pingWait = 10 * time.Second
	// deafWait bounds how long a peer that takes in what is sent, but
	// sends nothing, not even a ping's answer, is taken for alive: its
	// kernel takes in for it, up to megabytes, when it has hung.
	deafWait = time.Minute
)

// keepalive ends a link whose peer has gone. Each interval in which
// nothing arrived from the peer, and it took in nothing sent to it (see
// drainedWrite), it is pinged. The link ends when nothing arrives while
// the ping waits for its answer (pingWait), and the peer took in nothing
// meanwhile or has sent nothing for deaf. A peer that stops is found
// within two intervals and a ping's wait of its last sign (a ping that
// waits to be sent, behind a full link, waits up to twice pingWait); one
// whose kernel takes in for it, within deaf, an interval and that.
//
// Anything that arrives proves the peer alive, the ping's answer or not,
// and so, for a while, does its taking in what is sent: a gateway that
// reads slowly (a login storm's arrival lines, on a machine shared with
// other work) has megabytes of the game's output to read before the
// backend's ping, and before its own ping's answer. A link closed as dead
// then loses that output.
func keepalive(m *Mux, interval, deaf time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	reads, drained := m.reads.Load(), m.drained.Load()
	heard := time.Now() // when something last came from the peer
	for {
		select {
		case <-m.CloseChan():
			return
		case <-t.C:
		}
		r, d := m.reads.Load(), m.drained.Load()
		if r != reads {
			heard = time.Now()
		}
		busy := r != reads || d != drained && time.Since(heard) < deaf
		reads, drained = r, d
		if busy {
			continue
		}
		_, err := m.Ping()
		r, d = m.reads.Load(), m.drained.Load()
		if err == nil || r != reads {
			heard = time.Now()
			reads, drained = r, d
			continue
		}
		if d != drained && time.Since(heard) < deaf {
			drained = d
			continue
		}
		if m.IsClosed() || errors.Is(err, ErrSessionShutdown) {
			return
		}
		msg := "link: the peer has said nothing, nor taken in what was sent; closing the link"
		if d != drained {
			msg = "link: the peer takes in what is sent but has said nothing, nor answered a ping; closing the link"
		}
		log.Warn(msg, zap.Duration("since_heard", time.Since(heard).Round(time.Millisecond)), zap.Error(err))
		m.Close()
		return
	}
}
