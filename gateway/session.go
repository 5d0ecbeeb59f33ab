package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"holdfast/gateway/telnet"
	"holdfast/internal/netx"
	"holdfast/link"
)

// What the gateway itself tells players.
const (
	noticeWaiting    = "[holdfast] The game is not running right now. Stay connected: it will be back, and what you type is kept.\n"
	noticeRestarting = "[holdfast] The game is restarting. Stay connected: what you type is kept.\n"
	noticeBack       = "[holdfast] The game is back.\n"
	noticeShutdown   = "[holdfast] The gateway is shutting down. Goodbye.\n"
	noticeIdle       = "[holdfast] Disconnected after %v without input.\n"
)

// session is one player's held session. The player's socket has a reader
// goroutine while the player types, and a writer while output waits;
// while a backend is attached, another goroutine reads that backend's
// stream, unless the stream is parked (see link.FramePark). An idle
// session has no goroutine. Where it stands is its condition (cond), and
// condition.go has the locks' order.
type session struct {
	// record is what of the session lasts beyond this process and its
	// backend stream: guarded by mu, but for ID, Since, IP, TLS and Kind,
	// which never change.
	record

	srv  *Server
	conn net.Conn
	out  *outbox
	// rare holds what few sessions need, or need for a moment: nil for
	// the others (see sessionRare).
	rare *sessionRare

	bytesIn, bytesOut atomic.Uint64 // on the player's socket

	tmu    sync.Mutex // guards the telnet engine
	engine *telnet.Engine

	mu sync.Mutex
	// space is signalled when input is acknowledged or the session ends,
	// made by the first wait for it (waitSpace): few players ever fill
	// their held input.
	space *sync.Cond
	// sent is how much of the held input (record.In) has gone out on the
	// current stream.
	sent int
	// st and lk are the backend stream and its link, while cond.stream is
	// not away.
	st         *link.Stream
	lk         *backendLink
	readerDone chan struct{} // closed when the player's reader has returned; nil once it has
	// queued holds the lines broadcast to the stream after a Parked not
	// read yet (parksSeen counts those read).
	queued     []broadcastLine
	streamDone chan struct{} // during a move: closed when the stream's reader has returned
	// factsTimer is set while the next update of the facts waits for
	// factsInterval to pass (factsDirty).
	factsTimer *time.Timer

	wmu sync.Mutex // serialises frames on the stream, and attaching

	// The MCCP2 stream, used by the one writer running at a time.
	comp        telnet.Compressor
	compressing bool

	// What follows is small, and packed together: every idle player
	// keeps a session record, which is held to its size class
	// (TestIdleSessionSize).

	enc  telnet.Encoder // used by the one stream reader only
	cond condition
	// parksSeen counts the Parked frames read on the stream.
	parksSeen uint32
	// quietMove, during a move, is the Parked at which the stream ends as
	// at Moved: the backend answered the Move with MovedParked.
	quietMove uint32
	// woken is set when a Wake came for the session while it was held:
	// the backend has something for it, and wakes it no more. wanted is
	// set when it has something to send (Want): once its Hold or OpenHeld
	// has gone (holding is set until then), the backend is asked to wake
	// it.
	woken, wanted, holding bool
	// closedInMove is set when a move that gave up on the backend closed
	// the stream: its reader must not stop at a Parked, where nothing
	// would start it again, but read on to the stream's end.
	closedInMove bool
	// keeps is set for a player who may come back through another
	// gateway (keep.go): the session counts the game's output (OutOff).
	keeps bool
	// parkedSweeps counts the sweeps that found the stream parked, up to
	// the Stow (stow.go); stowing is set while its Stowed has not come.
	parkedSweeps uint16
	stowing      bool
	endedInMove  bool // during a move: the application ended the session
	takenInMove  bool // during a move: a claim took it (keep.go)
	// backDue says whether the notice that the game is back waits for
	// the game's answer, and since when (noticeBackHeld): backWaits,
	// backTaken; backNone otherwise.
	backDue atomic.Uint32
	// streamBusy is set by every frame read and cleared by the sweep,
	// which parks the streams it finds quiet; inFrame while the reader
	// handles a frame, where it may wait for a slow player: that stream
	// is not quiet, and the backend could not write Parked to it.
	streamBusy atomic.Bool
	inFrame    atomic.Bool
	// deployed is set while the session goes to the backend's successor
	// (a deploy): the next Open says so.
	deployed bool
	// heldOpen is set while the session, opened held (OpenHeld), has had
	// no stream on that backend: the control stream and a new stream are
	// not ordered, so the first stream's Open may reach the backend before
	// the OpenHeld, and carries the session in full (its hello, and
	// heldHanded, the OpenHeld's HandedOver) rather than carrying it on.
	heldOpen, heldHanded bool
	// factsHeld is set while a client's late answers are held back for
	// one update (holdFacts): the input typed meanwhile waits with them.
	factsHeld bool
	// factsDirty names the facts that changed since the current stream
	// had them (in its Open or the last update).
	factsDirty link.FactFields
}

// sessionRare is what few sessions need, or need for a moment, behind a
// pointer that most sessions leave nil. Guarded by the session's mu once
// the session is known to the server.
type sessionRare struct {
	// pendingOut is a moved session's queued output until it starts.
	pendingOut outboxState
	// heldWaiting is what a held session has to send that its next
	// stream's Open does not carry (GMCP), for that stream.
	heldWaiting []byte
	// claim is the token of a session claimed from another gateway, for
	// its first Open here.
	claim string
}

// rareFields returns the session's rare fields, made at the first need.
func (s *session) rareFields() *sessionRare {
	if s.rare == nil {
		s.rare = new(sessionRare)
	}
	return s.rare
}

// shedRare lets go of the rare fields once none is in use, with s.mu
// held.
func (s *session) shedRare() {
	r := s.rare
	if r != nil && r.pendingOut.Buf == nil && r.pendingOut.Marks == nil && r.pendingOut.Wire == nil && r.heldWaiting == nil && r.claim == "" {
		s.rare = nil
	}
}

