// Package backend is what a game imports to sit behind a holdfast gateway.
//
// Listen registers the application's name in epmd and accepts the gateway's
// link; Accept returns player sessions. A Session is a net.Conn whose Read
// returns the player's input (telnet already removed, lines ending in "\n")
// and whose Write sends text to the player. It also carries what the gateway
// knows about the player's connection, how many times the session has been
// resumed on a new backend, and a small state that the gateway keeps for the
// application across restarts.
//
// # Input guarantee
//
// The gateway keeps every byte of a session's input until this package
// acknowledges it, which it does once the application, handed the bytes by
// Read or ReadLine, comes back to read: it is done with them. Nothing
// written to the session meanwhile acknowledges them, by the application
// or by any other goroutine; it is held back until the application reads
// again (corkDelay at most), so that the answer and the acknowledgement
// go in one write (a deploy's Release waits for it, 100 ms at most). When a
// backend goes away, whatever it had not acknowledged is delivered to the
// next one, in order. So input is never lost, and a byte is delivered
// twice only when a backend died, or was deployed away from, after the
// application's answer went and before the acknowledgement did. Coming
// back to read stands for having answered: an application whose reader
// hands input to another goroutine has it acknowledged once handed over.
//
// # Gateway upgrades and lost links
//
// When the gateway is upgraded, each session moves to the new gateway
// process without the application noticing: no ErrDetached, no new Accept,
// Resumed unchanged; output written meanwhile is delivered once, in order.
// When a gateway's link breaks, its sessions wait for the gateway to open
// them again (the same gateway on a new link, or its successor); one not
// claimed within Config.OrphanTimeout ends as if the player had left: Read
// returns io.EOF, and the game can log the character out.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/link"
)

// DefaultName is the name a backend registers when Config.Name is empty.
const DefaultName = "game"

// ErrDetached is returned by a Session's methods once the session has left
// this backend: the backend is shutting down, or its link to the gateway is
// gone. The gateway keeps the player and resumes the session elsewhere.
var ErrDetached = errors.New("backend: session detached from this backend")

// Config configures Listen.
type Config struct {
	// Name is registered in epmd. Empty means DefaultName.
	Name string
	// ListenAddr is where the gateway's link is accepted. Empty means
	// 127.0.0.1:0, an ephemeral loopback port.
	ListenAddr string
	// EPMD is the registry's address. Empty means 127.0.0.1 on the port in
	// ERL_EPMD_PORT (default 4369).
	EPMD string
	// Cookie authenticates the link; the gateway must hold the same one.
	Cookie []byte
	// Logger receives link events. Nil logs nothing.
	Logger *zap.Logger
	// Takeover starts a successor to the backend that runs under Name (a
	// deploy): Listen registers nothing, and Ready, once the application
	// is ready, offers this backend to the gateways, which then hand it the
	// running backend's players (see Listener.Ready). With no backend
	// running under Name, Ready simply registers it.
	Takeover bool
	// OrphanTimeout is how long a session whose gateway link has gone waits
	// for a gateway to claim it (the same gateway on a new link, or the
	// gateway process that an upgrade hands it to) before it ends as if the
	// player had left. Zero or negative means DefaultOrphanTimeout.
	OrphanTimeout time.Duration
	// KeptTimeout is the same for a session whose player may come back
	// through another gateway (a browser page, see keep.go), if longer:
	// its page reconnects by itself, and when a gateway with thousands of
	// pages dies they all come back through the others at once. Zero or
	// negative means DefaultKeptTimeout.
	KeptTimeout time.Duration
}

// Listener accepts sessions from gateways.
type Listener struct {
	name     string
	creds    *link.Credentials // the cookie, and this process's instance name and certificate
	log      *zap.Logger
	orphaned time.Duration
	kept     time.Duration
	ln       net.Listener
	client   *epmd.Client
	port     uint16

	accept  chan *Session
	done    chan struct{} // closed when Accept stops handing out sessions
	corks   corks
	linkSeq atomic.Uint64 // numbers the gateway links (gatewayLink.seq)

	mu       sync.Mutex
	reg      *epmd.Registration // the name, once this backend holds it
	next     *epmd.Registration // the successor's name, while it takes over
	mssp     []byte             // the game's MSSP variables, encoded, for every gateway
	links    map[*gatewayLink]struct{}
	sessions map[*Session]struct{}
	byID     map[string]*Session
	idle     chan struct{} // closed when the last session closes
	stopping bool
	retiring bool // a gateway said Retire: the backend stops once every gateway linked has
	wg       sync.WaitGroup
}

