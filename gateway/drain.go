package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// DefaultDrainMessage is what a drain tells telnet players when
// DrainMessage is empty.
const DefaultDrainMessage = "This server is going down for maintenance. Please reconnect when convenient: you will reach another one."

const defaultDrainTimeout = 10 * time.Minute

// drainTick is how often a drain looks at the sessions: players who
// arrived during their handshake as it began are told, the deadline is
// checked, and the gateway found empty.
const drainTick = 250 * time.Millisecond

// endDrained is why a session ended: the drain's deadline passed, or a
// browser player was sent elsewhere. It labels the disconnects metric.
const endDrained = "drained"

// noticeElsewhere is what a browser player reads as its page is sent to
// reconnect to another gateway.
const noticeElsewhere = "[holdfast] This server is going down for maintenance. Reconnecting you to another one.\n"

// ErrUpgrading is Drain's answer while an upgrade moves the sessions to a
// new process: the drain belongs to whichever process serves after it.
var ErrUpgrading = errors.New("gateway: an upgrade is under way")

// drainState is a server's drain, guarded by Server.mu. The zero value is
// a server that is not draining.
type drainState struct {
	begun    time.Time     // zero: not draining
	deadline time.Time     // when the telnet players left are disconnected
	expired  bool          // the deadline has passed
	empty    chan struct{} // Emptied's, made when first asked for
	emptied  bool          // empty is closed
}

// DrainStatus is how a drain stands: the players left, by kind.
type DrainStatus struct {
	Draining  bool      `json:"draining"`
	Since     time.Time `json:"since,omitzero"`
	Deadline  time.Time `json:"deadline,omitzero"` // when the telnet players left are disconnected
	Telnet    int       `json:"telnet"`
	TelnetTLS int       `json:"telnet_tls"`
	Web       int       `json:"web"`
	Done      bool      `json:"done"` // no player is left
}

// Left is the number of players left.
func (d DrainStatus) Left() int { return d.Telnet + d.TelnetTLS + d.Web }

func (s *Server) drainTimeout() time.Duration {
	switch {
	case s.DrainTimeout < 0:
		return 0
	case s.DrainTimeout == 0:
		return defaultDrainTimeout
	}
	return s.DrainTimeout
}

// drainNotice is what telnet players are told, as the gateway's other
// notices are written: the gateway's mark first, so that it reads as the
// gateway's word, not the game's.
func (s *Server) drainNotice() string {
	msg := strings.TrimSpace(s.DrainMessage)
	if msg == "" {
		msg = DefaultDrainMessage
	}
	return "[holdfast] " + msg + "\n"
}

// Drain begins to empty the gateway, one of several behind a load
// balancer that is to stop, without ending anyone's game before they
// choose to or the operator's deadline comes, and returns:
//
//   - its listeners close, so that a connection the balancer still sends
//     before its health check notices is refused, and the balancer tries
//     another gateway (HAProxy's retries and redispatch) instead of the
//     player being let in only to be sent away;
//   - every telnet player is told once (DrainMessage) and plays on, until
//     they leave or DrainTimeout passes; then the players left are told
//     again and disconnected, their sessions hung up on the backend;
//   - every browser player whose page can reconnect by itself is sent
//     elsewhere at once (sendElsewhere);
//   - once no player is left, Emptied is closed, and the process may go.
//
// The health check that tells the balancer is the caller's (cmd/gateway
// answers 503 while DrainStatus says Draining). A second call does
// nothing and reports no error; a drain during an upgrade is refused with
// ErrUpgrading, since the sessions are on their way to another process.
func (s *Server) Drain() error {
	s.init()
	s.mu.Lock()
	switch {
	case s.closing:
		s.mu.Unlock()
		return ErrServerClosed
	case s.moveHolder == "upgrade":
		s.mu.Unlock()
		return fmt.Errorf("gateway: drain: %w; drain once it is over", ErrUpgrading)
	case !s.drain.begun.IsZero():
		s.mu.Unlock()
		return nil
	}
	now := time.Now()
	deadline := now.Add(s.drainTimeout())
	s.drain.begun, s.drain.deadline = now, deadline
	lns := slices.Collect(maps.Keys(s.listeners))
	players := len(s.sessions)
	s.wg.Add(1)
	s.mu.Unlock()
	// Closed, not paused: a connection refused is one HAProxy tries on
	// another server; one accepted here could only be sent away.
	for _, ln := range lns {
		ln.Close()
	}
	s.log().Info("gateway: draining: no new players; the players here are told",
		zap.Int("players", players), zap.Time("deadline", deadline))
	go s.drainLoop()
	return nil
}

// drainingLocked reports whether a drain has begun, with s.mu held.
func (s *Server) drainingLocked() bool { return !s.drain.begun.IsZero() }

