package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/netx"
	"holdfast/link"
)

// A gateway upgrade moves every held session into a new gateway process,
// with everything the session knows, in batches, and commits once at the
// end. For each batch the old process (MoveOut):
//
//  1. stops the players' readers and writers, keeping what they had read
//     and not yet held, and what they had queued and not yet written;
//  2. asks the backend, on the link's control stream, to let the sessions
//     go (link.FrameMove): each answers Moved as the last frame on its
//     stream, after all its output, and waits, its writes kept, until a
//     stream from the new process opens it again;
//  3. offers the sessions' state and sockets to the new process, which
//     prepares them without touching them.
//
// Once every session is offered, it commits: once the new process has said
// it took them, the old one forgets them, and closes its copies of the
// sockets (a descriptor, never shutting a socket down) when the caller
// says, with CloseMoved. Until the new process has said so, any failure,
// its death included, gives every batch back to the old process, which
// carries on with them as before: a session moves only to a process that
// has taken all of them.
//
// The quietest sessions go first (their socket and their stream parked), the
// busiest last, so that a player who types waits for one batch and the
// commit, and an idle one, who waits longer, does not notice. The new
// process starts each session where it stood, and opens it on its own link
// to the backend, which takes it back as the same Session.

// Mover carries sessions to another gateway process, a batch at a time.
type Mover interface {
	// Offer hands the other process a batch: the sessions' state and
	// descriptors of their sockets (or of files standing for them), in
	// order, which stay the caller's. It returns once the other process
	// holds them, untouched.
	Offer(state []byte, conns []syscall.Conn) error
	// Commit makes every batch offered the other process's own. It returns
	// once the other process has taken them; an error leaves them here.
	Commit() error
	// Abort takes back every batch offered: once it returns, the other
	// process has let go of them, untouched, or is dead.
	Abort()
}

// moveBatch bounds a batch: descriptors passed in one message (Linux takes
// 253), and how long a batch's players wait.
const moveBatch = 200

// moveStop bounds how long a session's reader, writer and backend stream
// get to stop for a move.
var moveStop = 5 * time.Second // a variable for the tests

// MoveOut hands every session to another gateway process through m, and
// returns how many it moved. It waits for connections still in their
// handshake and clients still negotiating, and moves them too; the caller
// stops accepting new players first. Sessions that end meanwhile end here.
// On an error every session stays here. The caller closes this process's
// descriptors of the sockets moved with CloseMoved, once it has answered.
//
// The next batch is prepared (frozen, taken off the backend, saved) while
// the other process takes the one before: each side's work overlaps the
// other's, on a machine with a core for each.
func (s *Server) MoveOut(ctx context.Context, m Mover) (int, error) {
	s.init()
	stop := make(chan struct{})
	batches := make(chan prepared) // one ready while one is offered
	go s.prepareAll(ctx, stop, batches)
	var offered []*offer
	fail := func(err error) (int, error) {
		close(stop)
		for p := range batches { // the preparer's last, never offered
			if p.o != nil {
				offered = append(offered, p.o)
			}
		}
		m.Abort()
		n := 0
		for _, o := range offered {
			o.rollback()
			n += len(o.sessions)
		}
		s.log().Warn("gateway: the sessions offered stay here", zap.Int("sessions", n), zap.Error(err))
		return 0, err
	}
	for p := range batches {
		if p.o != nil {
			offered = append(offered, p.o)
		}
		if p.err != nil {
			return fail(p.err)
		}
		if p.o == nil {
			continue
		}
		err := m.Offer(p.state, p.o.socks)
		// The other process has its own descriptors now, and this one
		// keeps the sessions' own until the commit: the copies would only
		// count against the limit on open files, twice the sessions by
		// the end.
		p.o.closeFiles()
		if err != nil {
			return fail(err)
		}
	}
	if len(offered) == 0 {
		return 0, nil
	}
	start := time.Now()
	if err := m.Commit(); err != nil {
		return fail(err)
	}
	moved := 0
	for _, o := range offered {
		o.commit()
		moved += len(o.sessions)
	}
	s.log().Info("gateway: sessions moved", zap.Int("sessions", moved), zap.Int("batches", len(offered)),
		zap.Duration("commit", time.Since(start)))
	return moved, nil
}

// prepared is a batch ready to offer: the offer holds its sessions frozen
// (also beside an error), state their records.
type prepared struct {
	o     *offer
	state []byte
	err   error
}