// heldWaitsLocked reports, with s.mu held, whether the session is held on
// lk by a backend that answers it on the control stream (HeldFrames) and
// has not woken it: a stream opened for it now could reach the backend
// first and be adopted, while the answers the backend sent meanwhile in
// HeldFrames would find the session no longer held and be dropped, and
// the stream's acknowledgement would then forget those lines. Its Want
// and the backend's Wake open its stream.
func (s *session) heldWaitsLocked(lk *backendLink) bool {
	return s.cond.stream == streamHeld && s.lk == lk && !s.woken && lk.can(link.FeatureHeldFrames)
}

// claimToken is the session's claim token, if any, with s.mu held.
func (s *session) claimToken() string {
	if s.rare == nil {
		return ""
	}
	return s.rare.claim
}

func newSession(srv *Server, id string, c net.Conn, addr net.Addr, ip netip.Addr) *session {
	s := &session{
		record: record{ID: id, IP: ip, Since: time.Now(), Kind: connKind(c), Facts: link.Facts{ClientAddr: addr.String()}},
		srv:    srv,
		conn:   c,
	}
	s.out = newOutbox(srv.outputQueue(), s)
	s.engine = telnet.NewEngine(s, srv.NoCompress)
	s.keeps = s.keeper() != nil
	// Such a page counts the game's output as it comes (OutOff), to say
	// where it stands when it comes back elsewhere: one unit on the wire
	// for each byte of the game's.
	s.enc.Exact = s.keeps
	return s
}

// startWriter starts the player's writer, for its outbox.
func (s *session) startWriter() {
	s.srv.wg.Add(1)
	go s.writePlayer()
}

// writeNow is the writer's write, made by whoever holds the writer's place
// with nothing queued (outbox.putNow): only on a plain socket,
// uncompressed, and not a page's (whose output offsets the writer counts).
func (s *session) writeNow(b []byte) int {
	if s.compressing || s.keeps {
		return 0
	}
	n := writeNow(s.conn, b)
	if n > 0 {
		s.bytesOut.Add(uint64(n))
		s.srv.metrics.bytesOut.Add(float64(n))
	}
	return n
}

// broadcastLine is a line broadcast to the session, encoded, and how long
// the game's text of it is.
type broadcastLine struct {
	b []byte
	n int
}

// connKind names a player's connection for operators.
func connKind(c net.Conn) string {
	switch v := c.(type) {
	case *tls.Conn:
		return "telnet+tls"
	case interface{ Kind() string }:
		return v.Kind()
	}
	return "telnet"
}

// relayed reports whether a connection must stay in this process when its
// session moves to another: TLS (crypto/tls cannot hand over its keys)
// and WebSocket connections, whose bytes are relayed instead.
func relayed(c net.Conn) bool {
	switch v := c.(type) {
	case *tls.Conn:
		return true
	case interface{ Relayed() bool }:
		return v.Relayed()
	}
	return false
}

// shortDuration writes d as a player would: "1h", "1h30m", "90s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// The player reader's buffer sizes.
const (
	smallRead = 128
	largeRead = 4096
)

// largeReads are the buffers of readers whose last read filled its
// buffer: a player pasting or a client sending a burst. Each is taken for
// one read and given back, since what is read is copied out (held) before
// the read returns.
var largeReads = sync.Pool{New: func() any { return new([largeRead]byte) }}

// playerReader reads one player's socket. A player types a line at a
// time: the reader of an idle player holds a small buffer, and takes a
// large one from largeReads only while reads fill it.
type playerReader struct {
	s           *session
	small       [smallRead]byte // in the reader, one allocation for both at each start
	large       bool            // the last read filled its buffer
	negotiating bool
	overflow    []byte // what came past the held-input bound while negotiating
	// late is a new player's answers to the offers, while they may still
	// come: apart, so that the readers of idle players, which start again
	// and again, stay as small as before.
	late *lateAnswers
	// linger is how long a read waits before the reader parks the session
	// instead; zero: it waits as long as it takes. quiet is set when it
	// waited that long for nothing.
	linger time.Duration
	quiet  bool
}

// lateAnswers is what a new player's reader watches of the client's
// answers to the offers.
type lateAnswers struct {
	// offered is when the telnet offers went out, while the client has
	// answered none of them and its answer would still tell how slow
	// clients are; rtt is the client's round trip then, and offers how
	// many answers it owes.
	offered time.Time
	rtt     time.Duration
	offers  int
	// until is when the client's answers stop being waited for, while
	// its session has opened before they were all in: what they tell is
	// held for one update (see fromPlayer).
	until time.Time
}

func newPlayerReader(s *session) *playerReader {
	return &playerReader{s: s}
}

// read reads once and holds what came; it reports whether to go on.
func (r *playerReader) read() bool {
	s := r.s
	idle := s.srv.IdleTimeout
	switch {
	case idle > 0 && !r.negotiating:
		s.conn.SetReadDeadline(time.Now().Add(idle))
	case r.linger > 0:
		s.conn.SetReadDeadline(time.Now().Add(r.linger))
	}
	if s.is(phaseMoving) {
		return false
	}
	b := r.small[:]
	if r.large {
		large := largeReads.Get().(*[largeRead]byte)
		defer largeReads.Put(large)
		b = large[:]
	}
	n, err := s.conn.Read(b)
	var read, holdUntil time.Time
	if r.late != nil {
		read = time.Now() // how late the client answers, taken before the work of its answer
		holdUntil = r.late.until
	}
	r.quiet = false
	// A read that filled its buffer left more to read at once; one that
	// did not may wait for the next line, and waits with the small buffer.
	r.large = n == len(b)
	if n > 0 {
		s.bytesIn.Add(uint64(n))
		s.srv.metrics.bytesIn.Add(float64(n))
		// Decoded in place: the decoder never writes ahead of its input.
		data, settled := s.fromPlayer(b[:0], b[:n], holdUntil)
		if r.late != nil {
			r.listen(read, settled)
		}
		if r.negotiating && len(data) > 0 {
			// Not attached yet, so nothing would make room: input past
			// the bound ends the wait instead, and is held after.
			r.overflow = bytes.Clone(s.holdUpTo(data))
			data = nil
		}
		if len(data) > 0 && !s.hold(data) {
			return false
		}
	}
	if err != nil {
		if s.is(phaseMoving) {
			return false // stopped for the move; the socket is not ours to end
		}
		timeout := netx.IsTimeout(err) && !s.is(phaseGone)
		switch {
		case timeout && r.negotiating:
			return true // the negotiation wait is over
		case timeout && r.linger > 0:
			r.quiet = n == 0 // time to park, unless this read brought input
			return true
		case timeout:
			s.notice(fmt.Sprintf(noticeIdle, shortDuration(idle)))
			s.finish(endIdle, true)
		case errors.Is(err, io.EOF):
			s.finish(endPlayerClosed, false)
		default:
			s.finish(endPlayerFailed, false)
		}
		return false
	}
	return true
}

