package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/gateway/telnet"
	"holdfast/internal/netx"
	"holdfast/link"
)

// backendLink is one authenticated link to a backend.
type backendLink struct {
	addr    string
	mux     *link.Mux
	ctrl    *link.Stream
	goodbye chan struct{} // closed when the backend says it is leaving
	once    sync.Once
	ctrlEnd chan struct{} // closed when the control stream has been read to its end
	dead    atomic.Bool   // the connection failed: nothing more is written
	readers atomic.Int64  // session streams' readers still running

	// instance names the backend process, learnt in the handshake over
	// the authenticated channel: the same on every link to one process,
	// never empty.
	instance string
	features atomic.Uint32 // link.Features, once the backend has said them
	said     chan struct{} // closed once the first control frame is read (Features, from this version on)

	cmu     sync.Mutex // serialises frames on the control stream
	ctrlErr error      // under cmu: a write failed, perhaps part way through a frame

	mu      sync.Mutex
	streams map[*link.Stream]*session // session streams, read or parked
	byID    map[string]*session       // their sessions, for Wake
}

// holds reports whether a session with id has a stream on the link.
func (lk *backendLink) holds(id string) bool {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.byID[id] != nil
}

// track records a session stream whose reader is about to start.
func (lk *backendLink) track(st *link.Stream, s *session) {
	lk.readers.Add(1)
	lk.mu.Lock()
	if lk.streams == nil {
		lk.streams = make(map[*link.Stream]*session)
		lk.byID = make(map[string]*session)
	}
	lk.streams[st] = s
	lk.byID[s.ID] = s
	lk.mu.Unlock()
}

// untrack records that a stream's reader has left for good. A session that
// the backend let go of (Moved) may be on a new stream of this link before
// the old stream's reader leaves: it keeps its entry, which Wake needs.
func (lk *backendLink) untrack(st *link.Stream) {
	lk.mu.Lock()
	if s := lk.streams[st]; s != nil && lk.byID[s.ID] == s {
		s.mu.Lock()
		newer := s.lk == lk && s.st != nil && s.st != st
		s.mu.Unlock()
		if !newer {
			delete(lk.byID, s.ID)
		}
	}
	delete(lk.streams, st)
	lk.mu.Unlock()
	lk.readers.Add(-1)
}

// endUnread ends a stream whose reader stopped at Parked, its session
// done with it.
func (lk *backendLink) endUnread(st *link.Stream) {
	lk.readers.Add(1) // untrack counts out a reader, which a parked stream has not
	lk.untrack(st)
	st.Close()
}

// wake starts the readers of the parked streams of the sessions named,
// and opens those held.
func (lk *backendLink) wake(srv *Server, ids []string) {
	var held []*session
	for _, s := range lk.sessionsNamed(ids) {
		if s.wokenHeld(lk) {
			held = append(held, s)
		} else {
			s.wakeStream(lk)
		}
	}
	lk.openLater(srv, held)
}

// broadcast delivers a line to every session it names, encoded once.
func (lk *backendLink) broadcast(b link.Broadcast) {
	var e telnet.Encoder
	text := e.Encode(nil, b.Text)
	exact := text // the same, but for a line with a "\r"
	if bytes.IndexByte(b.Text, '\r') >= 0 {
		x := telnet.Encoder{Exact: true}
		exact = x.Encode(nil, b.Text)
	}
	for _, r := range b.To {
		lk.mu.Lock()
		s := lk.byID[r.ID]
		lk.mu.Unlock()
		if s != nil {
			l := broadcastLine{text, len(b.Text)}
			if s.keeps {
				l.b = exact
			}
			s.broadcast(lk, r.Park, l)
		}
	}
}

// park asks the backend to park the streams of the sessions named.
func (lk *backendLink) park(ids []string) error {
	if lk.leaving() {
		return nil
	}
	return lk.sendIDs(link.FramePark, ids)
}

// broken runs when the link fails, before any stream learns of it: the
// link is marked dead, so that nothing more is sent on it, and each parked
// stream gets its reader back, to find the link gone as every other
// reader does when the link ends.
func (lk *backendLink) broken() {
	lk.mu.Lock()
	lk.dead.Store(true)
	for st, s := range lk.streams {
		s.mu.Lock()
		parked := s.st == st && s.cond.stream == streamParked && s.to(evWake)
		s.mu.Unlock()
		if parked {
			s.restartStream(lk, st)
		}
	}
	lk.mu.Unlock()
}