// Listen listens for the gateway's link and registers cfg.Name in epmd. The
// registration is kept, and renewed by itself if the registry restarts,
// until Close or Shutdown.
func Listen(ctx context.Context, cfg Config) (*Listener, error) {
	if len(cfg.Cookie) == 0 {
		return nil, errors.New("backend: no cookie")
	}
	name, addr := cfg.Name, cfg.ListenAddr
	if name == "" {
		name = DefaultName
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("backend: listen: %w", err)
	}
	creds, err := link.NewCredentials(cfg.Cookie)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("backend: %w", err)
	}
	// Gateways move players only to a backend that started after the one
	// they are linked to: the order is proven with the instance.
	creds.Instance = link.NewInstance(processStart())
	port := ln.Addr().(*net.TCPAddr).Port
	client := &epmd.Client{Addr: cfg.EPMD}
	var reg *epmd.Registration
	if !cfg.Takeover {
		reg, err = client.Register(ctx, epmd.Node{Name: name, Port: uint16(port)}, log)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("backend: register %q: %w", name, err)
		}
	}
	l := &Listener{
		client:   client,
		port:     uint16(port),
		name:     name,
		creds:    creds,
		log:      log,
		orphaned: cfg.OrphanTimeout,
		kept:     cfg.KeptTimeout,
		ln:       ln,
		reg:      reg,
		accept:   make(chan *Session),
		done:     make(chan struct{}),
		links:    make(map[*gatewayLink]struct{}),
		sessions: make(map[*Session]struct{}),
		byID:     make(map[string]*Session),
	}
	l.wg.Add(2)
	go l.serve()
	go l.shrinkIdle()
	return l, nil
}

func (l *Listener) orphanTimeout() time.Duration {
	if l.orphaned <= 0 {
		return DefaultOrphanTimeout
	}
	return l.orphaned
}

func (l *Listener) keptTimeout() time.Duration {
	k := l.kept
	if k <= 0 {
		k = DefaultKeptTimeout
	}
	return max(k, l.orphanTimeout())
}

// shrinkIdle releases the receive buffers yamux keeps for every stream
// after a burst of input, so that idle sessions cost little memory.
func (l *Listener) shrinkIdle() {
	defer l.wg.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		for _, s := range l.list() {
			s.mu.Lock()
			cur := s.cur
			s.mu.Unlock()
			if cur != nil { // opened held: no stream yet
				cur.Shrink() // a no-op while data waits to be read
			}
		}
	}
}

// Addr returns the address the link is accepted on.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept returns the next session: a new player, or a held one resumed on
// this backend (Resumed() > 0). It returns net.ErrClosed after Close or
// Shutdown.
func (l *Listener) Accept() (*Session, error) {
	select {
	case s := <-l.accept:
		return s, nil
	case <-l.done:
		return nil, fmt.Errorf("backend: accept: %w", net.ErrClosed)
	}
}

func (l *Listener) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("backend: accept failed", zap.Error(err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		l.wg.Add(1)
		go l.serveLink(c)
	}
}