// listen records how late the client answered the offers, once a read
// at time read brings its first answer to one of them: a telnet command
// sent before it had them (a NOP at connect) says nothing of how long it
// takes. An answer later than negotiationWait says nothing new: no
// client waits longer than that. And it ends the hold of what the client
// answered after its session opened once they are all in (settled), or
// at the hold's end.
func (r *playerReader) listen(read time.Time, settled bool) {
	l := r.late
	if !l.offered.IsZero() {
		since := read.Sub(l.offered)
		switch {
		case since > negotiationWait:
			l.offered = time.Time{}
		case r.s.awaiting() < l.offers:
			r.s.srv.answers.observe(read, since-l.rtt)
			l.offered = time.Time{}
		}
	}
	if !l.until.IsZero() && (settled || !read.Before(l.until)) {
		l.until = time.Time{}
		r.s.flushFacts()
	}
	if l.offered.IsZero() && l.until.IsZero() && !r.negotiating {
		r.late = nil
	}
}

// readPlayer reads the player's socket until it closes, holding input and
// passing it to the backend when one is attached. It first makes the
// gateway's telnet offers and gives the client a moment to answer them, so
// that the backend starts with the facts; a client that answers nothing
// waits no longer than silentWait says, one that answers no longer than
// negotiationWait, and what either types meanwhile is kept.
func (s *session) readPlayer(done chan struct{}) {
	defer s.srv.wg.Done()
	defer s.readerEnded(done)
	r := newPlayerReader(s)
	r.negotiating = true
	s.tmu.Lock()
	s.engine.Start()
	s.tmu.Unlock()
	start := time.Now()
	wait, rtt, known := s.srv.silentWait(s.conn, start)
	r.late = &lateAnswers{}
	if known {
		r.late.offered, r.late.rtt, r.late.offers = start, rtt, s.awaiting()
	}
	deadline := start.Add(wait)
	s.conn.SetReadDeadline(deadline)
	lookedAgain := false
	for !s.settled() && len(r.overflow) == 0 {
		if !time.Now().Before(deadline) {
			// A reader descheduled past the deadline has not seen what
			// came within it (a read past the deadline reads nothing):
			// it reads once more, if there is something to read, which
			// a plain socket returns at once.
			if lookedAgain || !unread(s.conn) {
				break
			}
			lookedAgain = true
			s.conn.SetReadDeadline(time.Time{})
		}
		if !r.read() {
			return
		}
		if deadline.Sub(start) < negotiationWait && s.spoken() {
			deadline = start.Add(negotiationWait)
			s.conn.SetReadDeadline(deadline)
		}
	}
	s.conn.SetReadDeadline(time.Time{})
	r.negotiating = false
	if !s.settled() {
		r.late.until = start.Add(negotiationWait)
	} else if r.late.offered.IsZero() {
		r.late = nil // nothing more to watch
	}
	s.mu.Lock()
	s.to(evNegotiated)
	s.mu.Unlock()
	if cur := s.srv.current(); cur == nil || !s.attach(cur) {
		s.mu.Lock()
		s.Noticed = true
		s.mu.Unlock()
		s.notice(noticeWaiting)
	}
	if len(r.overflow) > 0 && !s.hold(r.overflow) {
		return
	}
	s.readLoop(r)
}

// parkLinger is how long a reader waits for more input before it parks
// its session: a player typing stays on a reader, an idle one has none.
// As short as parkInterval, for the same reason.
const parkLinger = 250 * time.Millisecond

// readLoop reads the player's socket until the session ends or the reader
// must stop. A reader that has waited parkLinger for nothing parks the
// session instead of waiting on in Read: the parker starts a new reader
// when the player types again.
func (s *session) readLoop(r *playerReader) {
	if s.srv.parker != nil && s.srv.IdleTimeout <= 0 {
		if _, ok := parkable(s.conn); ok {
			r.linger = parkLinger
		}
	}
	for r.read() {
		if r.quiet && s.park() {
			return
		}
	}
	if r.linger > 0 {
		s.conn.SetReadDeadline(time.Time{})
	}
}

// park hands the session's socket to the server's parker; it reports
// whether it did, and this reader must return.
func (s *session) park() bool {
	p := s.srv.parker
	if p == nil || s.srv.IdleTimeout > 0 {
		return false // an idle timeout is a read deadline: it needs a reader
	}
	fd, ok := parkable(s.conn)
	if !ok {
		return false
	}
	s.mu.Lock()
	ok = s.to(evPark)
	s.mu.Unlock()
	if !ok {
		return false
	}
	if err := p.park(s, fd); err != nil {
		s.mu.Lock()
		s.to(evUnpark)
		s.mu.Unlock()
		return false
	}
	return true
}