// leaving reports whether the link takes no more input: the backend said
// goodbye, or the connection failed.
func (lk *backendLink) leaving() bool { return lk.dead.Load() || lk.saidGoodbye() }

func (lk *backendLink) saidGoodbye() bool {
	select {
	case <-lk.goodbye:
		return true
	default:
		return false
	}
}

// readControl reads the control stream: the game's MSSP variables, and the
// backend's Goodbye.
func (lk *backendLink) readControl(s *Server) {
	defer s.wg.Done()
	defer close(lk.ctrlEnd)
	// Held sessions have no stream whose end would tell them the link has
	// gone: a successor that fails as its deploy ends, say, before it is
	// the current link.
	defer lk.releaseHeld(s)
	first := true
	defer func() {
		if first {
			close(lk.said)
		}
	}()
	fr := link.Reader{R: lk.ctrl}
	for {
		typ, _, err := fr.Next()
		if err != nil {
			return
		}
		switch typ {
		case link.FrameGoodbye:
			lk.once.Do(func() { close(lk.goodbye) })
		case link.FrameBroadcast:
			if p, err := fr.Payload(); err == nil {
				if b, err := link.ParseBroadcast(p); err == nil {
					lk.broadcast(b)
				}
			}
		case link.FrameHeldFrames:
			if p, err := fr.Payload(); err == nil {
				lk.heldFrames(s, p)
			}
		case link.FrameWake:
			if p, err := fr.Payload(); err == nil {
				if ids, err := link.ParseMove(p); err == nil {
					lk.wake(s, ids)
				}
			}
		case link.FrameHeldTaken:
			if p, err := fr.Payload(); err == nil {
				if ids, err := link.ParseMove(p); err == nil {
					lk.heldTaken(s, ids)
				}
			}
		case link.FrameUnheld:
			if p, err := fr.Payload(); err == nil {
				if ids, err := link.ParseMove(p); err == nil {
					lk.unheld(s, ids)
				}
			}
		case link.FrameStowed:
			if p, err := fr.Payload(); err == nil {
				if b, err := link.ParseBroadcast(p); err == nil {
					n := lk.stowed(s, b.To)
					s.stowedN.Add(int64(n))
					s.metrics.stowed.Add(float64(n))
				}
			}
		case link.FrameMovedParked:
			if p, err := fr.Payload(); err == nil {
				if b, err := link.ParseBroadcast(p); err == nil {
					lk.movedParked(s, b.To)
				}
			}
		case link.FrameFeatures:
			if p, err := fr.Payload(); err == nil {
				if f, err := link.ParseFeatures(p); err == nil {
					lk.features.Store(uint32(f))
				}
			}
		case link.FrameMSSP:
			if p, err := fr.Payload(); err == nil {
				s.setMSSP(p)
			}
		}
		if first {
			first = false
			close(lk.said) // the backend's Features, from this version on, are known
		}
	}
}

// featuresWait bounds the wait for a backend's first control frame, its
// Features, before sessions are placed on it: a backend of an earlier
// version may say nothing first.
const featuresWait = time.Second

// awaitFeatures waits until the backend has said what it can do, within
// featuresWait.
func (lk *backendLink) awaitFeatures() {
	t := time.NewTimer(featuresWait)
	defer t.Stop()
	select {
	case <-lk.said:
	case <-t.C:
	}
}

// LinkedAddr returns the address of the backend the server is linked to,
// "" while it is linked to none.
func (s *Server) LinkedAddr() string {
	s.init()
	if lk := s.current(); lk != nil {
		return lk.addr
	}
	return ""
}