type gatewayLink struct {
	seq  uint64 // the order broadcastParked takes the links' bcast in
	log  *zap.Logger
	conn net.Conn
	mux  *link.Mux

	mu   sync.Mutex
	ctrl net.Conn // the control stream, once the gateway opened it

	// bcast is held (read) while a Broadcast decides which of the link's
	// sessions are parked and sends them its frame, and (write) while a
	// session's stream is ended by a Move or a Release, so that a line
	// broadcast to a parked stream reaches the gateway before its end.
	bcast sync.RWMutex

	// Wakes, and held sessions' frames (HeldFrames, encoded), wait here
	// for one writer, so that a line written to many parked or held
	// sessions at once goes in a few writes. They are taken only with mu
	// held, so that a frame written on the control stream goes after
	// every held frame queued before it.
	wmu    sync.Mutex
	wakes  []string
	held   []byte
	waking bool
	closed bool           // no more writers start
	waker  sync.WaitGroup // the writer, which the link's end waits for

	retired bool // the gateway said Retire on it (guarded by the Listener's mu)

	// features is what the gateway said it can do (link.Features), read
	// by the control stream's reader only; heldFrames, whether it takes
	// HeldFrames, by the sessions' writers.
	features   link.Features
	heldFrames atomic.Bool
	// dead is set once the link has failed, before its sessions are
	// orphaned: a Hold still being read then holds nothing.
	dead atomic.Bool
}

// wake has the gateway read the session's stream again (see link.FramePark).
func (gl *gatewayLink) wake(id string) {
	gl.wmu.Lock()
	defer gl.wmu.Unlock()
	gl.wakes = append(gl.wakes, id)
	gl.startWriterLocked()
}

// controlWriteWait bounds each piece of a write on the control stream
// (link.WritePieces): a gateway that takes in nothing for that long is
// taken for gone, but one that reads slowly is not, however long the held
// frames queued (up to maxHeldQueue) take.
const controlWriteWait = 10 * time.Second

// maxHeldQueue bounds the held frames waiting for the control stream's
// writer: beyond it a held session's frames wait for a stream of its own,
// where the gateway's reading paces them.
const maxHeldQueue = 256 << 10

// queueHeld queues a held session's frames for the gateway, as a
// HeldFrames frame; it reports false, queueing nothing, when the queue is
// full or the link is closing.
func (gl *gatewayLink) queueHeld(id string, frames []byte) bool {
	gl.wmu.Lock()
	defer gl.wmu.Unlock()
	n := link.HeaderLen + 2 + len(id) + len(frames)
	if gl.closed || gl.dead.Load() || len(gl.held)+n > maxHeldQueue {
		return false
	}
	gl.held = link.AppendFrameHeader(gl.held, link.FrameHeldFrames, n-link.HeaderLen)
	gl.held = link.AppendHeldFrames(gl.held, id, frames)
	gl.startWriterLocked()
	return true
}

func (gl *gatewayLink) startWriterLocked() {
	if !gl.waking && !gl.closed {
		gl.waking = true
		gl.waker.Go(gl.sendWakes)
	}
}

// stopWakes waits for the wakes' writer to finish, and starts no other.
func (gl *gatewayLink) stopWakes() {
	gl.wmu.Lock()
	gl.closed = true
	gl.wmu.Unlock()
	gl.waker.Wait()
}

// sendWakes sends the queued held frames and wakes until none is left.
// It yields before each write, so that the applications answering at that
// moment (thousands, after a restart) add their frames to the write: with
// a write for every three or four sessions, a resume of 15,000 cost the
// backend a quarter more processor time, and the gateway's reads more.
func (gl *gatewayLink) sendWakes() {
	for {
		runtime.Gosched()
		gl.mu.Lock()
		gl.wmu.Lock()
		if len(gl.wakes) == 0 && len(gl.held) == 0 {
			gl.waking = false
			gl.wmu.Unlock()
			gl.mu.Unlock()
			return
		}
		ids := gl.wakes[:min(len(gl.wakes), link.MaxMove)]
		gl.wakes = gl.wakes[len(ids):]
		if len(gl.wakes) == 0 {
			gl.wakes = nil
		}
		gl.wmu.Unlock()
		// The held frames first: a session's frames before its Wake.
		var wake []byte
		if len(ids) > 0 {
			wake = link.AppendFrame(nil, link.FrameWake, link.AppendMove(nil, ids))
		}
		gl.writeLocked(wake)
		gl.mu.Unlock()
	}
}