// DrainStatus reports how the drain stands; Draining is false before one
// begins.
func (s *Server) DrainStatus() DrainStatus {
	s.init()
	var d DrainStatus
	for _, ss := range s.list() {
		switch playerKind(ss) {
		case kindWeb:
			d.Web++
		case kindTelnetTLS:
			d.TelnetTLS++
		default:
			d.Telnet++
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.Draining = s.drainingLocked()
	if d.Draining {
		d.Since, d.Deadline = s.drain.begun, s.drain.deadline
		d.Done = s.drain.emptied
	}
	return d
}

// Emptied is closed once a drain has begun and no player is left.
func (s *Server) Emptied() <-chan struct{} {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emptyLocked()
}

func (s *Server) emptyLocked() chan struct{} {
	if s.drain.empty == nil {
		s.drain.empty = make(chan struct{})
	}
	return s.drain.empty
}

// The kinds of player a drain reports.
const (
	kindTelnet    = "telnet"
	kindTelnetTLS = "telnet+tls"
	kindWeb       = "web"
)

func playerKind(ss *session) string {
	if strings.HasPrefix(ss.Kind, "websocket") {
		return kindWeb
	}
	if _, ok := ss.conn.(*tls.Conn); ok || ss.TLS || ss.Kind == kindTelnetTLS {
		return kindTelnetTLS
	}
	return kindTelnet
}

// drainLoop tells the players, disconnects those left at the deadline,
// and closes Emptied once nobody is left. It ends there, or at Close.
func (s *Server) drainLoop() {
	defer s.wg.Done()
	t := time.NewTicker(drainTick)
	defer t.Stop()
	// told: the players told; sent: those disconnected or sent elsewhere.
	told, sent := make(map[*session]struct{}), make(map[*session]struct{})
	for {
		list := s.list()
		s.mu.Lock()
		deadline, expired := s.drain.deadline, s.drain.expired
		if len(list) == 0 && len(s.sessions) == 0 && s.npending == 0 && len(s.pending) == 0 {
			s.drain.emptied = true
			close(s.emptyLocked())
			s.mu.Unlock()
			s.log().Info("gateway: drained: no player is left")
			return
		}
		s.mu.Unlock()
		// Forget the players the server has forgotten, so that their
		// memory goes; a session that is ending stays listed until its
		// output is written, told already. Nobody new comes during a
		// drain but for a handshake under way as it began, so the maps
		// only shrink, and a tick with nothing gone costs no more.
		if len(told) > len(list) {
			here := make(map[*session]struct{}, len(list))
			for _, ss := range list {
				here[ss] = struct{}{}
			}
			for ss := range told {
				if _, ok := here[ss]; !ok {
					delete(told, ss)
					delete(sent, ss)
				}
			}
		}
		if !expired && !time.Now().Before(deadline) {
			s.log().Info("gateway: drain timeout: disconnecting the players left", zap.Int("players", len(list)))
			s.mu.Lock()
			s.drain.expired = true
			s.mu.Unlock()
			expired = true
		}
		for _, ss := range list {
			_, wasTold := told[ss]
			_, wasSent := sent[ss]
			if wasSent || wasTold && !expired || ss.is(phaseGone) {
				continue
			}
			if !wasTold {
				told[ss] = struct{}{}
				if s.sendElsewhere(ss) {
					sent[ss] = struct{}{}
					continue
				}
				ss.notice(s.drainNotice())
			} else {
				ss.notice(s.drainNotice()) // again, as they go
			}
			if expired {
				// Players who came during their handshake as the drain
				// began are told at the tick that finds them, and go
				// with the rest.
				sent[ss] = struct{}{}
				ss.finish(endDrained, true)
			}
		}
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}

// resumable reports whether a browser player's page reconnects by itself
// when told to.
func resumable(ss *session) bool {
	_, ok := ss.conn.(interface{ Moved() })
	return ok && !relayed(ss.conn)
}

// sendElsewhere sends a browser player whose page reconnects by itself to
// another gateway: the page is told, its WebSocket closed with 1012
// (Service Restart) so that it reconnects at once, through the balancer,
// which sends it elsewhere; its session here ends without a Hangup, and the
// backend keeps it for the other gateway's claim (keep.go). It reports
// false for any other player, who is told and stays until the deadline.
func (s *Server) sendElsewhere(ss *session) bool {
	if playerKind(ss) != kindWeb || !resumable(ss) {
		return false
	}
	s.wg.Add(1)
	go func() { // a page's notice may wait for its slow connection
		defer s.wg.Done()
		ss.notice(noticeElsewhere)
		ss.conn.(interface{ Moved() }).Moved()
		ss.leave(endDrained)
	}()
	return true
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drainingLocked()
}