// backendName splits Backend into the name and the registry to ask.
func (s *Server) backendName() (name, registry, host string) {
	name = s.Backend
	if name == "" {
		name = defaultBackend
	}
	if n, h, ok := strings.Cut(name, "@"); ok {
		// A gateway without a registry of its own was told the registry's
		// port (-epmd-port): the one there listens on it, as Erlang's nodes
		// assume of every host. One with its own asks the usual port.
		if _, port, err := net.SplitHostPort(s.EPMD); err == nil && port != "" && port != "0" && s.Registry == nil {
			return n, net.JoinHostPort(h, port), h
		}
		return n, epmd.HostAddr(h), h
	}
	host = "127.0.0.1"
	if s.EPMD != "" {
		if h, _, err := net.SplitHostPort(s.EPMD); err == nil && h != "" {
			host = h
		}
	}
	return name, s.EPMD, host
}

// keepLink finds the backend, links to it, resumes every held session on it,
// and starts over when it goes away, until Close.
func (s *Server) keepLink() {
	defer s.wg.Done()
	name, registry, host := s.backendName()
	client := &epmd.Client{Addr: registry}
	embedded := s.Registry
	if registry != s.EPMD {
		embedded = nil // name@host asks another registry
	}
	w := &watcher{client: client, name: name, host: host, embedded: embedded}
	var delay time.Duration
	prefer := s.PreferBackend
	for s.ctx.Err() == nil {
		if succ := s.takeSuccessor(); succ != nil {
			// A deploy: the successor that took the players over serves on.
			s.serveLink(succ, name, w)
			continue
		}
		if prefer != "" {
			lk, err := s.dialAddr(prefer)
			if err != nil {
				s.log().Info("gateway: the backend to link to first is not there; asking the registry",
					zap.String("addr", prefer), zap.Error(err))
			}
			prefer = ""
			if err == nil {
				s.wg.Add(1)
				go lk.readControl(s)
				s.serveLink(lk, name, w)
				continue
			}
		}
		var changed <-chan struct{}
		if embedded != nil {
			changed = embedded.Changed()
		}
		lk, err := s.dialBackend(client, name, host)
		if err != nil {
			if !errors.Is(err, epmd.ErrNotFound) {
				s.log().Warn("gateway: cannot link to backend", zap.String("backend", name), zap.Error(err))
				delay = netx.Backoff(delay, 50*time.Millisecond, 2*time.Second)
			} else {
				delay = lookupInterval
				if embedded != nil {
					delay = time.Second // a registration wakes us up sooner
				}
			}
			t := time.NewTimer(delay)
			select {
			case <-s.ctx.Done():
			case <-changed:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		delay = 0
		s.wg.Add(1)
		go lk.readControl(s)
		s.serveLink(lk, name, w)
	}
}

// dialBackend looks name up, dials it and authenticates it.
func (s *Server) dialBackend(client *epmd.Client, name, host string) (*backendLink, error) {
	node, err := client.Lookup(s.ctx, name)
	if err != nil {
		return nil, err
	}
	return s.dialAddr(net.JoinHostPort(host, strconv.Itoa(int(node.Port))))
}

// dialAddr dials a backend at addr and authenticates it.
func (s *Server) dialAddr(addr string) (*backendLink, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.DialContext(s.ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: dial backend: %w", err)
	}
	stop := context.AfterFunc(s.ctx, func() { raw.Close() })
	c, instance, err := link.GatewayHandshake(raw, s.Cookie)
	stop()
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("gateway: backend at %s: %w", addr, err)
	}
	lk := &backendLink{addr: addr, instance: instance, goodbye: make(chan struct{}), ctrlEnd: make(chan struct{}), said: make(chan struct{})}
	mux := link.Client(c, lk.broken, s.log())
	ctrl, err := mux.OpenStream()
	if err == nil {
		b := link.AppendFrame(nil, link.FrameControl, nil)
		b = link.AppendFrame(b, link.FrameFeatures, link.AppendFeatures(nil, link.FeatureMovedParked|link.FeatureReleasedParked|link.FeatureHeldFrames))
		_, err = ctrl.Write(b)
	}
	if err != nil {
		mux.Close()
		return nil, fmt.Errorf("gateway: backend at %s: %w", addr, err)
	}
	// Under lk.mu: a connection that fails at once calls broken from
	// the link's receive loop, which runs already.
	lk.mu.Lock()
	lk.mux, lk.ctrl = mux, ctrl
	lk.mu.Unlock()
	return lk, nil
}

// serveLink makes lk the current link, resumes every held session on it,
// and returns once the backend has gone or said goodbye. Meanwhile, when a
// successor to the backend is ready (a deploy), it hands it the players.
func (s *Server) serveLink(lk *backendLink, name string, w *watcher) {
	s.mu.Lock()
	s.cur = lk
	if s.linkedWait != nil {
		close(s.linkedWait)
		s.linkedWait = nil
	}
	held := slices.Collect(maps.Keys(s.sessions))
	s.mu.Unlock()
	start := time.Now()
	lk.awaitFeatures()
	resumed := placeAll(lk, held)
	s.metrics.links.Inc()
	s.log().Info("gateway: backend linked", zap.String("backend", name), zap.String("addr", lk.addr),
		zap.Int64("sessions", resumed), zap.Duration("attach", time.Since(start)))

	watchCtx, stopWatch := context.WithCancel(s.ctx)
	found := make(chan *backendLink, 1)
	s.wg.Add(1)
	go s.watchSuccessor(watchCtx, lk, w, found)
	handed := make(chan bool, 1)
	handing, tookOver := false, false
	reason := "backend link lost"
wait:
	for {
		select {
		case <-lk.mux.CloseChan():
			// A Goodbye may still wait, unread, in the control stream.
			<-lk.ctrlEnd
			break wait
		case <-lk.goodbye:
			break wait
		case <-s.ctx.Done():
			reason = "gateway closing"
			break wait
		case succ := <-found:
			handing = true
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handed <- s.deploy(lk, succ)
			}()
		case ok := <-handed:
			handing = false
			if ok {
				tookOver = true
				break wait
			}
			// Not taken over: this backend serves on, and may yet have
			// a successor.
			s.wg.Add(1)
			go s.watchSuccessor(watchCtx, lk, w, found)
		}
	}
	stopWatch()
	if handing {
		tookOver = <-handed // the successor, if it took over, is the next link
	}
	if lk.saidGoodbye() {
		reason = "backend said goodbye"
	}
	if tookOver {
		reason = "backend retired; its successor has the players"
	}
	s.mu.Lock()
	if s.cur == lk {
		s.cur = nil
	}
	s.mu.Unlock()
	s.log().Info("gateway: backend gone; holding sessions", zap.String("backend", name), zap.String("reason", reason))
	lk.releaseHeld(s)
	// A backend that said goodbye is still flushing its sessions'
	// acknowledgements and state; give it time, but not forever.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(goodbyeGrace)
		defer t.Stop()
		select {
		case <-lk.mux.CloseChan():
		case <-t.C:
		case <-s.ctx.Done():
		}
		lk.mux.Close()
	}()
}