// control sends a frame on the control stream, if it is open yet, after
// the held frames queued.
func (gl *gatewayLink) control(typ link.FrameType, payload []byte) error {
	gl.mu.Lock()
	defer gl.mu.Unlock()
	return gl.writeLocked(link.AppendFrame(nil, typ, payload))
}

// writeLocked writes the held frames queued, then frame, in one write on
// the control stream; gl.mu is held.
func (gl *gatewayLink) writeLocked(frame []byte) error {
	gl.wmu.Lock()
	b := gl.held
	gl.held = nil
	gl.wmu.Unlock()
	if gl.ctrl == nil {
		return net.ErrClosed
	}
	b = append(b, frame...)
	if len(b) == 0 {
		return nil
	}
	if err := link.WritePieces(gl.ctrl, b, controlWriteWait); err != nil {
		gl.log.Warn("backend: control stream write failed; closing the link", zap.Error(err))
		// Part of a frame may have gone: nothing after it would parse.
		// The link ends, and its sessions wait for the gateway to open
		// them again. Not here: closing waits for the link's reader,
		// which may wait for a lock the caller holds (see broken); on the
		// writers' group, which the link's end waits for (unless it is
		// ending already).
		gl.wmu.Lock()
		if !gl.closed {
			gl.waker.Go(func() { gl.mux.Close() })
		}
		gl.wmu.Unlock()
		return err
	}
	return nil
}

// broken runs when a gateway's link fails, before any stream learns of
// it: the link's sessions wait for a gateway to claim them.
func (l *Listener) broken(gl *gatewayLink) {
	gl.dead.Store(true)
	for _, s := range l.list() {
		s.mu.Lock()
		on := s.gl == gl
		s.mu.Unlock()
		if on {
			s.orphan()
		}
	}
}

// retire records that the gateway on gl has moved every player it had here
// to this backend's successor. The backend stops once every gateway linked
// has said so: another gateway, or the new process of a gateway's upgrade,
// may still have players here, and would lose them.
func (l *Listener) retire(gl *gatewayLink) {
	l.mu.Lock()
	gl.retired, l.retiring = true, true
	all := l.allRetiredLocked()
	l.mu.Unlock()
	if !all {
		l.log.Info("backend: a gateway moved its players to the successor; waiting for the other gateways")
		return
	}
	if l.stop() {
		l.log.Info("backend: every player went to the successor; stopping")
	}
}

// allRetiredLocked reports whether a gateway said Retire and every gateway
// still linked has.
func (l *Listener) allRetiredLocked() bool {
	if !l.retiring {
		return false
	}
	for gl := range l.links {
		if !gl.retired {
			return false
		}
	}
	return true
}

// MSSPVar is one variable of the server status that MUD crawlers ask for
// (MSSP): NAME, CODEBASE, CONTACT, WEBSITE... A variable may have several
// values.
type MSSPVar struct {
	Name   string
	Values []string
}

// SetMSSP gives the gateways the game's MSSP variables. They answer
// crawlers themselves, adding PLAYERS and UPTIME, also while no backend
// runs.
func (l *Listener) SetMSSP(vars []MSSPVar) {
	var b []byte
	for _, v := range vars {
		b = link.AppendMSSPVar(b, v.Name, v.Values...)
	}
	l.mu.Lock()
	l.mssp = b
	links := slices.Collect(maps.Keys(l.links))
	l.mu.Unlock()
	for _, gl := range links {
		gl.control(link.FrameMSSP, b)
	}
}