// prepareAll prepares batches of the sessions to move, the quietest first,
// and sends each on out, until none is left, an error (sent on, last), or
// stop. It closes out when it returns; a batch it cannot send for stop it
// gives back itself.
func (s *Server) prepareAll(ctx context.Context, stop <-chan struct{}, out chan<- prepared) {
	defer close(out)
	for {
		list, waiting := s.movable()
		if len(list) == 0 {
			if !waiting {
				return
			}
			select {
			case <-ctx.Done():
				out <- prepared{err: ctx.Err()}
				return
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond): // a handshake or negotiation to finish
			}
			continue
		}
		for len(list) > 0 {
			select {
			case <-stop:
				return // the move failed: nothing more is frozen for it
			default:
			}
			batch := list[:min(len(list), moveBatch)]
			list = list[len(batch):]
			o, state, err := s.prepare(ctx, batch)
			select {
			case out <- prepared{o, state, err}:
			case <-stop:
				if o != nil {
					o.rollback()
				}
				return
			}
			if err != nil {
				return
			}
		}
	}
}

// movable returns the sessions ready to move, the quietest first, and
// reports whether others will be (a handshake or a negotiation under way).
func (s *Server) movable() (list []*session, waiting bool) {
	s.mu.Lock()
	waiting = len(s.pending) > 0
	all := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	// By how busy: 0 with the socket and the stream parked (or held), 1
	// with one of them, 2 with neither.
	var byBusy [3][]*session
	for _, ss := range all {
		ss.mu.Lock()
		c := ss.cond
		ss.mu.Unlock()
		switch c.phase {
		case phaseNegotiating:
			waiting = true
		case phaseLive:
			busy := 2
			if c.player == playerParked {
				busy--
			}
			if c.stream == streamParked || c.stream == streamHeld {
				busy--
			}
			byBusy[busy] = append(byBusy[busy], ss)
		}
	}
	list = make([]*session, 0, len(all))
	for _, l := range byBusy {
		list = append(list, l...)
	}
	return list, waiting
}

// offer is a batch offered to the other process and not yet committed:
// its sessions are frozen, and this process keeps what it needs to carry
// on with them.
type offer struct {
	srv      *Server
	sessions []*session
	socks    []syscall.Conn // sendables, closed once sent
	relays   []*relay
	exported []exporter
}

// prepare freezes a batch, takes it off the backend, and saves it. The
// offer returned, if any, holds the sessions frozen, also on an error:
// the caller rolls it back.
func (s *Server) prepare(ctx context.Context, batch []*session) (*offer, []byte, error) {
	var frozen []*session
	for _, ss := range batch {
		if ss.freeze() {
			frozen = append(frozen, ss)
		}
	}
	frozen = s.stopIO(frozen)
	s.detachForMove(frozen)
	o := &offer{srv: s}
	for _, ss := range frozen {
		ss.mu.Lock()
		ended, taken, gone := ss.endedInMove, ss.takenInMove, ss.cond.phase == phaseGone
		ss.mu.Unlock()
		switch {
		case gone:
			// Ended meanwhile (a player too slow, the server closing):
			// its socket is closed, and there is nothing to move.
			continue
		case ended:
			// The game ended it meanwhile: it ends here, its output written.
			ss.thaw()
			ss.finish(endApplication, true)
			continue
		case taken:
			// Its player went on through another gateway.
			ss.thaw()
			continue
		}
		o.sessions = append(o.sessions, ss)
	}
	if len(o.sessions) == 0 {
		return nil, nil, nil
	}
	states := make([]record, 0, len(o.sessions))
	for _, ss := range o.sessions {
		sock, r, conn, err := ss.socket()
		if err != nil {
			return o, nil, fmt.Errorf("gateway: session %s: %w", ss.ID, err)
		}
		if conn != nil {
			o.exported = append(o.exported, ss.conn.(exporter))
		}
		if sock != nil {
			o.socks = append(o.socks, sock)
		}
		if r != nil {
			o.relays = append(o.relays, r)
		}
		st := ss.save()
		st.Parts.Conn = conn
		states = append(states, st)
	}
	enc, err := marshalBatch(states)
	if err != nil {
		return o, nil, err
	}
	if err := ctx.Err(); err != nil {
		return o, nil, err
	}
	return o, enc, nil
}

func (o *offer) closeFiles() {
	for _, f := range o.socks {
		f.(sendable).Close()
	}
	o.socks = nil
}

