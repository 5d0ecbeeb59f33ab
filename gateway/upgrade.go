package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/netx"
)

// A gateway upgrade moves every held session into a new gateway process,
// with everything the session knows, in batches. For each batch the old
// process (MoveOut):
//
//  1. stops the players' readers and writers, keeping what they had read
//     and not yet held, and what they had queued and not yet written;
//  2. asks the backend, on the link's control stream, to let the sessions
//     go (link.FrameMove): each answers Moved as the last frame on its
//     stream, after all its output, and waits, its writes kept, until a
//     stream from the new process opens it again;
//  3. offers the sessions' state and sockets to the new process, which
//     prepares them without touching them;
//  4. commits: once the new process has said it took the batch, the old
//     one lets go of its copies of the sockets (closing a descriptor, never
//     shutting a socket down). Until then, any failure gives the batch back
//     to the old process, which carries on with it as before.
//
// The new process starts each session where it stood, and opens it on its
// own link to the backend, which takes it back as the same Session. The
// player and the game notice a pause of one batch at most.

// Mover carries sessions to another gateway process, a batch at a time.
type Mover interface {
	// Offer hands the other process a batch: the sessions' state and their
	// sockets, in order. It returns once the other process holds them,
	// untouched.
	Offer(state []byte, conns []*os.File) error
	// Commit makes the batch offered last the other process's own. It
	// returns once the other process has taken it.
	Commit() error
}

// moveBatch bounds a batch: descriptors passed in one message (Linux takes
// 253), and how long a batch's players wait.
const moveBatch = 200

// moveStop bounds how long a session's reader, writer and backend stream
// get to stop for a move.
const moveStop = 5 * time.Second

// MoveOut hands every session to another gateway process through m, and
// returns how many it moved. It waits for connections still in their
// handshake and clients still negotiating, and moves them too; the caller
// stops accepting new players first (StopServing). Sessions that end
// meanwhile end here. On an error the batch under way stays here, and so
// do the sessions not yet moved.
func (s *Server) MoveOut(ctx context.Context, m Mover) (int, error) {
	s.init()
	moved := 0
	for {
		batch, waiting := s.movable(moveBatch)
		if len(batch) == 0 {
			if !waiting {
				return moved, nil
			}
			select {
			case <-ctx.Done():
				return moved, ctx.Err()
			case <-time.After(10 * time.Millisecond): // a handshake or negotiation to finish
			}
			continue
		}
		n, err := s.moveOut(ctx, m, batch)
		moved += n
		if err != nil {
			return moved, err
		}
	}
}

// movable returns up to n sessions ready to move, and reports whether
// others will be (a handshake or a negotiation under way).
func (s *Server) movable(n int) (batch []*session, waiting bool) {
	s.mu.Lock()
	waiting = len(s.pending) > 0
	list := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	for _, ss := range list {
		ss.mu.Lock()
		switch {
		case ss.gone, ss.moving:
		case !ss.negotiated:
			waiting = true
		case len(batch) < n:
			batch = append(batch, ss)
		default:
			waiting = true
		}
		ss.mu.Unlock()
	}
	return batch, waiting
}

func (s *Server) moveOut(ctx context.Context, m Mover, batch []*session) (int, error) {
	start := time.Now()
	var frozen []*session
	for _, ss := range batch {
		if ss.freeze() {
			frozen = append(frozen, ss)
		}
	}
	frozen = s.stopIO(frozen)
	s.detachForMove(frozen)
	var keep []*session
	for _, ss := range frozen {
		ss.mu.Lock()
		ended := ss.endedInMove
		ss.mu.Unlock()
		if ended {
			// The game ended it meanwhile: it ends here, its output written.
			ss.thaw()
			ss.finish(endApplication, true)
			continue
		}
		keep = append(keep, ss)
	}
	if len(keep) == 0 {
		return 0, nil
	}
	states := make([]record, 0, len(keep))
	files := make([]*os.File, 0, len(keep))
	var relays []*relay
	var exported []exporter
	closeFiles := func() {
		for _, f := range files {
			f.Close()
		}
	}
	rollback := func(err error) (int, error) {
		closeFiles()
		for _, r := range relays {
			r.cancel()
		}
		for _, e := range exported {
			e.Thaw() // the page never knew
		}
		for _, ss := range keep {
			ss.thaw()
		}
		s.log().Warn("gateway: a batch of sessions stays here", zap.Int("sessions", len(keep)), zap.Error(err))
		return 0, err
	}
	for _, ss := range keep {
		f, r, conn, err := ss.socketFile()
		if err != nil {
			return rollback(fmt.Errorf("gateway: session %s: %w", ss.ID, err))
		}
		if conn != nil {
			exported = append(exported, ss.conn.(exporter))
		}
		if f != nil {
			files = append(files, f)
		}
		if r != nil {
			relays = append(relays, r)
		}
		st := ss.save()
		st.Parts.Conn = conn
		states = append(states, st)
	}
	enc, err := marshalBatch(states)
	if err != nil {
		return rollback(err)
	}
	if err := ctx.Err(); err != nil {
		return rollback(err)
	}
	if err := m.Offer(enc, files); err != nil {
		return rollback(err)
	}
	if err := m.Commit(); err != nil {
		return rollback(err)
	}
	closeFiles()
	for _, r := range relays {
		s.startRelay(r)
	}
	for _, e := range exported {
		e.Moved() // the page reconnects, to the new process
	}
	for _, ss := range keep {
		ss.letGo()
	}
	s.log().Info("gateway: sessions moved", zap.Int("sessions", len(keep)), zap.Duration("took", time.Since(start)))
	return len(keep), nil
}