func (l *Listener) serveLink(c net.Conn) {
	defer l.wg.Done()
	raw := c
	c, err := link.BackendHandshake(raw, l.creds)
	if err != nil {
		l.log.Warn("backend: gateway link refused", zap.Stringer("peer", raw.RemoteAddr()), zap.Error(err))
		raw.Close()
		return
	}
	gl := &gatewayLink{conn: c, log: l.log, seq: l.linkSeq.Add(1)}
	mux := link.Server(c, func() { l.broken(gl) }, l.log)
	gl.mux = mux
	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		mux.Close()
		return
	}
	l.links[gl] = struct{}{}
	l.mu.Unlock()
	// The gateway opens the control stream first: take it before any
	// session, so that a Goodbye always has somewhere to go.
	if st, err := mux.AcceptStream(); err == nil {
		l.wg.Add(1)
		l.serveStream(gl, st)
	}
	l.log.Info("backend: gateway linked", zap.Stringer("peer", c.RemoteAddr()))
	defer func() {
		mux.Close()
		gl.stopWakes()
		l.mu.Lock()
		delete(l.links, gl)
		retire := l.allRetiredLocked()
		l.mu.Unlock()
		l.log.Info("backend: gateway link closed", zap.Stringer("peer", c.RemoteAddr()))
		if retire && l.stop() {
			l.log.Info("backend: every player went to the successor; stopping")
		}
	}()
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return
		}
		if gl.dead.Load() {
			// A stream accepted after broken has run: its session
			// would miss broken's orphaning. Not closed: the link
			// ends every stream as it ends.
			continue
		}
		l.wg.Add(1)
		go l.serveStream(gl, st)
	}
}

// serveStream reads a stream's first frame and either keeps it as the
// control stream or hands a new session to Accept.
func (l *Listener) serveStream(gl *gatewayLink, st *link.Stream) {
	defer l.wg.Done()
	st.SetReadDeadline(time.Now().Add(link.HandshakeTimeout))
	fr := link.Reader{R: st}
	typ, _, err := fr.Next()
	if err != nil {
		st.Close()
		return
	}
	switch typ {
	case link.FrameControl:
		st.SetReadDeadline(time.Time{})
		gl.mu.Lock()
		gl.ctrl = st
		gl.mu.Unlock()
		gl.control(link.FrameFeatures, link.AppendFeatures(nil, link.FeatureHold|link.FeatureOpenHeld|link.FeatureHeldFrames|link.FeatureStow|link.FeatureStowKept))
		l.mu.Lock()
		mssp := l.mssp
		l.mu.Unlock()
		if mssp != nil {
			gl.control(link.FrameMSSP, mssp)
		}
		l.wg.Add(1)
		go l.readControl(gl, st)
		return
	case link.FrameOpen:
	default:
		l.log.Warn("backend: stream opened with unexpected frame", zap.Stringer("type", typ))
		st.Close()
		return
	}
	p, err := fr.Payload()
	var o link.Open
	if err == nil {
		o, err = link.ParseOpen(p)
	}
	if err != nil {
		l.log.Warn("backend: bad session open", zap.Error(err))
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})
	if o.Claim != "" {
		l.claimed(gl, st, &o)
		return
	}
	var s *Session
	for s == nil {
		old := l.lookup(o.ID)
		if old != nil && old.adopt(gl, st, &o) {
			return // the session carries on, on this stream
		}
		s = newSession(l, gl, st, &o)
		switch l.track(s, old) {
		case errStopping:
			st.Close()
			return
		case errRaced:
			s = nil // started meanwhile from an OpenHeld: this stream carries it on
		}
	}
	select {
	case l.accept <- s:
	case <-l.done:
		s.detach()
		s.Close()
	}
}

// Why track did not record a session.
var (
	errStopping = errors.New("backend: stopping")
	errRaced    = errors.New("backend: another session of that id started meanwhile")
)

// track records a new session in place of prev, the session of its id
// that the caller found (nil: none). A gateway may open a session on a
// stream and in an OpenHeld at once, read by two goroutines here: the
// second to start it finds the first in prev's place (errRaced), and
// takes that one instead, so that there is one session for each id.
func (l *Listener) track(s, prev *Session) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.stopping:
		return errStopping
	case l.byID[s.id] != prev:
		return errRaced
	}
	l.sessions[s] = struct{}{}
	l.byID[s.id] = s
	return nil
}

// lookup returns the session the gateway calls id, if this backend holds it.
func (l *Listener) lookup(id string) *Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return nil
	}
	return l.byID[id]
}

func (l *Listener) list() []*Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Collect(maps.Keys(l.sessions))
}