// rollback gives the offered sessions back to this process.
func (o *offer) rollback() {
	o.closeFiles()
	for _, r := range o.relays {
		r.cancel()
	}
	for _, e := range o.exported {
		e.Thaw() // the page never knew
	}
	for _, ss := range o.sessions {
		// An older gateway made a socket it received blocking until its
		// own copy was made; one that died meanwhile left it so, and the
		// flag is the socket's, shared.
		if !relayed(ss.conn) {
			netx.SetNonblock(ss.conn)
		}
		// The deadline stopIO kicked with would stop every write that
		// does not wait (writeNow).
		ss.conn.SetWriteDeadline(time.Time{})
		ss.thaw()
	}
}

// commit lets go of the sessions the other process has taken.
func (o *offer) commit() {
	o.closeFiles()
	for _, r := range o.relays {
		o.srv.startRelay(r)
	}
	for _, e := range o.exported {
		e.Moved() // the page reconnects, to the new process
	}
	moved := make([]net.Conn, 0, len(o.sessions))
	for _, ss := range o.sessions {
		ss.letGo()
		_, exported := ss.conn.(exporter)
		switch {
		case relayed(ss.conn): // the relay holds it
		case exported:
			ss.conn.Close() // its page connects to the other process
		default:
			moved = append(moved, ss.conn)
		}
	}
	o.srv.mu.Lock()
	o.srv.moved = append(o.srv.moved, moved...)
	o.srv.mu.Unlock()
}

// CloseMoved closes this process's descriptors of the sockets that moved
// to another process. MoveOut leaves them open: closing them (the
// runtime's poller and the kernel, for each) was a sixth of an upgrade's
// time at 15,000 sessions, and the upgrade answers sooner when they are
// closed after it. Until then a player who leaves the other process is
// not hung up on. Close closes them too.
func (s *Server) CloseMoved() {
	s.mu.Lock()
	moved := s.moved
	s.moved = nil
	s.mu.Unlock()
	for _, c := range moved {
		c.Close()
	}
}

// freeze marks the session as moving: from now on nothing new reaches the
// backend, and its reader and writer stop. It reports false for a session
// that cannot move now.
func (ss *session) freeze() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	parked := ss.cond.player == playerParked
	quiet := ss.cond.stream == streamParked || ss.cond.stream == streamHeld
	if !ss.to(evFreeze) {
		return false
	}
	ss.Quiet = quiet
	ss.endedInMove, ss.takenInMove = false, false
	ss.wakeSpace()
	if parked {
		// No reader to stop: the socket leaves the parker, and the move
		// finds the reader done.
		ss.mu.Unlock()
		ss.srv.parker.unpark(ss)
		ss.mu.Lock()
	}
	return true
}

// stopIO stops the frozen sessions' readers and writers, and returns those
// that stopped in time; the others are thawed and stay.
func (s *Server) stopIO(frozen []*session) []*session {
	type stopping struct {
		ss     *session
		reader <-chan struct{}
		writer <-chan struct{}
	}
	list := make([]stopping, 0, len(frozen))
	for _, ss := range frozen {
		ss.mu.Lock()
		reader := ss.readerDone
		ss.mu.Unlock()
		list = append(list, stopping{ss, reader, ss.out.freeze()})
	}
	// Kicked again and again: a reader or writer may set a deadline of
	// its own just after a kick. A TLS or WebSocket write cut short by a
	// deadline would leave the connection unable to write again: its
	// writer is let finish instead.
	kick := func(ss *session) {
		ss.conn.SetReadDeadline(time.Now())
		if !relayed(ss.conn) {
			ss.conn.SetWriteDeadline(time.Now())
		}
	}
	deadline := time.Now().Add(moveStop)
	var stopped []*session
	for len(list) > 0 {
		rest := list[:0]
		for _, st := range list {
			if isClosed(st.reader) && isClosed(st.writer) {
				stopped = append(stopped, st.ss)
				continue
			}
			if time.Now().After(deadline) {
				s.log().Warn("gateway: a session did not stop for the move; it stays", zap.String("session", st.ss.ID))
				st.ss.thaw()
				continue
			}
			kick(st.ss)
			rest = append(rest, st)
		}
		list = rest
		if len(list) > 0 {
			time.Sleep(100 * time.Microsecond) // readers and writers leave within microseconds of a kick
		}
	}
	for _, ss := range stopped {
		ss.drainInput()
	}
	return stopped
}