// freeze marks the session as moving: from now on nothing new reaches the
// backend, and its reader and writer stop. It reports false for a session
// that cannot move now.
func (ss *session) freeze() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.gone || ss.moving || !ss.negotiated {
		return false
	}
	ss.moving = true
	ss.endedInMove = false
	ss.space.Broadcast()
	parked := ss.parked
	ss.parked = false
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
			data := ss.fromPlayer(buf[:0], buf[:n])
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
func (s *Server) detachForMove(frozen []*session) {
	byLink := map[*backendLink][]*session{}
	var waits []<-chan struct{}
	for _, ss := range frozen {
		ss.mu.Lock()
		if ss.st != nil {
			done := make(chan struct{})
			ss.streamDone = done
			waits = append(waits, done)
			byLink[ss.lk] = append(byLink[ss.lk], ss)
		}
		ss.mu.Unlock()
	}
	for lk, list := range byLink {
		ids := make([]string, len(list))
		for i, ss := range list {
			ids[i] = ss.ID
		}
		if lk.leaving() || lk.move(ids) != nil {
			for _, ss := range list {
				ss.closeStream()
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
			// closing their streams, and resumed by the new process.
			for _, ss := range frozen {
				ss.closeStream()
			}
			for _, w := range waits[i:] {
				<-w
			}
			return
		}
	}
}

// closeStream closes the session's backend stream, if it has one.
func (ss *session) closeStream() {
	ss.mu.Lock()
	st := ss.st
	ss.mu.Unlock()
	if st != nil {
		st.Close()
		st.SetReadDeadline(time.Now())
	}
}

// save returns the frozen session's record, with what its parts save of
// themselves.
func (ss *session) save() record {
	ss.tmu.Lock()
	engine := ss.engine.Save()
	ss.tmu.Unlock()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	r := ss.record
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
	if !ss.moving {
		ss.mu.Unlock()
		return
	}
	ss.moving = false
	attached := ss.st != nil
	ss.mu.Unlock()
	ss.out.thaw()
	ss.startReader((*session).readOn)
	if !attached {
		if cur := ss.srv.current(); cur != nil {
			ss.attach(cur)
		}
	}
}

// letGo forgets a session that another process now holds: its socket is
// that process's, so only this process's descriptor is closed.
func (ss *session) letGo() {
	ss.mu.Lock()
	ss.gone = true
	ss.mu.Unlock()
	ss.out.close()
	closeDescriptor(ss.conn)
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

// socketFile returns a descriptor of the session's socket to pass to the
// other process. A relayed connection cannot move: it gets a local socket
// pair instead, whose other end the relay joins to the connection here. A
// connection that the player opens again (a resumable WebSocket) moves as
// its state alone, with no descriptor.
func (ss *session) socketFile() (*os.File, *relay, []byte, error) {
	if e, ok := ss.conn.(exporter); ok && !relayed(ss.conn) {
		state, err := e.Export()
		return nil, nil, state, err
	}
	if relayed(ss.conn) {
		f, r, err := newRelay(ss, ss.conn)
		return f, r, nil, err
	}
	f, err := netx.Dup(ss.conn)
	return f, nil, nil, err
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
	for _, f := range conns {
		f.Close()
	}
	if err != nil {
		a.Discard()
		return nil, fmt.Errorf("gateway: receiving sessions: %w", err)
	}
	return a, nil
}

// arrive builds a session from another process's record and socket, or,
// for a connection that moved without one, from its record.
func (s *Server) arrive(m *record, f *os.File) (*session, error) {
	var c net.Conn
	var err error
	switch {
	case f != nil:
		c, err = net.FileConn(f)
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
	ss.compressing = p.Compressing
	ss.pendingOut = p.Out
	ss.Facts, ss.Hello = boundMoved(m.Facts, m.Hello)
	ss.negotiated = true
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
		ss.out.restore(ss.pendingOut)
		ss.pendingOut = outboxState{}
		ss.startReader((*session).readOn)
	}
	if cur != nil {
		attachAll(cur, a.sessions)
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