// readControl reads what a gateway sends on its control stream: the
// sessions it moves to another gateway process, or hands to this
// backend's successor, and the word to retire.
func (l *Listener) readControl(gl *gatewayLink, st *link.Stream) {
	defer l.wg.Done()
	fr := link.Reader{R: st}
	for {
		typ, _, err := fr.Next()
		if err != nil {
			// A link whose control stream is not read is no link: a
			// frame past the bound, or the stream's end, ends it, and the
			// gateway opens its sessions again on the next.
			if !errors.Is(err, io.EOF) && !gl.dead.Load() {
				l.log.Warn("backend: control stream unreadable; closing the link", zap.Error(err))
			}
			gl.mux.Close()
			return
		}
		if typ == link.FrameRetire {
			l.retire(gl)
			continue
		}
		switch typ {
		case link.FrameMove, link.FrameRelease, link.FramePark, link.FrameHold, link.FrameDrop, link.FrameFeatures, link.FrameOpenHeld, link.FrameWant, link.FrameStow,
			link.FrameHeldOutAck:
		default:
			continue // from a later version
		}
		p, err := fr.Payload()
		if err != nil {
			return
		}
		if typ == link.FrameFeatures {
			if f, err := link.ParseFeatures(p); err == nil {
				gl.features = f
				gl.heldFrames.Store(f&link.FeatureHeldFrames != 0)
			}
			continue
		}
		if typ == link.FrameHeldOutAck {
			if id, off, err := link.ParseHeldOutAck(p); err == nil {
				if s := l.lookup(id); s != nil {
					s.heldOutAck(gl, off)
				}
			}
			continue
		}
		if typ == link.FrameOpenHeld {
			opens, err := link.ParseOpenHeld(p)
			if err != nil {
				// Its sessions would wait for ever on a gateway that
				// thinks them held: it resumes them on the next link.
				l.log.Warn("backend: bad held open; closing the link", zap.Error(err))
				gl.mux.Close()
				return
			}
			l.openHeldAll(gl, opens)
			continue
		}
		ids, err := link.ParseMove(p)
		if err != nil {
			l.log.Warn("backend: bad move", zap.Error(err))
			continue
		}
		switch typ {
		case link.FrameHold:
			l.holdAll(gl, ids)
			continue
		case link.FrameDrop:
			l.dropAll(gl, ids)
			continue
		case link.FrameWant:
			l.wantAll(gl, ids)
			continue
		case link.FrameStow:
			l.stowAll(gl, ids)
			continue
		}
		if typ == link.FramePark {
			// Parked waits for room in the stream's window, which a
			// stream the gateway cannot read now (its player is slow)
			// may not have: the control stream goes on meanwhile.
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for _, id := range ids {
					if s := l.lookup(id); s != nil {
						s.park(gl)
					}
				}
			}()
			continue
		}
		if typ == link.FrameRelease && answeredMeanwhile != nil {
			answeredMeanwhile()
		}
		var quiet link.Broadcast // the sessions let go without a word on a stream
		var answering []answeringRelease
		for _, id := range ids {
			if s := l.lookup(id); s != nil {
				gl.bcast.Lock()
				switch {
				case typ == link.FrameRelease && gl.features&link.FeatureMovedParked != 0 && s.releaseHeld(gl):
					quiet.To = append(quiet.To, link.Parked{ID: id}) // held: no stream, no Parked
				case typ == link.FrameRelease && gl.features&link.FeatureReleasedParked != 0:
					if park, ok := s.releaseParked(gl); ok {
						quiet.To = append(quiet.To, link.Parked{ID: id, Park: park})
						break
					}
					if back := s.tryRelease(gl); back != nil {
						answering = append(answering, answeringRelease{s, back})
					}
				case typ == link.FrameRelease:
					if back := s.tryRelease(gl); back != nil {
						answering = append(answering, answeringRelease{s, back})
					}
				case s.moveHeld(gl):
					// Held there, and let go of by that gateway: the
					// orphan clock runs until the next process takes it.
					// A gateway that takes HeldFrames waits for this
					// answer, after the last of them.
					if gl.features&link.FeatureHeldFrames != 0 {
						quiet.To = append(quiet.To, link.Parked{ID: id})
					}
				case gl.features&link.FeatureMovedParked != 0:
					if park, ok := s.moveParked(gl); ok {
						quiet.To = append(quiet.To, link.Parked{ID: id, Park: park})
						break
					}
					s.beginMove(gl)
				default:
					s.beginMove(gl)
				}
				gl.bcast.Unlock()
			}
		}
		if len(quiet.To) > 0 {
			gl.control(link.FrameMovedParked, quiet.Append(nil))
		}
		releaseAnswering(gl, answering)
	}
}