// attachWorkers is how many sessions are attached to a new link at once.
// A few at once keep the link's writer busy. More gained nothing on two
// cores (measured with 1, 2, 4, 8, when each write waited for the yamux
// library's send loop).
const attachWorkers = 4

// attachAll resumes sessions on lk and returns how many are attached.
func attachAll(lk *backendLink, sessions []*session) int64 {
	var attached atomic.Int64
	inWorkers(sessions, func(s *session) {
		if s.attach(lk) {
			attached.Add(1)
		}
	})
	return attached.Load()
}

// inWorkers runs f for each session, attachWorkers at a time.
func inWorkers(sessions []*session, f func(*session)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(attachWorkers, len(sessions)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(sessions)); i = next.Add(1) - 1 {
				f(sessions[i])
			}
		})
	}
	wg.Wait()
}

// move asks the backend to let the sessions named go from this link: each
// answers Moved on its stream.
func (lk *backendLink) move(ids []string) error {
	if err := lk.sendIDs(link.FrameMove, ids); err != nil {
		return fmt.Errorf("gateway: move: %w", err)
	}
	return nil
}

// sendAll sends a frame of type typ for each payload.
func (lk *backendLink) sendAll(typ link.FrameType, payloads [][]byte) error {
	for _, p := range payloads {
		if err := lk.send(typ, p); err != nil {
			return err
		}
	}
	return nil
}

// sendIDs sends a frame of type typ naming sessions, as many as it takes.
func (lk *backendLink) sendIDs(typ link.FrameType, ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), link.MaxMove)
		if err := lk.send(typ, link.AppendMove(nil, ids[:n])); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}
