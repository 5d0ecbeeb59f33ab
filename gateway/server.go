// Package gateway is the long-lived side of holdfast: it accepts players'
// telnet connections, holds each session, and carries it over one link
// to whichever backend currently answers to the configured name. When the
// backend goes away the players stay connected, their input is held, and
// every session is resumed when a backend registers the name again.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/internal/netx"
	"holdfast/link"
)

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("gateway: server closed")

const (
	defaultBackend          = "game"
	defaultMaxHeldInput     = 64 << 10
	defaultOutputQueue      = 256 << 10
	defaultSlowPlayer       = 30 * time.Second
	defaultWriteTimeout     = 30 * time.Second
	lookupInterval          = 100 * time.Millisecond
	goodbyeGrace            = 30 * time.Second
	defaultHandshakeTimeout = 10 * time.Second
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

	// MaxSessions bounds the sessions held at once; zero means no bound.
	// Players beyond it are told the game is full and disconnected.
	MaxSessions int
	// MaxPerIP bounds the sessions held for one client address (an IPv6
	// client's /64); zero means no bound.
	MaxPerIP int
	// ConnRate bounds how many connections per second one client address
	// may open, with bursts of ConnBurst; zero means no bound.
	ConnRate  float64
	ConnBurst int
	// HandshakeTimeout bounds what a connection must do before it is a
	// session: send its PROXY header, finish its TLS handshake. Zero or
	// negative means 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout disconnects a player who sends nothing for that long,
	// with a line saying why. Zero means never: holding idle players is
	// what the gateway is for.
	IdleTimeout time.Duration
	// HoldIdle is how long a session's backend stream stays parked before
	// the backend is asked to hold the session without one (Stow): an
	// idle player then costs the link no stream, and the next line costs
	// a round trip on the link to open one. Zero means 10 s; negative,
	// never.
	HoldIdle time.Duration
	// Metrics, if set, has the gateway's Prometheus metrics registered in
	// it at the first Serve.
	Metrics prometheus.Registerer
	// Reconnect, in a process taking sessions over from another, rebuilds a
	// player's connection that moved without its socket: a browser's, whose
	// page opens a new WebSocket to this process (see web.Listener.Restore).
	// Nil refuses such sessions, and they stay where they were.
	Reconnect func(state []byte) (net.Conn, error)
	// PreferBackend is the address of a backend to link to first, before
	// the registry is asked: the new process of an upgrade links to the
	// backend the old one is linked to, which holds the sessions it takes
	// (during a deploy the registry's name may lead to the other backend).
	// Empty asks the registry.
	PreferBackend string
	// DrainMessage is what a drain tells telnet players (see Drain). Empty
	// means a notice that the server goes down for maintenance.
	DrainMessage string
	// DrainTimeout is how long a drain lets telnet players stay before
	// they are disconnected. Zero means 10 minutes; negative, at once.
	DrainTimeout time.Duration

	once      sync.Once
	ctx       context.Context // done at Close
	cancel    context.CancelFunc
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	cur       *backendLink
	// linkedWait, if set, is closed when a link is established.
	linkedWait chan struct{}
	successor  *backendLink // a backend that took the players over, to be served next
	idPrefix   string       // this process's, so that ids are unique across restarts and gateways
	nextID     uint64
	started    time.Time
	gameMSSP   []byte // the backend's MSSP variables, encoded
	closing    bool
	drained    chan struct{}         // closed when the last session ends during Shutdown
	pending    map[net.Conn]struct{} // connections still in their handshake
	npending   int                   // places held by passes (see Pass)
	pendingIP  map[netip.Addr]int    // the same, by client address
	perIP      map[netip.Addr]int
	buckets    map[netip.Addr]*bucket
	metrics    *metrics
	wg         sync.WaitGroup

	moveTok    chan struct{} // held by the move under way: see BeginMove
	moveHolder string        // what kind of move holds it

	relays   sync.WaitGroup // relays (TLS, WebSocket) for sessions another process holds
	relaySet map[*relay]struct{}
	moved    []net.Conn // sockets another process took, this process's descriptors still open: see CloseMoved
	parker   *parker    // idle players' sockets, waiting without a reader each; nil: none
	drain    drainState
	stowedN  atomic.Int64 // sessions stowed since the last sweep
	answers  answerDelays // how late the latest clients answered the telnet offers
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
func (s *Server) handshakeTimeout() time.Duration {
	return positive(s.HandshakeTimeout, defaultHandshakeTimeout)
}

// init prepares the server and starts the goroutine that keeps the backend
// link, once.
func (s *Server) init() {
	s.once.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.started = time.Now()
		s.idPrefix = newIDPrefix()
		s.listeners = make(map[net.Listener]struct{})
		s.sessions = make(map[*session]struct{})
		s.pending = make(map[net.Conn]struct{})
		s.perIP = make(map[netip.Addr]int)
		s.pendingIP = make(map[netip.Addr]int)
		s.buckets = make(map[netip.Addr]*bucket)
		s.metrics = newMetrics()
		s.moveTok = make(chan struct{}, 1)
		if s.Metrics != nil {
			for _, c := range append(s.metrics.collectors(), collector{s}) {
				if err := s.Metrics.Register(c); err != nil {
					s.log().Error("gateway: metrics not registered", zap.Error(err))
				}
			}
		}
		s.wg.Add(2)
		go s.keepLink()
		go s.sweepIdle()
		if s.parker = newParker(); s.parker != nil {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.parker.run((*session).wake)
			}()
		}
	})
}

