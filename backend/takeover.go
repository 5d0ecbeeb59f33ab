package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/link"
)

// ErrHandoverBusy is what Ready returns when another successor is already
// taking over from the running backend.
var ErrHandoverBusy = errors.New("backend: another successor is already taking over")

// claimInterval is how often a successor tries to take its name while the
// backend it replaces still holds it.
const claimInterval = 100 * time.Millisecond

// Ready tells the gateways that this backend is ready for players. For a
// backend started with Config.Takeover it is the start of the deploy: if a
// backend runs under the name, this one registers as its successor, the
// gateways hand it that backend's players in batches, and the old backend
// stops once they have all moved; this one then takes the name. A second
// successor at once gets ErrHandoverBusy. For any other backend, which
// registered in Listen, Ready does nothing.
func (l *Listener) Ready(ctx context.Context) error {
	l.mu.Lock()
	started := l.reg != nil || l.next != nil
	l.mu.Unlock()
	if started {
		return nil
	}
	node := epmd.Node{Name: l.name, Port: l.port}
	reg, err := l.client.Register(ctx, node, l.log)
	if err == nil {
		// Nothing to take over from, or a backend that serves under the
		// name and has not registered it again since the registry
		// restarted: the gateways move its players here all the same,
		// this backend being the newer (see link.Newer).
		if err := l.holdName(reg); err != nil {
			return err
		}
		l.log.Info("backend: the name was free; took it", zap.String("name", l.name))
		return nil
	}
	if !errors.Is(err, epmd.ErrRefused) {
		return fmt.Errorf("backend: register %q: %w", l.name, err)
	}
	next := epmd.Node{Name: l.name + link.TakeoverSuffix, Port: l.port}
	nreg, err := l.client.Register(ctx, next, l.log)
	if errors.Is(err, epmd.ErrRefused) {
		return ErrHandoverBusy
	}
	if err != nil {
		return fmt.Errorf("backend: register %q: %w", next.Name, err)
	}
	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		nreg.Close()
		return fmt.Errorf("backend: ready: %w", net.ErrClosed)
	}
	l.next = nreg
	l.mu.Unlock()
	l.log.Info("backend: ready to take over", zap.String("name", l.name))
	l.wg.Add(1)
	go l.claimName(node)
	return nil
}

// holdName keeps the name's registration, unless the listener has closed.
func (l *Listener) holdName(reg *epmd.Registration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		reg.Close()
		return fmt.Errorf("backend: ready: %w", net.ErrClosed)
	}
	l.reg = reg
	return nil
}

// claimName takes the name once the backend this one replaces has let it
// go, and then drops the successor's name.
func (l *Listener) claimName(node epmd.Node) {
	defer l.wg.Done()
	t := time.NewTicker(claimInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		reg, err := l.client.Register(ctx, node, l.log)
		cancel()
		if err != nil {
			continue // still held by the old backend
		}
		if l.holdName(reg) != nil {
			return
		}
		l.mu.Lock()
		next := l.next
		l.next = nil
		l.mu.Unlock()
		next.Close()
		l.log.Info("backend: took the name over", zap.String("name", l.name))
		return
	}
}

// release answers the gateway's Release for this session on link gl: the
// session goes to this backend's successor. Its acknowledgement and Moved
// end the stream, after everything written before; reads return
// ErrDetached from now on, and so do writes, which would come too late.
func (s *Session) release(gl *gatewayLink) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.releaseLocked(gl)
}

// tryRelease is release, unless the application has written an answer to
// input it has not come back from: released now, the answer would have
// gone without the acknowledgement of its line, and the successor would
// answer the line again. It returns then a channel closed when the
// application comes back, and releases nothing. The check and the release
// are one step under s.wmu, which the application's writes take: no
// answer comes between them.
func (s *Session) tryRelease(gl *gatewayLink) <-chan struct{} {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if back := s.answeredChanLocked(); back != nil {
		return back
	}
	s.releaseLocked(gl)
	return nil
}

// releaseLocked is release with s.wmu held.
func (s *Session) releaseLocked(gl *gatewayLink) {
	s.mu.Lock()
	ok := s.gl == gl && !s.away && !s.ended && !s.hungup && !s.isDetached()
	s.mu.Unlock()
	if !ok {
		return
	}
	s.uncorkLocked() // what was written before goes first
	s.mu.Lock()
	s.released = true
	s.mu.Unlock()
	// Only what the application is done with: a line it was still working
	// on is not acknowledged, and the successor gets it (its answer here
	// would fail: the session is released).
	b := s.appendDoneAckLocked(nil)
	s.wakeLocked()
	s.st.Write(link.AppendFrame(b, link.FrameMoved, nil))
	s.detach()
}

// appendDoneAckLocked appends to b an Ack of the input the application is
// done with, if it is more than was acknowledged, with s.wmu held: where
// the session goes next, to another stream or another backend, a line it
// was still working on is acknowledged only once answered.
func (s *Session) appendDoneAckLocked(b []byte) []byte {
	return s.appendAckLocked(b, s.finished)
}

// appendAckLocked appends to b an Ack of ack, if it is more than was
// acknowledged, with s.wmu held.
func (s *Session) appendAckLocked(b []byte, ack uint64) []byte {
	if ack > s.acked {
		b = link.AppendFrame(b, link.FrameAck, link.AppendAck(nil, ack))
		s.acked = ack
	}
	return b
}

// releaseParked answers the gateway's Release for this session on link gl
// without a word on its stream, if the stream is parked and nothing waits
// to go on it, an acknowledgement included: the gateway has read the
// stream up to its last Parked, and nothing more comes, so the session is
// released at once. It returns the number of that Parked, and false if
// the session must answer Moved on its stream instead (release).
func (s *Session) releaseParked(gl *gatewayLink) (park uint32, ok bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.parked != gl || s.cork != nil || s.finished > s.acked {
		return 0, false
	}
	s.mu.Lock()
	ok = s.gl == gl && !s.away && !s.ended && !s.hungup && !s.isDetached()
	if ok {
		s.released = true
	}
	s.mu.Unlock()
	if !ok {
		return 0, false
	}
	s.parked = nil // the gateway knows: no Wake
	s.detach()
	return s.parks, true
}

// HandedOver reports whether the session came to this backend from the
// one it replaced (a deploy with Config.Takeover), rather than after a
// restart or a crash: Resumed counts both.
func (s *Session) HandedOver() bool { return s.handedOver }