func isClosed(c <-chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// drainInput takes what a connection wrapper (the PROXY header reader,
// TLS) has read from the socket and holds in memory: with the reader
// stopped and the deadline passed, a read returns only that.
func (ss *session) drainInput() {
	buf := make([]byte, 4096)
	ss.conn.SetReadDeadline(time.Now())
	for {
		n, err := ss.conn.Read(buf)
		if n > 0 {
			ss.bytesIn.Add(uint64(n))
			data, _ := ss.fromPlayer(buf[:0], buf[:n], time.Time{})
			ss.mu.Lock()
			ss.In = append(ss.In, data...)
			ss.mu.Unlock()
		}
		if err != nil || n == 0 {
			return
		}
	}
}

// detachForMove takes the frozen sessions off their backend streams: on a
// backend that can hold them for the new process, by Move and Moved; on
// any other, by closing the stream, so that the new process resumes them.
// A held session is named in the Move too: the backend puts it back on
// the orphan clock until the new process holds or opens it, so that it
// does not stay held for a process that has let it go. A backend that
// sends HeldFrames answers for it in MovedParked, after the last of them,
// and the session waits for that answer as one with a stream for its
// Moved; of any other there is nothing to wait for.
func (s *Server) detachForMove(frozen []*session) {
	byLink := map[*backendLink][]*session{}
	heldOn := map[*backendLink][]*session{}
	var waits []<-chan struct{}
	for _, ss := range frozen {
		ss.mu.Lock()
		switch {
		case ss.st != nil:
			done := make(chan struct{})
			ss.streamDone = done
			waits = append(waits, done)
			byLink[ss.lk] = append(byLink[ss.lk], ss)
		case ss.cond.stream == streamHeld && ss.lk != nil:
			if ss.lk.can(link.FeatureHeldFrames) && !ss.takenInMove { // a claim took it: no answer comes
				done := make(chan struct{})
				ss.streamDone = done
				waits = append(waits, done)
			}
			heldOn[ss.lk] = append(heldOn[ss.lk], ss)
		}
		ss.mu.Unlock()
	}
	for lk, held := range heldOn {
		if _, ok := byLink[lk]; !ok && (lk.leaving() || lk.move(ids(held)) != nil) {
			for _, ss := range held {
				ss.moveDone()
			}
		}
	}
	for lk, list := range byLink {
		if lk.leaving() || lk.move(append(ids(list), ids(heldOn[lk])...)) != nil {
			for _, ss := range list {
				ss.closeStream()
			}
			for _, ss := range heldOn[lk] {
				ss.moveDone()
			}
		}
	}
	deadline := time.NewTimer(moveStop)
	defer deadline.Stop()
	for i, w := range waits {
		select {
		case <-w:
		case <-deadline.C:
			// The backend did not answer: the rest are taken off by
			// closing their streams, and resumed by the new process; the
			// held ones wait no more.
			for _, ss := range frozen {
				ss.closeStream()
				ss.moveDone() // one stowed since it was frozen has no stream to end
			}
			for _, held := range heldOn {
				for _, ss := range held {
					ss.moveDone()
				}
			}
			for _, w := range waits[i:] {
				<-w
			}
			return
		}
	}
}

// ids returns the sessions' ids.
func ids(list []*session) []string {
	out := make([]string, len(list))
	for i, ss := range list {
		out[i] = ss.ID
	}
	return out
}

// moveDone ends a held session's wait in a move: its answer came, or will
// not.
func (ss *session) moveDone() {
	ss.mu.Lock()
	if ss.st == nil && ss.streamDone != nil {
		close(ss.streamDone)
		ss.streamDone = nil
	}
	ss.mu.Unlock()
}

// closeStream closes the session's backend stream, if it has one. A
// reader that stopped at a Parked is started again, to find the end; one
// that has yet to stop at one does not (closedInMove).
func (ss *session) closeStream() {
	ss.mu.Lock()
	st, lk := ss.st, ss.lk
	restart := st != nil && ss.cond.stream == streamParked && ss.to(evWake)
	ss.closedInMove = st != nil
	ss.mu.Unlock()
	if st == nil {
		return
	}
	st.Close()
	st.SetReadDeadline(time.Now())
	if restart {
		ss.restartStream(lk, st)
	}
}

// save returns the frozen session's record, with what its parts save of
// themselves.
func (ss *session) save() record {
	ss.tmu.Lock()
	engine := ss.engine.Save()
	facts := ss.engine.Facts()
	ss.tmu.Unlock()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	r := ss.record
	if ss.factsHeld {
		// A late client's answers held back go in the Open that carries
		// the session on; what it typed with them, after.
		r.Facts = mergeFacts(r.Facts, facts)
	}
	_, isTLS := ss.conn.(*tls.Conn)
	r.TLS = isTLS || ss.TLS
	r.Parts = &parts{
		BytesIn: ss.bytesIn.Load(), BytesOut: ss.bytesOut.Load(),
		Engine: engine, Encoder: ss.enc.Save(),
		Compressing: ss.compressing, Compressor: ss.comp.Save(),
		Out: ss.out.save(),
	}
	return r
}

// thaw gives a frozen session back to this process: the move did not
// happen. It carries on where it stood, on the backend it was on.
func (ss *session) thaw() {
	ss.mu.Lock()
	if !ss.to(evThaw) {
		ss.mu.Unlock()
		return
	}
	attached := ss.cond.stream != streamAway
	held, lk := ss.cond.stream == streamHeld, ss.lk
	woken := held && ss.woken
	taken := ss.takenInMove // its player is elsewhere: not opened or held again
	ss.mu.Unlock()
	ss.out.thaw()
	ss.startReader((*session).readOn)
	switch {
	case taken:
		// Its player went on through another gateway: it ends here,
		// neither held nor opened again (an Open on another link would
		// take the session back).
		if lk != nil {
			lk.forget(ss)
		}
		ss.leave(endTaken)
	case woken:
		ss.attach(lk) // the backend woke it while it was moving
	case held:
		lk.holdByID([]*session{ss}) // the Move put it back on the orphan clock
	case !attached:
		if cur := ss.srv.current(); cur != nil {
			ss.attach(cur)
		}
	default:
		// On its stream still: what came for the backend while it was
		// moving (input, or facts a hold let go) goes now.
		ss.sendFacts(false)
		ss.forward()
	}
}

// letGo forgets a session that another process now holds. Its socket is
// that process's: this process's descriptor is closed by CloseMoved.
func (ss *session) letGo() {
	ss.mu.Lock()
	ss.to(evEnd)
	heldOn := ss.lk
	if ss.cond.stream != streamHeld {
		heldOn = nil
	}
	ss.mu.Unlock()
	if heldOn != nil {
		heldOn.forget(ss) // the other process holds it now
	}
	ss.out.close()
	ss.srv.remove(ss)
}

// closeDescriptor closes this process's descriptor of a connection without
// ending the connection. A relayed connection is left alone: closing it
// would end it (TLS's close_notify, WebSocket's close), and the relay that
// carries it on holds it.
func closeDescriptor(c net.Conn) {
	if !relayed(c) {
		c.Close()
	}
}

// socket returns a descriptor of the session's socket to pass to the other
// process, kept open until it has gone whatever happens to the session
// meanwhile: a copy outside the runtime's poller. A relayed connection
// cannot move: it gets a local socket pair instead, whose other end the
// relay joins to the connection here. A connection that the player opens
// again (a resumable WebSocket) moves as its state alone, with no
// descriptor.
func (ss *session) socket() (sendable, *relay, []byte, error) {
	if e, ok := ss.conn.(exporter); ok && !relayed(ss.conn) {
		state, err := e.Export()
		return nil, nil, state, err
	}
	if relayed(ss.conn) {
		f, r, err := newRelay(ss, ss.conn)
		if err != nil {
			return nil, nil, nil, err
		}
		return f, r, nil, nil
	}
	fd, err := netx.DupFD(ss.conn)
	if err != nil {
		return nil, nil, nil, err
	}
	return fd, nil, nil, nil
}

// sendable is a descriptor to pass to the other process: a socket's copy,
// or a relay's end.
type sendable interface {
	syscall.Conn
	io.Closer
}

// exporter is a connection that moves to another process as its state,
// its player connecting again to that process. Like a socket's, its move
// has two phases: Export freezes it and returns its state, and nothing
// changes for the player until the batch commits; then Moved tells the
// player to connect to the new process, or, if the batch failed, Thaw
// lets it carry on here as if nothing had happened.
type exporter interface {
	Export() ([]byte, error)
	Moved()
	Thaw()
}

// arriver is a connection that moved as its state (an exporter's, in the
// process it came from), and is told when its move has committed: until
// then its player is sent back to wait, since an Abort may leave the
// session with the other process.
type arriver interface{ Arrived() }

// Arrivals are sessions received from another gateway process, prepared
// but not yet started.
type Arrivals struct {
	srv      *Server
	sessions []*session
}

// Receive prepares the sessions of a batch that another process offers:
// their state, and their sockets in the same order. Nothing is read from
// or written to the sockets until Start.
func (s *Server) Receive(state []byte, conns []*os.File) (*Arrivals, error) {
	s.init()
	a := &Arrivals{srv: s}
	states, err := unmarshalBatch(state)
	withSocket := 0
	for _, m := range states {
		if m.Parts == nil {
			err = errors.New("a session record without its parts")
			break
		}
		if m.Parts.Conn == nil {
			withSocket++
		}
	}
	if err == nil && withSocket != len(conns) {
		err = fmt.Errorf("%d sessions with sockets, and %d sockets", withSocket, len(conns))
	}
	next := conns
	for i := 0; err == nil && i < len(states); i++ {
		var f *os.File
		if states[i].Parts.Conn == nil {
			f, next = next[0], next[1:]
		}
		var ss *session
		ss, err = s.arrive(&states[i], f)
		if err == nil {
			a.sessions = append(a.sessions, ss)
		}
	}
	for _, f := range next { // the sessions' own are theirs
		f.Close()
	}
	if err != nil {
		a.Discard()
		return nil, fmt.Errorf("gateway: receiving sessions: %w", err)
	}
	return a, nil
}

// arrive builds a session from another process's record and socket, or,
// for a connection that moved without one, from its record. It takes f:
// the session keeps it, or it is closed.
func (s *Server) arrive(m *record, f *os.File) (*session, error) {
	var c net.Conn
	var err error
	switch {
	case f != nil:
		if c, err = netx.NewConn(f); err != nil {
			f.Close()
		}
	case s.Reconnect == nil:
		err = errors.New("a browser's session, and no web listener here")
	default:
		c, err = s.Reconnect(m.Parts.Conn)
	}
	if err != nil {
		return nil, err
	}
	p := m.Parts
	ss := newSession(s, m.ID, c, netx.Addr(m.Facts.ClientAddr), m.IP)
	ss.record, ss.Parts = *m, nil
	ss.bytesIn.Store(p.BytesIn)
	ss.bytesOut.Store(p.BytesOut)
	if err := ss.engine.Restore(p.Engine); err != nil {
		c.Close()
		return nil, err
	}
	if err := ss.comp.Restore(p.Compressor); err != nil {
		c.Close()
		return nil, err
	}
	ss.enc.Restore(p.Encoder)
	ss.enc.Exact = ss.keeps
	ss.compressing = p.Compressing
	if len(p.Out.Buf)+len(p.Out.Marks)+len(p.Out.Wire) > 0 {
		ss.rareFields().pendingOut = p.Out
	}
	ss.Facts, ss.Hello = boundMoved(m.Facts, m.Hello)
	ss.to(evNegotiated)
	return ss, nil
}

// Len is how many sessions arrived.
func (a *Arrivals) Len() int { return len(a.sessions) }

// Start makes the arrived sessions this process's: their output flows,
// their players are read, and they are opened on the backend.
func (a *Arrivals) Start() {
	s := a.srv
	s.mu.Lock()
	for _, ss := range a.sessions {
		s.sessions[ss] = struct{}{}
		s.perIP[ss.IP]++
	}
	s.mu.Unlock()
	cur := s.current()
	for _, ss := range a.sessions {
		if a, ok := ss.conn.(arriver); ok {
			a.Arrived()
		}
		ss.mu.Lock()
		var out outboxState
		if r := ss.rare; r != nil {
			out, r.pendingOut = r.pendingOut, outboxState{}
			ss.shedRare()
		}
		ss.mu.Unlock()
		ss.out.restore(out)
		ss.out.reached(ss.OutOff)
		ss.keep()
		// An idle player's socket goes straight to the parker, which
		// starts a reader once it is readable (at once if input waits):
		// a reader for each arrival would wait its second and park it.
		if !ss.park() {
			ss.startReader((*session).readOn)
		}
	}
	if cur != nil {
		placeAll(cur, a.sessions)
	}
	a.sessions = nil
}

// Discard lets go of sessions that were not started: only this process's
// descriptors are closed.
func (a *Arrivals) Discard() {
	for _, ss := range a.sessions {
		closeDescriptor(ss.conn)
	}
	a.sessions = nil
}
