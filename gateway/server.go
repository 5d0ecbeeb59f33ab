// Package gateway is the long-lived side of holdfast: it accepts players'
// telnet connections, holds each session, and carries it over one yamux link
// to whichever backend currently answers to the configured name. When the
// backend goes away the players stay connected, their input is held, and
// every session is resumed when a backend registers the name again.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/internal/netx"
	"holdfast/link"
)

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("gateway: server closed")

const (
	defaultBackend      = "game"
	defaultMaxHeldInput = 64 << 10
	defaultOutputQueue  = 256 << 10
	defaultSlowPlayer   = 30 * time.Second
	defaultWriteTimeout = 30 * time.Second
	lookupInterval      = 100 * time.Millisecond
	goodbyeGrace        = 30 * time.Second
)

// Server is a gateway. The zero value serves players and looks for a backend
// named "game" in the registry at 127.0.0.1:$ERL_EPMD_PORT, but a Cookie is
// required for the backend to be accepted.
type Server struct {
	// Backend names the application: "name" in the registry at EPMD, or
	// "name@host" in the registry on that host. Empty means "game".
	Backend string
	// EPMD is the registry's address for a plain name. Empty means
	// 127.0.0.1 on the port in ERL_EPMD_PORT (default 4369).
	EPMD string
	// Registry is the embedded registry that EPMD points at, if any; with it
	// the server learns of a registration at once instead of by polling.
	Registry *epmd.Server
	// Cookie authenticates the backend link; the backend must hold the same.
	Cookie []byte
	// Logger receives events. Nil logs nothing. Player input is never logged.
	Logger *zap.Logger
	// MaxHeldInput bounds each session's input that no backend has
	// acknowledged yet; at the bound the player's socket is not read until
	// there is room, so TCP pushes back. Zero or negative means 64 KiB.
	MaxHeldInput int
	// OutputQueue bounds the output queued for one player. Zero or negative
	// means 256 KiB.
	OutputQueue int
	// SlowPlayerTimeout is how long output may wait for room in a player's
	// full queue before that player is disconnected. Zero or negative means
	// 30 s.
	SlowPlayerTimeout time.Duration
	// WriteTimeout bounds each write to a player's socket. Zero or negative
	// means 30 s.
	WriteTimeout time.Duration
	// NoCompress stops the gateway from offering MCCP2 output compression,
	// which it otherwise offers every client, as MUDs do.
	NoCompress bool

	once      sync.Once
	ctx       context.Context // done at Close
	cancel    context.CancelFunc
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	cur       *backendLink
	nextID    uint64
	started   time.Time
	gameMSSP  []byte // the backend's MSSP variables, encoded
	closing   bool
	drained   chan struct{} // closed when the last session ends during Shutdown
	wg        sync.WaitGroup
}

func (s *Server) log() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}

func positive[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (s *Server) maxHeldInput() int { return positive(s.MaxHeldInput, defaultMaxHeldInput) }
func (s *Server) outputQueue() int  { return positive(s.OutputQueue, defaultOutputQueue) }
func (s *Server) slowPlayer() time.Duration {
	return positive(s.SlowPlayerTimeout, defaultSlowPlayer)
}
func (s *Server) writeTimeout() time.Duration { return positive(s.WriteTimeout, defaultWriteTimeout) }

// init prepares the server and starts the goroutine that keeps the backend
// link, once.
func (s *Server) init() {
	s.once.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.started = time.Now()
		s.listeners = make(map[net.Listener]struct{})
		s.sessions = make(map[*session]struct{})
		s.wg.Add(2)
		go s.keepLink()
		go s.shrinkIdle()
	})
}

// shrinkInterval is how often the receive buffers of streams are released.
const shrinkInterval = 10 * time.Second

// shrinkIdle releases the receive buffers that yamux keeps for every stream
// after a burst of output, so that idle sessions cost little memory.
func (s *Server) shrinkIdle() {
	defer s.wg.Done()
	t := time.NewTicker(shrinkInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		list := slices.Collect(maps.Keys(s.sessions))
		s.mu.Unlock()
		for _, ss := range list {
			ss.mu.Lock()
			st := ss.st
			ss.mu.Unlock()
			if st != nil {
				st.Shrink() // a no-op while data waits to be read
			}
		}
	}
}

// Serve accepts players on ln until Close or Shutdown, and then returns
// ErrServerClosed. It may be called for several listeners; it closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.log().Info("gateway: serving players", zap.Stringer("addr", ln.Addr()))

	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if netx.RetryableAccept(err) {
				delay = netx.Backoff(delay, 5*time.Millisecond, time.Second)
				s.log().Warn("gateway: accept failed; retrying", zap.Error(err), zap.Duration("delay", delay))
				time.Sleep(delay)
				continue
			}
			s.mu.Lock()
			delete(s.listeners, ln)
			s.mu.Unlock()
			return err
		}
		delay = 0
		s.start(c)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// start registers a new player's session and starts its goroutines.
func (s *Server) start(c net.Conn) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.nextID++
	ss := newSession(s, strconv.FormatUint(s.nextID, 10), c)
	s.sessions[ss] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.log().Info("gateway: player connected", zap.String("session", ss.id), zap.Stringer("client", c.RemoteAddr()))
	go ss.readPlayer()
}

func (s *Server) remove(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss)
	if len(s.sessions) == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// current returns the live backend link, or nil while there is none.
func (s *Server) current() *backendLink {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Close closes the listeners, every player's connection and the backend
// link at once, and waits for every goroutine the server started.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for ss := range s.sessions {
		ss.abort()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Shutdown stops accepting players, tells those connected that the gateway
// is going away, hangs their sessions up on the backend and closes their
// connections once their output is written, then closes like Close. It
// returns ctx's error if ctx ends first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	var drained chan struct{}
	list := slices.Collect(maps.Keys(s.sessions))
	if len(list) > 0 {
		drained = make(chan struct{})
		s.drained = drained
	}
	s.mu.Unlock()
	for _, ss := range list {
		if ctx.Err() != nil {
			break // a stuck backend can take a second per hang-up; Close ends the rest
		}
		ss.notice(noticeShutdown)
		ss.finish("gateway shutdown", true)
	}
	var err error
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	s.Close()
	return err
}

// setMSSP keeps the game's MSSP variables, less those the gateway itself
// knows better.
func (s *Server) setMSSP(vars []byte) {
	var keep []byte
	for len(vars) > 0 {
		end := bytes.IndexByte(vars[1:], 1) + 1
		if end == 0 {
			end = len(vars)
		}
		one := vars[:end]
		vars = vars[end:]
		name := one[1:]
		if i := bytes.IndexByte(name, 2); i >= 0 {
			name = name[:i]
		}
		if one[0] != 1 || string(name) == "PLAYERS" || string(name) == "UPTIME" {
			continue
		}
		keep = append(keep, one...)
	}
	s.mu.Lock()
	s.gameMSSP = keep
	s.mu.Unlock()
}

// mssp returns the variables for the MSSP crawler on session asking: the
// game's, and the player count (the crawler not included) and start time,
// which the gateway knows even while no backend runs.
func (s *Server) mssp(asking *session) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := bytes.Clone(s.gameMSSP)
	if len(b) == 0 {
		b = link.AppendMSSPVar(b, "NAME", "holdfast")
	}
	players := len(s.sessions)
	if _, ok := s.sessions[asking]; ok {
		players--
	}
	b = link.AppendMSSPVar(b, "PLAYERS", strconv.Itoa(players))
	return link.AppendMSSPVar(b, "UPTIME", strconv.FormatInt(s.started.Unix(), 10))
}