// unpark takes the session back from the parker, if it is there; it
// reports whether it was parked.
func (s *session) unpark() bool {
	p := s.srv.parker
	if p == nil {
		return false
	}
	p.unpark(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.to(evUnpark)
}

// closeConn closes the player's socket, out of the parker first: a
// descriptor number closed while in its set may name another player's
// socket next.
func (s *session) closeConn() {
	parked := s.unpark()
	s.conn.Close()
	if parked && !s.is(phaseGone) {
		s.startReader((*session).readOn) // the reader sees the error and ends the session
	}
}

// readOn reads the socket of a session whose negotiation is over: one
// that came from another gateway process, or stayed after a move failed.
func (s *session) readOn(done chan struct{}) {
	defer s.srv.wg.Done()
	defer s.readerEnded(done)
	s.conn.SetReadDeadline(time.Time{})
	s.readLoop(newPlayerReader(s))
}

// readerEnded closes a returning reader's channel, and lets go of it:
// no channel stands for a reader that has returned, so that a parked
// player keeps none.
func (s *session) readerEnded(done chan struct{}) {
	s.mu.Lock()
	if s.readerDone == done {
		s.readerDone = nil
	}
	s.mu.Unlock()
	close(done)
}

// startReader starts a reader for the player's socket: readPlayer for a
// new player, readOn for one that only carries on.
func (s *session) startReader(read func(*session, chan struct{})) {
	done := make(chan struct{})
	s.mu.Lock()
	s.readerDone = done
	s.mu.Unlock()
	s.srv.wg.Add(1)
	go read(s, done)
}

// waitSpace waits, with s.mu held, until wakeSpace.
func (s *session) waitSpace() {
	if s.space == nil {
		s.space = sync.NewCond(&s.mu)
	}
	s.space.Wait()
}

// wakeSpace wakes, with s.mu held, whoever waits for room in the held
// input.
func (s *session) wakeSpace() {
	if s.space != nil {
		s.space.Broadcast()
	}
}

// heldCheck is how often a player whose held input is full, with no
// backend attached, is checked for having left.
const heldCheck = time.Second

// hold appends input to the held input, waiting while it is full, and
// forwards it. It returns false when the session has ended.
func (s *session) hold(data []byte) bool {
	max := s.srv.maxHeldInput()
	for len(data) > 0 {
		s.mu.Lock()
		if s.cond.phase == phaseMoving {
			// The reader is stopping for a move: what it read goes with
			// the session, past the bound by one read at most.
			s.In = append(s.In, data...)
			s.mu.Unlock()
			return false
		}
		for len(s.In) >= max && s.cond.phase == phaseLive {
			if s.st != nil {
				s.waitSpace()
				continue
			}
			// No backend will make room until one attaches, and this
			// player's socket is not read meanwhile: look now and then
			// whether the player has left, so that the session does not
			// outlive them until then.
			t := time.AfterFunc(heldCheck, func() {
				s.mu.Lock()
				s.wakeSpace()
				s.mu.Unlock()
			})
			s.waitSpace()
			t.Stop()
			if s.st == nil && s.cond.phase == phaseLive && len(s.In) >= max {
				s.mu.Unlock()
				if peerClosed(s.conn) {
					s.finish(endPlayerClosed, false)
					return false
				}
				s.mu.Lock()
			}
		}
		switch s.cond.phase {
		case phaseGone:
			s.mu.Unlock()
			return false
		case phaseMoving:
			s.mu.Unlock()
			continue // kept whole, above
		}
		n := min(len(data), max-len(s.In))
		s.In = append(s.In, data[:n]...)
		s.mu.Unlock()
		data = data[n:]
		s.forward()
	}
	return true
}

// holdUpTo holds what of data fits under the bound, without waiting, and
// returns the rest.
func (s *session) holdUpTo(data []byte) []byte {
	s.mu.Lock()
	n := min(len(data), max(0, s.srv.maxHeldInput()-len(s.In)))
	if s.cond.phase != phaseGone {
		s.In = append(s.In, data[:n]...)
	}
	s.mu.Unlock()
	s.forward()
	return data[n:]
}

// forward sends the held input that the current stream has not had yet.
func (s *session) forward() {
	s.openHeld()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	st, lk := s.st, s.lk
	if st == nil || s.cond.phase == phaseMoving || lk.leaving() || s.sent == len(s.In) || s.factsHeld {
		s.mu.Unlock()
		return
	}
	fb := inputFrames.Get().(*[]byte)
	b := (*fb)[:0]
	// A fact learnt before this input goes before it, whatever the facts
	// interval: the game reads the input knowing it. (A player who sends
	// a fact before each line pays for each update with a line.)
	if s.factsDirty != 0 {
		b = link.AppendFrame(b, link.FrameFactsUpdate, s.Facts.AppendUpdate(nil, s.factsDirty))
		s.factsDirty = 0
	}
	// Framed here, straight from the held input: one copy, not two.
	b = appendInput(b, s.In[s.sent:])
	s.sent = len(s.In)
	s.mu.Unlock()
	// A failed write means the stream is dying; its reader will detach the
	// session and the input will be replayed. The link has copied b when
	// Write returns, so the buffer serves the next forward.
	st.Write(b)
	*fb = b
	putInputFrames(fb)
}

// inputFrames are forward's buffers: a player typing or pasting fast
// would otherwise cost a new one for each read.
var inputFrames = sync.Pool{New: func() any { return new([]byte) }}

func putInputFrames(fb *[]byte) {
	if cap(*fb) <= 2*largeRead {
		inputFrames.Put(fb)
	}
}

// appendInput appends input as Input frames, as many as it takes.
func appendInput(b, input []byte) []byte {
	for len(input) > 0 {
		n := min(len(input), link.MaxChunk)
		b = link.AppendFrame(b, link.FrameInput, input[:n])
		input = input[n:]
	}
	return b
}

// writePlayer drains the outbox to the socket, compressing what follows an
// MCCP2 start, and returns when the outbox is empty. The outbox runs one at
// a time, so it is the only goroutine that writes to the socket; the last
// one closes it and forgets the session.
func (s *session) writePlayer() {
	defer s.srv.wg.Done()
	for s.writeOnce() {
	}
}

// writeOnce writes what is queued and reports whether to go on.
func (s *session) writeOnce() bool {
	if w := s.out.takeWire(); len(w) > 0 && !s.write(w) {
		if s.is(phaseGone) {
			s.closeConn()
			s.srv.remove(s)
		}
		return false
	}
	b, marks, closeAfter, closed, ok := s.out.take()
	if !ok {
		return false
	}
	end := func() bool {
		s.closeConn()
		s.srv.remove(s)
		return false
	}
	if closed {
		return end()
	}
	// No buffer is kept between bursts: an idle player holds none.
	out := b // plain output goes out as queued
	if s.compressing || len(marks) > 0 {
		var wire []byte
		from := 0
		segment := func(to int) {
			if s.compressing {
				wire = s.comp.Append(wire, b[from:to])
			} else {
				wire = append(wire, b[from:to]...)
			}
			from = to
		}
		for _, m := range marks {
			segment(m.at)
			if s.compressing && !m.compress {
				wire = s.comp.End(wire)
			}
			s.compressing = m.compress
		}
		segment(len(b))
		out = wire
	}
	if len(out) > 0 && !s.write(out) {
		if s.is(phaseGone) {
			return end()
		}
		return false // cut by a move
	}
	// Written whole, and no writer keeps what it was handed: the buffer
	// serves the next put.
	s.out.recycle(b)
	if s.keeps {
		if k := s.keeper(); k != nil {
			k.Sent(s.out.takenUpTo())
		}
	}
	if closeAfter {
		// Nothing can be queued once closeAfter is set, and take handed
		// over everything queued before.
		return end()
	}
	return true
}

// write writes bytes as they go on the wire. A write that fails because
// the session is moving keeps what it did not write for the move; any
// other failure ends the session. It reports whether the write was whole.
func (s *session) write(out []byte) bool {
	n := writeNow(s.conn, out)
	var err error
	if n < len(out) {
		s.conn.SetWriteDeadline(time.Now().Add(s.srv.writeTimeout()))
		var more int
		more, err = s.conn.Write(out[n:])
		n += more
		if err == nil {
			// A deadline left to pass would stop writeNow, which
			// writes nothing once it has.
			s.conn.SetWriteDeadline(time.Time{})
		}
	}
	s.bytesOut.Add(uint64(n))
	s.srv.metrics.bytesOut.Add(float64(n))
	if err == nil {
		return true
	}
	if s.out.isFrozen() && !s.is(phaseGone) {
		s.out.cut(out[n:])
		return false
	}
	s.srv.log().Info("gateway: write to player failed", zap.String("session", s.ID), zap.Error(err))
	s.finish(endWriteFailed, false)
	return false
}

// notice tells the player something from the gateway itself: out of band
// where the connection has a way (a web page's control messages), so that
// no game output can pass for it; in the output otherwise.
func (s *session) notice(text string) {
	if n, ok := s.conn.(interface{ Notice(string) bool }); ok && n.Notice(text) {
		return
	}
	s.out.put(s.encodeNotice(text), 0)
}

func (s *session) encodeNotice(text string) []byte {
	var e telnet.Encoder
	return e.Encode([]byte("\r\n"), []byte(text))
}

// attach resumes the session on lk, with its facts, state and every byte
// of held input. It reports whether the session is attached afterwards,
// or held on lk and waiting there for the backend's Wake (heldWaitsLocked).
func (s *session) attach(lk *backendLink) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	c, moveFrom := s.cond, s.MoveFrom
	waits := s.heldWaitsLocked(lk)
	s.mu.Unlock()
	if waits {
		return true
	}
	if _, ok := c.next(evAttach); !ok || lk.leaving() {
		return c.stream != streamAway
	}
	// A session that a move left away on this very backend carries on
	// there: no resume, and nothing the game has had already. One opened
	// held there has its Open again in full, which a backend that has it
	// adopts (and hears the client's hello once more).
	carryOn := moveFrom != "" && lk.instance == moveFrom
	st, err := lk.mux.OpenStream()
	if err != nil {
		return false
	}
	s.mu.Lock()
	if s.heldWaitsLocked(lk) {
		// Held there meanwhile (placed with the others on a new link).
		s.mu.Unlock()
		st.Close()
		return true
	}
	if s.cond.stream != c.stream || c.stream == streamHeld && s.lk != lk || s.MoveFrom != moveFrom || !s.to(evAttach) {
		// It ended, began to move, or went elsewhere (a held session
		// handed to a successor) while the stream opened.
		s.mu.Unlock()
		st.Close()
		return false
	}
	s.factsDirty = 0 // the Open has them all
	if s.Opened && !carryOn {
		s.Resumed++
		s.srv.metrics.resumes.Inc()
		s.srv.metrics.resumeSeconds.Observe(time.Since(s.Lost).Seconds())
	}
	s.Opened = true
	reopen := carryOn && s.heldOpen
	s.MoveFrom, s.Quiet = "", false
	// The flag of a deploy is for the successor's Open: a session opened
	// again on the backend it is leaving (woken while held) keeps it.
	o := s.open(s.deployed && !carryOn || reopen && s.heldHanded)
	if !carryOn {
		s.deployed = false
	}
	s.heldOpen, s.heldHanded = false, false
	s.woken, s.wanted = false, false
	s.stowing, s.parkedSweeps = false, 0
	o.Keep, o.Output, o.Claim = s.keeps, s.OutOff, s.claimToken()
	if reopen {
		o.HelloAgain = uint8(min(len(s.Hello), 255))
	}
	// One write for the lot (Open, the client's GMCP hello, the held
	// input): one frame on the link, not three, for each of the
	// thousands of sessions a resume opens.
	b := link.AppendFrame(nil, link.FrameOpen, o.Append(nil))
	if s.keeps {
		b = s.keptFrames(b)
	}
	if !carryOn || reopen {
		for _, m := range s.Hello {
			b = link.AppendFrame(b, link.FrameGMCPIn, m)
		}
	}
	if r := s.rare; r != nil {
		b = append(b, r.heldWaiting...) // after the hello, which HelloAgain counts
		r.heldWaiting = nil
		r.claim = "" // once: if refused, the session ends
		s.shedRare()
	}
	s.st, s.lk, s.sent = st, lk, 0
	if !s.factsHeld { // else it goes after them, when they do
		b = appendInput(b, s.In)
		s.sent = len(s.In)
	}
	s.parksSeen, s.queued = 0, nil
	s.streamBusy.Store(true)
	s.mu.Unlock()
	s.noticeBack()
	_, err = st.Write(b)
	s.srv.wg.Add(1)
	lk.track(st, s)
	st.SetDeliverer(s)
	go s.readStream(lk, st)
	if err != nil {
		st.Close() // the reader detaches the session
	}
	return true
}