// Start makes the server look for its backend and link to it, before it
// serves any player: a gateway taking over from another links first.
func (s *Server) Start() { s.init() }

// parkInterval is how often quiet streams are parked: a stream that
// brought nothing for a whole interval has its reader let go (see
// link.FramePark). Short, because the runtime never frees a goroutine's
// record: the readers a login storm has alive at once stay in memory for
// good, and their number is the storm's rate times how long each new
// player keeps its readers. At 250 ms a storm of 15,000 logins had about
// 6,000 goroutines at its peak against 10,000 at 500 ms, and each idle
// player settled 0.1 to 0.4 KiB smaller; the sweep of 15,000 idle
// sessions costs under 1% of a core.
const parkInterval = 250 * time.Millisecond

// shrinkInterval is how often the receive buffers of streams are released.
const shrinkInterval = 10 * time.Second

// sweepIdle parks the streams found quiet, and now and then releases the
// receive buffers that yamux keeps for every stream after a burst of
// output, so that idle sessions cost little memory.
func (s *Server) sweepIdle() {
	defer s.wg.Done()
	t := time.NewTicker(parkInterval)
	defer t.Stop()
	var parked int // in the current burst
	var calm int   // sweeps since the last one that parked many
	var released time.Time
	hold := s.holdSweeps()
	// all is every session, listed again at each sweep in the same
	// memory: twice a second, a new list of tens of thousands would be
	// garbage the collector scans for nothing.
	var all []*session
	for n := 1; ; n++ {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		shrink := n%int(shrinkInterval/parkInterval) == 0
		quiet := map[*backendLink][]string{}
		due := map[*backendLink][]*session{}
		unstowed := 0 // streams parked that are to be stowed, or being
		all = s.appendList(all[:0])
		for _, ss := range all {
			ss.mu.Lock()
			st, lk := ss.st, ss.lk
			if _, ok := ss.cond.next(evAskPark); ok && !ss.inFrame.Load() && !ss.streamBusy.Swap(false) {
				ss.to(evAskPark)
				quiet[lk] = append(quiet[lk], ss.ID)
			}
			if hold > 0 {
				switch now, later := ss.stowDue(hold); {
				case now:
					due[lk] = append(due[lk], ss)
				case later:
					unstowed++
				}
			}
			ss.mu.Unlock()
			if shrink && st != nil {
				st.Shrink() // a no-op while data waits to be read
			}
		}
		clear(all) // sessions that end before the next sweep are not kept
		stow(due)
		// Streams stowed count as parked: each leaves its buffers and its
		// stream free in the heap.
		parking := int(s.stowedN.Swap(0))
		for lk, ids := range quiet {
			lk.park(ids)
			parking += len(ids)
		}
		// Thousands of streams parked in one burst (after a login storm,
		// a restart, an upgrade) have left the stacks and buffers that
		// served them free in the heap: once the burst is over, hand them
		// back to the system rather than at the runtime's next
		// collection, minutes away. Players coming and going a few at a
		// time make no burst.
		// A release held back by the last one's being too recent comes at
		// the first quiet sweep after, not with the next burst. Streams
		// that the burst parked and that are to be stowed are waited for,
		// up to HoldIdle and the sweeps a Stow takes: stowed, each
		// leaves its stream free.
		parked += parking
		calm++
		switch {
		case parking >= burstSweep:
			calm = 0
		case parked < releaseAfter:
			parked = 0
		case unstowed >= releaseAfter/10 && calm <= hold+2: // a sweep to park, one to answer
		case time.Since(released) > releaseEvery:
			// The streams' receive buffers first, or the next shrink
			// makes them garbage that nothing collects while all is quiet.
			s.shrinkStreams()
			debug.FreeOSMemory()
			released = time.Now()
			parked = 0
		}
	}
}

// shrinkStreams releases the receive buffers of every session's stream.
func (s *Server) shrinkStreams() {
	for _, ss := range s.list() {
		ss.mu.Lock()
		st := ss.st
		ss.mu.Unlock()
		if st != nil {
			st.Shrink() // a no-op while data waits to be read
		}
	}
}

