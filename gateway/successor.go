package gateway

import (
	"context"
	"errors"
	"iter"
	"net"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/internal/netx"
	"holdfast/link"
)

// A deploy: a successor to the running backend registers the backend's
// name with link.TakeoverSuffix once it is ready. The gateway links to it,
// sends it the new players, and hands it the others a batch at a time:
// Release on the old link, each session answers Moved after its last
// output and state, and its stream's reader opens it on the successor
// (HandedOver, its held input after). Then Retire, and the old backend
// stops. If either backend fails meanwhile, the sessions go to the other,
// as after a crash.

// watcher looks for the backend and its successor in the registry.
type watcher struct {
	client   *epmd.Client
	name     string
	host     string
	embedded *epmd.Server
}

var errSameBackend = errors.New("gateway: the successor is the backend itself")

// successorPoll is how often the registry is asked for a successor: a
// registration in the embedded registry wakes the watcher sooner.
const successorPoll = time.Second

// notSuccessorFor is how long an address found to hold no successor is
// not dialled again while the registry keeps giving it.
const notSuccessorFor = 10 * time.Second

// watchSuccessor looks for a successor to the backend on cur until ctx
// ends, and links to the first one it finds.
//
// A successor is a backend proven newer than cur (link.Newer), whichever
// name it holds. It registers the successor's name while cur holds the
// backend's own; but the registry forgets every name when it restarts, and
// a successor that comes first after that finds the name free and takes
// it, while cur, still serving the players, is refused it. So both names
// are asked, and what decides is the order proven in the handshake, never
// the name: a successor that has taken over holds the successor's name
// until it has the backend's own, and the backend it replaced holds the
// name until it stops; both are cur or older, and no successor.
func (s *Server) watchSuccessor(ctx context.Context, cur *backendLink, w *watcher, found chan<- *backendLink) {
	defer s.wg.Done()
	names := []string{w.name + link.TakeoverSuffix, w.name}
	skip := map[string]time.Time{} // address -> until when it is not dialled again
	said := map[string]bool{}      // addresses whose verdict has been logged
	for {
		var changed <-chan struct{}
		if w.embedded != nil {
			changed = w.embedded.Changed()
		}
		for addr, until := range skip {
			if time.Now().After(until) {
				delete(skip, addr)
			}
		}
		var best *backendLink
		for _, name := range names {
			lk, addr, err := s.successorUnder(cur, w, name, skip)
			switch {
			case err == nil:
			case errors.Is(err, epmd.ErrNotFound):
			case errors.Is(err, errSameBackend), errors.Is(err, errNotNewer):
				// Also the case while a successor that took over waits
				// for the name, or the backend it replaced stops: worth
				// a line once, not a warning.
				if !said[addr] {
					s.log().Info(notSuccessorMsg(err, name == w.name), zap.String("name", name), zap.String("addr", addr))
					said[addr] = true
				}
			case name == w.name:
				// Whatever holds the name without proving the cookie is
				// nothing to the players; the backend's own link says
				// whether it is there.
				s.log().Debug("gateway: cannot link to what holds the backend's name", zap.Error(err))
			default:
				s.log().Warn("gateway: cannot link to the backend's successor", zap.Error(err))
			}
			if lk == nil {
				continue
			}
			// Two at once: the older goes first, and the newer takes the
			// players from it in turn, so that every backend passed by
			// is told to retire.
			if best != nil && link.Newer(lk.instance, best.instance) {
				lk.mux.Close()
				continue
			}
			if best != nil {
				best.mux.Close()
			}
			best = lk
		}
		if best != nil {
			select {
			case found <- best:
			case <-ctx.Done():
				best.mux.Close()
			}
			return
		}
		t := time.NewTimer(successorPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

var errNotNewer = errors.New("gateway: the backend there started before the one linked")

// notSuccessorMsg says why what a name leads to is no successor.
func notSuccessorMsg(err error, ownName bool) string {
	switch {
	case errors.Is(err, errNotNewer):
		return "gateway: the name leads to a backend that started before the one linked; not a successor"
	case ownName:
		return "gateway: the backend's name leads to the backend already linked; not a successor"
	default:
		return "gateway: the successor's name leads to the backend already linked; not a successor"
	}
}

// successorUnder links to the backend registered under name if it is a
// successor to cur. An address that led to cur itself, or to an older
// backend, is not dialled again for a while.
func (s *Server) successorUnder(cur *backendLink, w *watcher, name string, skip map[string]time.Time) (*backendLink, string, error) {
	node, err := w.client.Lookup(s.ctx, name)
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort(w.host, strconv.Itoa(int(node.Port)))
	if addr == cur.addr {
		return nil, addr, nil // one listening socket, one process: cur itself
	}
	if _, ok := skip[addr]; ok {
		return nil, addr, nil
	}
	lk, err := s.dialAddr(addr)
	if err != nil {
		return nil, addr, err
	}
	s.wg.Add(1)
	go lk.readControl(s)
	// Both instances were learnt over channels bound to the cookie: a
	// name that leads back to the backend itself (its own listener, or a
	// relay to it) is no successor, and nor is an older backend.
	switch {
	case lk.instance == cur.instance:
		err = errSameBackend
	case !link.Newer(lk.instance, cur.instance):
		err = errNotNewer
	default:
		return lk, addr, nil
	}
	lk.mux.Close()
	skip[addr] = time.Now().Add(notSuccessorFor)
	return nil, addr, err
}

// deployBatch bounds the quiet sessions released at once. The sessions
// of a batch come back on the successor together, so a player typing in a
// batch of hundreds waits for hundreds of Opens: the busy sessions (their
// streams read) go last, deployBusyBatch at a time.
const (
	deployBatch     = 200
	deployBusyBatch = 16
)

// deployWait bounds how long a batch's sessions take to reach the
// successor.
const deployWait = 10 * time.Second

// deploy moves every session from old to succ and reports whether succ
// took over. Then succ is the next link, and old is told to retire; if
// succ fails meanwhile, old stays the link, and the sessions that had
// moved come back to it.
func (s *Server) deploy(old, succ *backendLink) bool {
	release, _, err := s.BeginMove(s.ctx, "deploy")
	if err != nil {
		// The gateway is closing, or an upgrade moved every player to
		// another process, which takes the successor over itself.
		succ.mux.Close()
		return false
	}
	defer release()
	if succ.leaving() {
		return false // it failed while the move waited: old serves on
	}
	start := time.Now()
	succ.awaitFeatures() // so that the sessions are opened held there
	s.mu.Lock()
	s.cur = succ // new players, and any session that loses its stream, go there
	s.mu.Unlock()
	s.log().Info("gateway: handing the players to the backend's successor", zap.String("addr", succ.addr))
	moved := 0
	// One batch at a time: with two in flight, the players typing on the
	// old backend meanwhile waited twice as long.
	for batch := range s.releaseOrder(old) {
		if !s.releaseBatch(old, batch) {
			break // the old backend is going: its sessions come here by themselves
		}
		s.awaitReleased(batch, old, succ)
		moved += len(batch)
		if succ.leaving() || old.leaving() {
			break
		}
	}
	if succ.leaving() {
		// The successor failed: the old backend takes back what it had.
		s.mu.Lock()
		if s.cur == succ {
			s.cur = old
		}
		s.mu.Unlock()
		// Those opened held there have no stream whose end would say so.
		succ.releaseHeld(s)
		if !old.leaving() {
			s.takeBack(old, succ)
		}
		s.log().Warn("gateway: the backend's successor failed; the backend keeps the players", zap.Int("moved", moved))
		return false
	}
	s.setSuccessor(succ)
	if !old.leaving() {
		old.send(link.FrameRetire, nil)
	}
	s.log().Info("gateway: players handed to the backend's successor", zap.Int("sessions", moved),
		zap.Duration("took", time.Since(start)))
	return true
}

// takeBack attaches to old every session that the failed successor had,
// or was being given. A session whose stream to the successor was opening
// as it failed finds the successor still current, and waits: the first
// pass does not see it, so the passes go on until every session is
// attached somewhere, the successor's readers have left (each one that
// leaves attaches its session to old by itself), or deployWait passes.
// A session old let go of (Moved) comes back on a new stream of the same
// link, which keeps it known to the link for Wake (see untrack).
func (s *Server) takeBack(old, succ *backendLink) {
	deadline := time.Now().Add(deployWait)
	for {
		all := s.list()
		// One still held on old is there already: a stream opened now
		// could overtake what old sends it in HeldFrames.
		var rest []*session
		for _, ss := range all {
			if !ss.heldOn(old) {
				rest = append(rest, ss)
			}
		}
		attached := int64(len(all)-len(rest)) + attachAll(old, rest)
		if (attached == int64(len(all)) && succ.readers.Load() == 0) || old.leaving() || time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond) // a failure path: polling is cheap enough
	}
}

// releaseOrder yields the sessions on lk in the batches a deploy releases
// them in: deployBatch at a time of those whose streams are quiet (parked
// or held), then deployBusyBatch at a time of the others, then any that
// came to lk meanwhile. The sessions are listed once, and a session is released once: one the old
// backend did not let go of stays until its link ends, and then resumes on
// the successor like any other.
func (s *Server) releaseOrder(lk *backendLink) iter.Seq[[]*session] {
	return func(yield func([]*session) bool) {
		var quiet, busy []*session
		for _, ss := range s.list() {
			switch on, q := ss.onLink(lk); {
			case on && q:
				quiet = append(quiet, ss)
			case on:
				busy = append(busy, ss)
			}
		}
		released := make(map[*session]bool, len(quiet)+len(busy))
		next := func(from []*session, size int) ([]*session, []*session) {
			var batch []*session
			for len(from) > 0 && len(batch) < size {
				ss := from[0]
				from = from[1:]
				if !released[ss] && on(ss, lk) {
					batch = append(batch, ss)
					released[ss] = true
				}
			}
			return batch, from
		}
		pass := func(from []*session, size int) bool {
			for len(from) > 0 {
				var batch []*session
				if batch, from = next(from, size); len(batch) > 0 && !yield(batch) {
					return false
				}
			}
			return true
		}
		_ = pass(quiet, deployBatch) && pass(busy, deployBusyBatch) && pass(s.list(), deployBusyBatch)
	}
}

// releaseBatch tells the old backend to let a batch of sessions go to its
// successor; it reports whether the old backend was told.
func (s *Server) releaseBatch(old *backendLink, batch []*session) bool {
	ids := make([]string, len(batch))
	for i, ss := range batch {
		ss.mu.Lock()
		ss.deployed = true
		ss.mu.Unlock()
		ids[i] = ss.ID
	}
	return old.send(link.FrameRelease, link.AppendMove(nil, ids)) == nil
}

// releaseAgain is how long a released session may stay on the old backend
// before its Release is sent again. The control stream and a session's
// stream are not ordered: a Release read before the Open of the stream the
// session was just given (a new process's, after an upgrade) finds it not
// there yet, and a second Release finds it. One that finds it gone
// changes nothing.
const releaseAgain = 200 * time.Millisecond

// awaitReleased waits, for at most deployWait, until each session of a
// released batch has left old for another link, or ended. A held session
// the old backend did not answer for (it had ended it, say) goes to the
// successor all the same, resumed.
func (s *Server) awaitReleased(batch []*session, old, succ *backendLink) {
	deadline := time.Now().Add(deployWait)
	again := time.Now().Add(releaseAgain)
	batch = slices.Clone(batch)
	for len(batch) > 0 && !old.leaving() && !succ.leaving() {
		batch = slices.DeleteFunc(batch, func(ss *session) bool { return ss.landedOff(old) })
		switch now := time.Now(); {
		case len(batch) == 0:
		case now.After(deadline):
			for _, ss := range batch {
				ss.mu.Lock()
				cond := ss.cond
				ss.mu.Unlock()
				s.log().Warn("gateway: the old backend did not let a session go in time", zap.String("session", ss.ID),
					zap.Stringer("phase", cond.phase), zap.Stringer("stream", cond.stream))
				if old.letGoHeld(ss) {
					ss.resumeElsewhere(old, true)
				}
			}
			return
		case now.After(again):
			s.releaseBatch(old, batch)
			again = now.Add(releaseAgain)
			fallthrough
		default:
			time.Sleep(time.Millisecond) // one round trip each; nothing to wait on
		}
	}
}

// on reports whether the session is on lk, with a stream or held.
func on(ss *session, lk *backendLink) bool {
	on, _ := ss.onLink(lk)
	return on
}

// landedOff reports whether the session has left lk for another link, or
// ended. One between links has not: its stream's end read and the next
// not open yet, or a page's session that a failed upgrade left away on lk
// (the backend does not hold it again: Unheld) and that is being opened
// there again, after its Release found it away; the Release sent again
// (releaseAgain) finds it there.
func (ss *session) landedOff(lk *backendLink) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cond.phase == phaseGone {
		return true
	}
	return ss.lk != nil && ss.lk != lk && (ss.st != nil || ss.cond.stream == streamHeld)
}

// onLink reports whether the session is on lk, with a stream or held,
// and whether it is quiet there: its stream parked, or held.
func (ss *session) onLink(lk *backendLink) (on, quiet bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	held := ss.cond.stream == streamHeld && ss.cond.phase != phaseGone
	on = ss.lk == lk && (ss.st != nil || held)
	return on, on && (held || ss.cond.stream == streamParked)
}

func (s *Server) setSuccessor(lk *backendLink) {
	s.mu.Lock()
	s.successor = lk
	s.mu.Unlock()
}

// takeSuccessor returns the link to a backend that took the players over,
// once.
func (s *Server) takeSuccessor() *backendLink {
	s.mu.Lock()
	defer s.mu.Unlock()
	lk := s.successor
	s.successor = nil
	if lk != nil && lk.dead.Load() {
		return nil
	}
	return lk
}

// controlWriteWait bounds each piece of a write on the control stream
// (link.WritePieces): a backend that takes in nothing for that long is
// taken for gone.
var controlWriteWait = 5 * time.Second // a variable for tests

// send writes a frame on the control stream. A write that runs out of
// time may have sent part of the frame, after which nothing on the stream
// would parse: the link ends then, and its sessions go on on the next.
func (lk *backendLink) send(typ link.FrameType, payload []byte) error {
	lk.cmu.Lock()
	defer lk.cmu.Unlock()
	if lk.ctrlErr != nil {
		return lk.ctrlErr
	}
	err := link.WritePieces(lk.ctrl, link.AppendFrame(make([]byte, 0, link.HeaderLen+len(payload)), typ, payload), controlWriteWait)
	if netx.IsTimeout(err) {
		lk.ctrlErr = err
		// Not here: closing wakes the link's readers, under locks the
		// caller may hold.
		go lk.mux.Close()
	}
	return err
}