// readStream handles what the backend sends on one stream until it ends,
// then detaches the session or, if the application ended it, ends it.
func (s *session) readStream(lk *backendLink, st *link.Stream) {
	defer s.srv.wg.Done()
	ended, moved, parked := s.readFrames(st)
	if parked {
		lk.readers.Add(-1)
		return
	}
	defer lk.untrack(st)
	if !moved {
		s.mu.Lock()
		moved = s.quietMove != 0 && s.parksSeen >= s.quietMove // woken to find its end
		s.mu.Unlock()
	}
	s.streamEnded(lk, st, ended, moved)
}

// stopAtParked decides, at a Parked frame, whether the stream's reader
// stops: not when the Wake that follows it has come already. Lines
// broadcast after this Parked that came first go out now. moved reports
// that the stream ends here, as at Moved (MovedParked).
func (s *session) stopAtParked() (stop, moved bool) {
	s.mu.Lock()
	// The lines go out before the reader may stop: once it has, a Wake
	// starts another, whose output comes after them. Lines that come
	// meanwhile are queued, and taken in turn.
	for len(s.queued) > 0 {
		queued := s.queued
		s.queued = nil
		s.mu.Unlock()
		for _, l := range queued {
			s.putBroadcast(l)
		}
		s.mu.Lock()
	}
	s.parksSeen++
	s.to(evParkedRead)
	if s.cond.stream == streamParked && (s.closedInMove || s.lk != nil && s.lk.dead.Load()) {
		// Nothing would start the reader again: a move closed the
		// stream, or the link broke (and broken found no parked reader
		// to start) before this Parked was read. It reads on to the end.
		s.to(evWake)
	}
	stop = s.cond.stream == streamParked
	moved = s.quietMove != 0 && s.parksSeen >= s.quietMove
	s.mu.Unlock()
	return stop, moved
}