// The memory of many sessions gone idle is released after a burst of at
// least releaseAfter parked streams, once a sweep parks fewer than a tenth
// of that a second (burstSweep), at most once every releaseEvery: memory
// given back is paid for again, in page faults, when the next burst (a
// restart's resume, say) takes it, so a gateway whose players come and go
// in bursts keeps it.
const (
	releaseAfter = 1000
	releaseEvery = 30 * time.Second
	burstSweep   = releaseAfter / 10 * int(parkInterval/time.Millisecond) / 1000
)

// Serve accepts players on ln until Close or Shutdown, and then returns
// ErrServerClosed. It may be called for several listeners; it closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing || s.drainingLocked() {
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
			if s.isClosing() || s.isDraining() {
				s.mu.Lock()
				delete(s.listeners, ln)
				s.mu.Unlock()
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
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.pending[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.admit(c)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// admit checks the limits against a new connection's address before its
// handshake (TLS) costs anything, finishes the handshake within them, and
// starts the player's session. A connection admitted before it came here
// (a WebSocket, see AdmitSession) brings its pass.
func (s *Server) admit(c net.Conn) {
	defer s.wg.Done()
	// RemoteAddr reads a PROXY header where the listener expects one, with
	// the listener's own bound: the address the limits count by.
	addr := c.RemoteAddr()
	ip := clientIP(addr)
	pass := s.passOf(c)
	if pass == nil {
		s.mu.Lock()
		why := ""
		if !s.closing {
			why = s.reserveLocked(ip, time.Now(), true, true)
		}
		if s.closing || why != "" {
			delete(s.pending, c)
			closing := s.closing
			s.mu.Unlock()
			if closing {
				c.Close()
				return
			}
			s.metrics.refused.WithLabelValues(why).Inc()
			s.log().Info("gateway: player refused", zap.Stringer("client", addr), zap.String("limit", why))
			s.refuseUnshaken(c, why)
			return
		}
		pass = &Pass{s: s, ip: ip}
		s.mu.Unlock()
	}
	// A zero-length Read finishes a TLS handshake or reports a bad PROXY
	// header; the place taken counts against the limits meanwhile.
	c.SetDeadline(time.Now().Add(s.handshakeTimeout()))
	_, err := c.Read(nil)
	c.SetDeadline(time.Time{})
	// A page back from another gateway claims its session there: with the
	// page's typing from where the game had it, if the backend takes the
	// token, and else it ends. A session held here under that id is the
	// page's own, whose token this gateway would know: a claim of it can
	// only be somebody else's, and would take its place on the link.
	k, _ := c.(keeper)
	var claim struct {
		id, token string
		in, out   uint64
		ok        bool
	}
	if k != nil && k.Keeps() {
		claim.id, claim.token, claim.in, claim.out, claim.ok = k.Claim()
	}
	if err == nil && claim.ok {
		if cur := s.current(); cur != nil && cur.holds(claim.id) {
			err = fmt.Errorf("gateway: a claim of session %q, which is held here", claim.id)
		}
	}
	s.mu.Lock()
	delete(s.pending, c)
	if err != nil || s.closing {
		pass.releaseLocked()
		s.mu.Unlock()
		if err != nil {
			s.log().Info("gateway: handshake failed", zap.Stringer("client", addr), zap.Error(err))
		}
		c.Close()
		return
	}
	pass.releaseLocked() // a session from here on, counted as one
	ip = pass.ip
	s.nextID++
	id := s.idPrefix + strconv.FormatUint(s.nextID, 10)
	if claim.ok {
		id = claim.id
	}
	ss := newSession(s, id, c, addr, ip)
	if claim.ok {
		ss.rareFields().claim = claim.token
		ss.InOff, ss.OutOff, ss.Opened = claim.in, claim.out, true
	}
	s.sessions[ss] = struct{}{}
	s.perIP[ip]++
	s.mu.Unlock()
	ss.keep()
	s.metrics.connects.Inc()
	s.log().Info("gateway: player connected", zap.String("session", ss.ID), zap.Stringer("client", addr))
	// A goroutine of its own, not this one: the handshake and the logging
	// above grow a stack past what a held session needs, and the player's
	// reader keeps its stack for as long as the player stays.
	ss.startReader((*session).readPlayer)
}

// list returns the sessions held now.
func (s *Server) list() []*session { return s.appendList(nil) }

// appendList appends every session to all.
func (s *Server) appendList(all []*session) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	all = slices.Grow(all, len(s.sessions))
	for ss := range s.sessions {
		all = append(all, ss)
	}
	return all
}

func (s *Server) remove(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss)
	if s.perIP[ss.IP]--; s.perIP[ss.IP] <= 0 {
		delete(s.perIP, ss.IP)
	}
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
	for c := range s.pending {
		c.Close()
	}
	for r := range s.relaySet {
		r.tc.Close()
		r.local.Close()
	}
	s.mu.Unlock()
	s.CloseMoved()
	s.cancel()
	if s.parker != nil {
		s.parker.stop()
	}
	s.wg.Wait()
	s.relays.Wait()
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
		ss.finish(endShutdown, true)
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