// answeredMeanwhile, for the tests, runs as a Release comes, before its
// sessions are released: an application that writes its answer then.
var answeredMeanwhile func()

// answeringRelease is a session a Release found answering, its answer
// written, and back closed when its application comes back to read.
type answeringRelease struct {
	s    *Session
	back <-chan struct{}
}

// releaseAnswering releases the sessions a Release found answering once
// their applications come back, answerWait at most in all (then as they
// are: at least once, their lines are answered again by the successor),
// as a server draining waits for the requests in flight. An application
// back to read may take the next line at once, and answer it: it is
// waited for again, within the same bound.
func releaseAnswering(gl *gatewayLink, answering []answeringRelease) {
	if len(answering) == 0 {
		return
	}
	deadline := time.NewTimer(answerWait)
	defer deadline.Stop()
	late := false
	for _, a := range answering {
		for back := a.back; back != nil; {
			if !late {
				select {
				case <-back:
				case <-deadline.C:
					late = true
				}
			}
			gl.bcast.Lock()
			if late {
				a.s.release(gl)
				back = nil
			} else {
				back = a.s.tryRelease(gl)
			}
			gl.bcast.Unlock()
		}
	}
}

// answerWait bounds how long a Release waits for the applications of its
// sessions to come back from the input they answer (releaseAnswering): a
// game's command takes far less, but a busy machine may not run its
// goroutine for some milliseconds, and the successor would then answer
// the line again. Only sessions answering a line wait, a few at most. A
// variable for the tests.
var answerWait = 100 * time.Millisecond

func (l *Listener) untrack(s *Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.sessions, s)
	if l.byID[s.id] == s {
		delete(l.byID, s.id)
	}
	if len(l.sessions) == 0 && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
}

// stop ends accepting and unregisters; it reports whether it was the first
// call.
func (l *Listener) stop() bool {
	l.mu.Lock()
	if l.stopping {
		l.mu.Unlock()
		return false
	}
	l.stopping = true
	close(l.done)
	reg, next := l.reg, l.next
	l.mu.Unlock()
	l.ln.Close()
	if reg != nil {
		reg.Close()
	}
	if next != nil {
		next.Close()
	}
	return true
}

// Close closes the listener and every link at once. Sessions' methods
// return ErrDetached; the gateway keeps the players and replays whatever the
// application had not yet acknowledged to the next backend.
func (l *Listener) Close() error {
	l.stop()
	l.mu.Lock()
	links := slices.Collect(maps.Keys(l.links))
	sessions := slices.Collect(maps.Keys(l.sessions))
	l.mu.Unlock()
	for _, s := range sessions {
		s.detach()
	}
	// Not under l.mu: closing a link waits for its reader, which may be in
	// broken, which takes l.mu.
	for _, gl := range links {
		gl.mux.Close()
	}
	l.wg.Wait()
	return nil
}

// Shutdown leaves gracefully: it unregisters the name, tells each gateway
// that this backend is going, and detaches every session, so that the
// application's reads return ErrDetached; input it was not handed goes to the
// next backend. It then waits until the application has closed all its
// sessions, which flushes their output, acknowledgements and state, or until
// ctx is done, and closes the links.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.stop()
	l.mu.Lock()
	for gl := range l.links {
		gl.control(link.FrameGoodbye, nil)
	}
	var idle chan struct{}
	if len(l.sessions) > 0 {
		idle = make(chan struct{})
		l.idle = idle
	}
	for s := range l.sessions {
		s.detach()
	}
	l.mu.Unlock()
	var err error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	l.Close()
	return err
}