// movedParked handles the backend's answer to a Move, or a deploy's
// Release, for the session on lk: its stream ends at its Parked number
// park, as it would at Moved. A reader that has gone at that Parked is
// started again to end it; one past it waits for nothing more, and is
// woken; one before it ends there. In a move to another process, a reader
// gone at that Parked is not started only to find the end: the stream
// ends here, and is returned for the caller to close, with the channel
// that then tells the mover.
func (s *session) movedParked(lk *backendLink, park uint32) (closing *link.Stream, done chan struct{}) {
	s.mu.Lock()
	st := s.st
	if s.lk != lk || st == nil || !s.moving() || park == 0 {
		s.mu.Unlock()
		return nil, nil
	}
	past := s.parksSeen >= park
	if past && s.cond.phase == phaseMoving && s.cond.stream == streamParked && s.to(evDetach) {
		s.forgetStreamLocked()
		s.MoveFrom = lk.instance
		s.endedInMove = false
		done, s.streamDone = s.streamDone, nil
		s.mu.Unlock()
		return st, done
	}
	s.quietMove = park
	restart := s.cond.stream == streamParked && s.to(evWake)
	s.mu.Unlock()
	if past {
		st.SetReadDeadline(time.Now()) // nothing after that Parked: the reader ends at once
	}
	if restart {
		s.restartStream(lk, st)
	}
	return nil, nil
}

// moving reports, with s.mu held, whether the session is leaving its
// backend: to another gateway process, or to the backend's successor.
func (s *session) moving() bool {
	return s.cond.phase == phaseMoving || s.cond.phase == phaseLive && s.deployed
}

// endParked ends the session's stream on lk, released in a deploy at its
// Parked number park, if its reader has stopped there: the stream ends as
// at Moved, without the reader. It reports whether it did; the caller puts
// the session on the successor.
func (s *session) endParked(lk *backendLink, park uint32) bool {
	s.mu.Lock()
	st := s.st
	ok := s.lk == lk && st != nil && s.cond.phase == phaseLive && s.deployed &&
		s.cond.stream == streamParked && s.parksSeen >= park && s.to(evDetach)
	if ok {
		s.forgetStreamLocked()
	}
	s.mu.Unlock()
	if !ok {
		return false
	}
	lk.endUnread(st)
	return true
}

// forgetStreamLocked forgets the session's stream, which has ended; s.mu
// is held.
func (s *session) forgetStreamLocked() {
	s.st, s.lk, s.sent, s.quietMove, s.closedInMove = nil, nil, 0, 0, false
	s.Lost = time.Now()
}

// broadcast delivers a line the backend broadcast to the session's stream
// on lk after its Parked number park: now if the reader has read that
// Parked, else when it does; or, with park 0, to the session held on lk,
// now. b is shared with the other recipients.
func (s *session) broadcast(lk *backendLink, park uint32, l broadcastLine) {
	s.mu.Lock()
	if park == 0 && s.lk == lk && s.cond.stream == streamHeld && s.cond.phase != phaseGone {
		// Held, without a stream: the line is the session's next output.
		s.mu.Unlock()
		s.putBroadcast(l)
		return
	}
	if s.lk != lk || s.st == nil || s.cond.phase == phaseGone {
		s.mu.Unlock()
		return
	}
	if s.parksSeen < park {
		// The reader has yet to reach that Parked: it may be waiting
		// for a slow player, and what waits for it is bounded as the
		// output queue is.
		queued := len(l.b)
		for _, q := range s.queued {
			queued += len(q.b)
		}
		if queued <= s.srv.outputQueue() {
			s.queued = append(s.queued, l)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.slowPlayer()
		return
	}
	s.mu.Unlock()
	s.putBroadcast(l)
}

// putBroadcast queues a broadcast line for the player. It cannot wait for
// room, as a line on the session's own stream does: it may go past the
// output bound, up to twice it, and a player that far behind is a slow
// player.
func (s *session) putBroadcast(l broadcastLine) {
	l.b = s.withBackNotice(l.b) // a copy, if the notice goes first
	if !s.out.putProtocol(l.b) {
		if !s.is(phaseGone) {
			s.slowPlayer()
		}
		return
	}
	s.wrote(l.n)
}

// wrote counts n bytes of the game's output as queued for the player, for
// a player who may come back elsewhere.
func (s *session) wrote(n int) {
	if !s.keeps {
		return
	}
	s.mu.Lock()
	s.OutOff += uint64(n)
	off := s.OutOff
	s.mu.Unlock()
	s.out.reached(off)
}

// slowPlayer ends, on a goroutine of its own, the session of a player too
// far behind to queue more for: the caller reads a stream for many.
func (s *session) slowPlayer() {
	s.srv.log().Warn("gateway: disconnecting a player who does not read", zap.String("session", s.ID))
	s.srv.wg.Add(1)
	go func() {
		defer s.srv.wg.Done()
		s.finish(endSlowPlayer, false)
	}()
}

// wakeStream starts a reader for the session's parked stream on lk: the
// backend has written to it or closed it. A Wake that comes before the
// reader has stopped at Parked keeps it from stopping.
func (s *session) wakeStream(lk *backendLink) {
	s.mu.Lock()
	st := s.st
	if s.lk != lk || st == nil || !s.to(evWake) || s.cond.stream != streamAttached {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.restartStream(lk, st)
}

// restartStream starts the reader of a stream that was parked.
func (s *session) restartStream(lk *backendLink, st *link.Stream) {
	lk.readers.Add(1)
	s.srv.wg.Add(1)
	go s.readStream(lk, st)
}

// readFrames handles the stream's frames until one ends it (End, Moved),
// the reader parks (Parked) or the stream fails. It is where the reader
// waits between frames: its own frame is kept small, the work is
// frame's, so that the waiting stack is small enough for the runtime to
// shrink.
func (s *session) readFrames(st *link.Stream) (ended, moved, parked bool) {
	fr := link.Reader{R: st}
	var out []byte
	for {
		typ, _, err := fr.Next()
		if err != nil {
			return false, false, false
		}
		s.streamBusy.Store(true)
		if typ == link.FrameParked {
			switch stop, moved := s.stopAtParked(); {
			case moved:
				return false, true, false
			case stop:
				return false, false, true
			}
			continue
		}
		p, err := fr.Payload()
		if err != nil {
			return false, false, false
		}
		s.inFrame.Store(true)
		stop, ended, moved := s.frame(typ, p, &out)
		s.inFrame.Store(false)
		if stop {
			return ended, moved, false
		}
	}
}

// Deliver handles, on the link's reading goroutine, a frame of the
// session's stream while its reader waits, if nothing has been read behind
// it on the link: output that the player's queue has room for, to the
// player's socket at once if nothing waits before it (outbox.putNow), and
// the acknowledgement of input. Whatever might wait, or do more, it leaves
// to the reader; and frames with more behind them, whose work (a write to
// a socket each) the streams' readers and writers share while the link
// reads on.
func (s *session) Deliver(typ link.FrameType, p []byte, more bool, scratch *[]byte) bool {
	if more || s.backDue.Load() != backNone {
		return false // more to read; or the notice that the game is back goes first
	}
	switch typ {
	case link.FrameOutput:
		s.streamBusy.Store(true)
		enc := s.enc.Save()
		*scratch = s.enc.Encode((*scratch)[:0], p)
		if !s.out.putNow(*scratch) {
			s.enc.Restore(enc) // the reader encodes it again
			return false
		}
		s.wrote(len(p))
	case link.FrameAck:
		if s.keeps {
			return false // a page's keeper hears of it
		}
		s.streamBusy.Store(true)
		if off, err := link.ParseAck(p); err == nil {
			s.forgetInput(off)
		}
	default:
		return false
	}
	return true
}

// frame handles one frame from the backend; it reports whether the stream
// is over, and why.
func (s *session) frame(typ link.FrameType, p []byte, out *[]byte) (stop, ended, moved bool) {
	switch typ {
	case link.FrameOutput:
		*out = s.withBackNotice(s.enc.Encode((*out)[:0], p))
		if err := s.out.put(*out, s.srv.slowPlayer()); err != nil {
			if errors.Is(err, errSlowPlayer) {
				s.srv.log().Warn("gateway: disconnecting a player who does not read", zap.String("session", s.ID))
				s.finish(endSlowPlayer, false)
			}
			return true, false, false
		}
		s.wrote(len(p))
		if cap(*out) > 16<<10 {
			*out = nil
		}
	case link.FrameAck:
		if off, err := link.ParseAck(p); err == nil {
			s.ack(off)
		}
		if s.backDue.Load() == backWaits && s.backDue.CompareAndSwap(backWaits, backTaken) {
			// The game has taken the line: its answer, if it has one,
			// is on its way (a game may answer from a goroutine or a
			// tick of its own).
			time.AfterFunc(backAnswerWait, s.noticeBackDue)
		}
	case link.FrameState:
		s.mu.Lock()
		s.State = bytes.Clone(p)
		s.mu.Unlock()
	case link.FrameEnd:
		return true, true, false
	case link.FrameMoved:
		// The backend answered a Move: nothing more comes here, and it
		// holds the session for the gateway process it goes to.
		return true, false, true
	case link.FrameTaken:
		// Frozen in a move: no Moved comes; the move leaves it behind
		// (prepare), and streamEnded ends its wait.
		if !s.takenWhileMoving() {
			s.leave(endTaken)
		}
		return true, false, false
	case link.FrameOutAck:
		// A claim's: the output sent again starts here.
		if off, err := link.ParseAck(p); err == nil && s.keeps {
			s.mu.Lock()
			s.OutOff = off
			s.mu.Unlock()
			s.out.reached(off)
		}
	default:
		s.fromBackend(typ, p)
	}
	return false, false, false
}

// streamEnded detaches the session from a stream that is over: it ends
// the session if the application did, leaves it to a move under way, or
// attaches it elsewhere.
func (s *session) streamEnded(lk *backendLink, st *link.Stream, ended, moved bool) {
	st.Close()
	s.mu.Lock()
	s.to(evDetach)
	s.forgetStreamLocked()
	ph := s.cond.phase
	if ph == phaseMoving {
		// The mover takes it from here.
		if moved {
			s.MoveFrom = lk.instance
		}
		s.endedInMove = ended
	}
	if s.streamDone != nil {
		// A move waits for this end; the session may have ended
		// meanwhile (the server closing).
		close(s.streamDone)
		s.streamDone = nil
	}
	s.mu.Unlock()
	if ph == phaseMoving {
		return
	}
	if ended {
		s.finish(endApplication, true)
		return
	}
	if ph == phaseGone {
		return
	}
	s.resumeElsewhere(lk, moved)
}

// resumeElsewhere attaches a session that lost its place on lk to the
// current link, or tells the player the game is away. A session that ended
// with its link goes to another link; one that the backend let go of
// (moved: Moved, handed to its successor, which may have failed) may go to
// a new stream on the same link. One session at a time is opened on a
// stream, not held: its stream has just ended, most often because it was
// busy (many at once are held, by placeAll).
func (s *session) resumeElsewhere(lk *backendLink, moved bool) {
	if cur := s.srv.current(); cur != nil && (cur != lk || moved) && s.attach(cur) {
		return
	}
	s.mu.Lock()
	tell := !s.Noticed && s.cond.phase != phaseGone
	s.Noticed = true
	s.mu.Unlock()
	if tell {
		s.notice(noticeRestarting)
	}
}

// noticeBack tells the player that the game is back, if they were told
// that it was away.
func (s *session) noticeBack() {
	s.mu.Lock()
	noticed := s.Noticed
	s.Noticed = false
	s.mu.Unlock()
	if noticed {
		s.notice(noticeBack)
	}
}

// The states of backDue.
const (
	backNone  = iota
	backWaits // for the game to take the line
	backTaken // for the game's answer to the line it has taken
)

// backNoticeWait is how long the notice that the game is back waits for
// the game to take the line of a player who typed while it was away, and
// backAnswerWait how long, once it has, for its answer: the notice goes
// with the answer, in one write, and without it only after these waits.
// The first is long enough for a backend to take the lines of thousands
// of players resumed at once: a notice that went first would be a second
// write for each of them, and with thousands of players the writes are
// most of what the gateway does.
var (
	backNoticeWait = time.Second            // a variable for the tests
	backAnswerWait = 100 * time.Millisecond // a variable for the tests
)

// noticeBackHeld is noticeBack for a session opened held: for a player
// who typed while the game was away, whose input the game is about to
// answer, the notice goes before the game's next output, in the same write
// (withBackNotice), or after the waits above if none comes.
func (s *session) noticeBackHeld() {
	s.mu.Lock()
	typed := len(s.In) > 0
	due := typed && s.Noticed && s.backDue.CompareAndSwap(backNone, backWaits)
	s.mu.Unlock()
	switch {
	case due:
		time.AfterFunc(backNoticeWait, s.noticeBackDue)
	case !typed:
		s.noticeBack()
	}
}

// noticeBackDue sends the notice that the game is back, if it still waits
// and the game is: a backend gone again before it took the line is not
// back, and the next one's placing waits for its answer anew.
func (s *session) noticeBackDue() {
	if s.backDue.Swap(backNone) == backNone {
		return
	}
	s.mu.Lock()
	lk := s.lk
	s.mu.Unlock()
	if lk != nil && !lk.leaving() {
		s.noticeBack()
	}
}

// withBackNotice returns out, the game's output encoded, after the notice
// that the game is back if it waits for it; a page's notice goes out of
// band, at once.
func (s *session) withBackNotice(out []byte) []byte {
	if s.backDue.Load() == backNone || s.backDue.Swap(backNone) == backNone {
		return out
	}
	s.mu.Lock()
	noticed := s.Noticed
	s.Noticed = false
	s.mu.Unlock()
	if !noticed {
		return out
	}
	if n, ok := s.conn.(interface{ Notice(string) bool }); ok && n.Notice(noticeBack) {
		return out
	}
	return append(s.encodeNotice(noticeBack), out...)
}

// ack forgets held input up to the absolute offset off.
func (s *session) ack(off uint64) {
	if s.forgetInput(off) && s.keeps {
		if k := s.keeper(); k != nil {
			k.InputAcked(off) // the page forgets what it typed up to there
		}
	}
}

// forgetInput forgets held input up to off, and reports whether it did.
func (s *session) forgetInput(off uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off <= s.InOff || off > s.InOff+uint64(len(s.In)) {
		return false
	}
	n := int(off - s.InOff)
	s.In = s.In[n:]
	s.InOff = off
	s.sent = max(0, s.sent-n)
	if len(s.In) == 0 {
		s.In = nil // an idle session keeps no buffer
	}
	s.wakeSpace()
	return true
}

// abort ends the session at once, telling nobody: the gateway is closing.
func (s *session) abort() {
	s.mu.Lock()
	ended := s.to(evEnd)
	s.stopFactsLocked()
	s.wakeSpace()
	s.mu.Unlock()
	s.out.close()
	s.closeConn()
	if ended {
		s.srv.metrics.disconnects.WithLabelValues(endClosed).Inc()
	}
}

// finish ends the session once: the backend is told the player has gone,
// and the socket is closed, after the queued output when flush is set.
func (s *session) finish(reason string, flush bool) {
	s.mu.Lock()
	if !s.to(evEnd) {
		s.mu.Unlock()
		return
	}
	s.stopFactsLocked()
	st := s.st
	heldOn := s.lk
	if s.cond.stream != streamHeld {
		heldOn = nil
	}
	s.In = nil
	s.wakeSpace()
	s.mu.Unlock()
	if heldOn != nil {
		heldOn.dropHeld(s)
	}
	if st != nil {
		// The deadline also frees a forward blocked on a backend that does
		// not read, so that taking wmu cannot hang.
		st.SetWriteDeadline(time.Now().Add(time.Second))
		s.wmu.Lock()
		link.WriteFrame(st, link.FrameHangup, nil)
		s.wmu.Unlock()
		st.Close()
	}
	if flush {
		s.out.finish()
	} else {
		s.out.close()
		s.closeConn()
	}
	s.srv.metrics.disconnects.WithLabelValues(reason).Inc()
	s.srv.log().Info("gateway: player disconnected", zap.String("session", s.ID), zap.String("reason", reason))
}

// wake gives a parked session a reader again: its socket is readable.
func (s *session) wake() {
	s.mu.Lock()
	ok := s.to(evWakePlayer)
	s.mu.Unlock()
	if ok {
		s.startReader((*session).readOn)
	}
}
