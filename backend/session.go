package backend

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"holdfast/internal/netx"
	"holdfast/link"
)

// MaxLine is the longest line ReadLine returns; a longer line arrives in
// pieces of this size.
const MaxLine = 16 << 10

// ackBatch is how much consumed input may wait for its acknowledgement while
// the application keeps reading without blocking.
const ackBatch = 4 << 10

// Errors for what would exceed the link's bounds.
var (
	ErrStateTooLarge   = fmt.Errorf("backend: state larger than %d bytes", link.MaxState)
	ErrMessageTooLarge = fmt.Errorf("backend: GMCP message larger than %d bytes", link.MaxChunk)
)

// Session is one player's session on this backend. It is a net.Conn: Read
// returns the player's input and io.EOF when the player has gone; Write sends
// text to the player ("\n" ends a line; the gateway does the telnet). Close
// ends the player's session, unless the session has been detached, in which
// case it only lets go of it.
//
// The gateway may move a session to another stream without the application
// noticing: to a new gateway process during an upgrade, or onto a link made
// again after it broke. Meanwhile reads wait and writes are kept for the
// new stream (see Config.OrphanTimeout).
type Session struct {
	l          *Listener
	id         string
	handedOver bool

	rmu       sync.Mutex   // serialises readers and guards their fields
	rst       *link.Stream // the stream being read
	fr        link.Reader
	inInput   bool   // fr is inside an Input frame
	line      []byte // input read from the stream but not yet handed over
	delivered uint64 // input offset handed to the application
	recv      uint64 // input offset of the next byte the streams bring
	skip      uint64 // input bytes the stream repeats: it started before recv
	skipGMCP  uint8  // GMCPIn frames the stream repeats: a hello its OpenHeld brought

	wmu   sync.Mutex   // serialises frames to the gateway and guards their fields
	st    *link.Stream // where frames go, unless the session is away
	acked uint64       // offset of the last Ack sent
	// finished is the input the application had been handed when it last
	// came back to read: what it is done with, and all that is
	// acknowledged. A line it is still answering is not: a frame written
	// meanwhile, by it or by another goroutine (a line broadcast by
	// another player's), is no sign that the answer has gone, and a
	// backend that died before it would take the line along while the
	// gateway forgot it.
	finished uint64
	pending  []byte // frames written while away, for the next stream
	// pendingAck is the acknowledgement the frames in pending carry: the
	// answer and the line it answers go out together.
	pendingAck uint64
	// cork holds frames written while the application was answering
	// input (answering); corkAck is the acknowledgement the last of them
	// would have carried; the Listener's corks send them at the latest
	// corkDelay after corkedAt, when the first of them came. See Corking.
	cork      *[]byte
	corkAck   uint64
	corkedAt  time.Time
	inCorks   bool        // queued in the Listener's corks (guarded by its mu)
	answering atomic.Bool // handed input, and not back to read yet
	answered  bool        // written to while answering (guarded by wmu)
	// backToRead is closed when the application comes back to read, for a
	// Release that waits for it (tryRelease); made by the first such.
	backToRead chan struct{}
	// parked is the link whose gateway has let the reader of st go (it
	// read Parked there): it is sent Wake before st is written to or
	// closed. Nil while the gateway reads st.
	parked *gatewayLink
	parks  uint32 // Parked frames written on st
	// held is the link whose gateway holds the away session without a
	// stream, until it has been woken for a frame in pending (hold.go).
	// heldSent counts the bytes of frames sent since in HeldFrames.
	held     *gatewayLink
	heldSent int
	stateMu  sync.Mutex
	state    []byte
	// kept is the output kept for a claim from another gateway (see
	// keep.go); guarded by wmu. keeps says kept.on, to what holds mu.
	kept  kept
	keeps atomic.Bool

	detached chan struct{} // closed when the session leaves this backend

	mu       sync.Mutex
	gl       *gatewayLink // the link the session is on
	cur      *link.Stream // the newest stream, which deadlines apply to
	resumed  int
	hungup   bool
	closed   bool
	released bool         // handed to the successor: nothing more is written here
	away     bool         // between streams: moving, or its link is gone
	holder   *gatewayLink // the link holding the away session, which stops its clock (hold.go)
	// takenFrom is the link the last claim took the session from (keep.go).
	takenFrom *gatewayLink
	// releaseAtAdopt: a Release came for the session while it was held
	// and had frames waiting for its next stream: it is released once
	// they have gone out on it.
	releaseAtAdopt bool
	ended          bool          // away for too long: the player counts as gone
	back           chan struct{} // closed when an away session is adopted or ends
	next           *link.Stream  // the stream it was adopted on, for the reader
	nextOff        uint64        // the input offset that stream starts at
	nextSkip       uint8         // the GMCPIn frames that stream starts with that repeat a hello read before
	expiry         *time.Timer
	readDeadline   time.Time
	newFacts       bool       // adopted with other facts: OnFacts is due
	facts          link.Facts // as the link carries them: updates merge here
	onFacts        func(Facts)
	onGMCP         func(pkg string, data []byte)
}

func newSession(l *Listener, gl *gatewayLink, st *link.Stream, o *link.Open) *Session {
	s := &Session{
		l: l, id: o.ID,
		rst: st, fr: link.Reader{R: st},
		delivered: o.Offset, recv: o.Offset,
		st: st, acked: o.Offset, finished: o.Offset, state: o.State,
		detached: make(chan struct{}),
		gl:       gl, cur: st, resumed: int(o.Resumed), facts: o.Facts,
		handedOver: o.HandedOver,
	}
	s.kept.on, s.kept.off = o.Keep, o.Output
	s.keeps.Store(o.Keep)
	return s
}

// ID returns the gateway's identifier for this session; it stays the same
// across resumes.
func (s *Session) ID() string { return s.id }

// Resumed returns how many times this session has been resumed on a new
// backend: 0 for a player who has just connected.
func (s *Session) Resumed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumed
}

// Facts returns what the gateway knows about the player's connection, as
// of the last Read: a window resize, say, arrives with the input.
func (s *Session) Facts() Facts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return factsOf(&s.facts)
}

// OnFacts sets a function called when the facts change (the player resized
// the window; the terminal type became known). It is called from Read or
// ReadLine, in order with the input.
func (s *Session) OnFacts(f func(Facts)) {
	s.mu.Lock()
	s.onFacts = f
	s.mu.Unlock()
}

// OnGMCP sets a function called for each GMCP message from the player's
// client, such as "Core.Hello" with its JSON data. A resumed session gets the
// client's Core.Hello and Core.Supports messages again first. It is called
// from Read or ReadLine, in order with the input.
func (s *Session) OnGMCP(f func(pkg string, data []byte)) {
	s.mu.Lock()
	s.onGMCP = f
	s.mu.Unlock()
}

// SendGMCP sends a GMCP message to the player's client, if it speaks GMCP;
// data is JSON, or empty.
func (s *Session) SendGMCP(pkg string, data []byte) error {
	msg := []byte(pkg)
	if len(data) > 0 {
		msg = append(append(msg, ' '), data...)
	}
	if len(msg) > link.MaxChunk {
		return ErrMessageTooLarge
	}
	return s.send(link.FrameGMCPOut, msg)
}

// SetEcho(false) asks the player's client to stop echoing what the player
// types, for a password; SetEcho(true) turns echo back on. The gateway
// negotiates it (telnet ECHO) and keeps it across backend restarts.
func (s *Session) SetEcho(on bool) error {
	b := byte(0)
	if on {
		b = 1
	}
	return s.send(link.FrameEcho, []byte{b})
}

// Prompt writes text as a prompt: the gateway marks its end with telnet's
// EOR or GA, as the client negotiated, so that MUD clients know where it
// ends although no newline follows.
func (s *Session) Prompt(text string) error {
	if _, err := io.WriteString(s, text); err != nil {
		return err
	}
	return s.send(link.FramePrompt, nil)
}

// State returns a copy of the application state last stored with SetState,
// on this backend or an earlier one.
func (s *Session) State() []byte {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return bytes.Clone(s.state)
}

// SetState stores b (at most link.MaxState bytes) in the gateway, which hands
// it back when the session resumes on another backend.
func (s *Session) SetState(b []byte) error {
	if len(b) > link.MaxState {
		return ErrStateTooLarge
	}
	s.stateMu.Lock()
	s.state = bytes.Clone(b)
	s.stateMu.Unlock()
	return s.send(link.FrameState, b)
}

// Read reads the player's input. It returns io.EOF when the player has gone
// and ErrDetached as soon as the session has left this backend; input not yet
// handed over then goes to the next backend.
func (s *Session) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.finish()
	if s.isDetached() {
		return 0, ErrDetached
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(s.line) > 0 {
		n := copy(p, s.line)
		s.line = s.line[:copy(s.line, s.line[n:])]
		s.deliver(n)
		return n, nil
	}
	s.flushAck(0) // the application is back for more: done with all it was handed
	n, err := s.fill(p)
	s.deliver(n)
	return n, err
}

// ReadLine returns the next line of input without its "\n". Unlike a
// bufio.Reader over Read, it hands over (and so acknowledges) only whole
// lines: a partial line stays with the gateway if the backend dies.
func (s *Session) ReadLine() (string, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.finish()
	scanned := 0
	for {
		if s.isDetached() {
			return "", ErrDetached
		}
		if i := bytes.IndexByte(s.line[scanned:], '\n'); i >= 0 {
			i += scanned
			line := string(s.line[:i])
			s.line = s.line[:copy(s.line, s.line[i+1:])]
			s.deliver(i + 1)
			s.flushAck(ackBatch)
			return line, nil
		}
		if len(s.line) >= MaxLine {
			line := string(s.line[:MaxLine])
			s.line = s.line[:copy(s.line, s.line[MaxLine:])]
			s.deliver(MaxLine)
			return line, nil
		}
		scanned = len(s.line)
		s.flushAck(0) // the application is back for more: done with all it was handed
		if cap(s.line)-len(s.line) < 512 {
			s.line = append(s.line, make([]byte, 1024)...)[:len(s.line)]
		}
		n, err := s.fill(s.line[len(s.line):min(cap(s.line), MaxLine)])
		s.line = s.line[:len(s.line)+n]
		if err != nil && n == 0 {
			return "", err
		}
	}
}

// finish records that the application is done with what it was handed:
// it has come back to read. It is called with s.rmu held.
func (s *Session) finish() {
	s.wmu.Lock()
	s.finished = s.delivered
	s.answering.Store(false)
	s.answered = false
	if s.backToRead != nil {
		close(s.backToRead)
		s.backToRead = nil
	}
	s.wmu.Unlock()
}

// answeredChanLocked returns a channel closed when the application comes
// back to read, or nil if it is not answering input or nothing has been
// written to the session since it took it: released then, its answer
// fails (the session is released) and only the successor answers. s.wmu
// is held.
func (s *Session) answeredChanLocked() <-chan struct{} {
	if !s.answering.Load() || !s.answered {
		return nil
	}
	if s.backToRead == nil {
		s.backToRead = make(chan struct{})
	}
	return s.backToRead
}

// deliver records n bytes handed to the application, which answers them
// until it comes back to read. It is called with s.rmu held.
func (s *Session) deliver(n int) {
	if n > 0 {
		s.delivered += uint64(n)
		s.answering.Store(true)
	}
}

// fill reads input bytes from the stream, handling the other frames on the
// way. It blocks until there is input, the player leaves, or the session is
// detached. When the stream ends without a Hangup, the session waits for the
// gateway to bring it back on another stream, and reads on from there.
func (s *Session) fill(p []byte) (int, error) {
	for {
		if s.isDetached() {
			return 0, ErrDetached
		}
		if s.isHungup() {
			return 0, io.EOF
		}
		if s.isClosed() {
			return 0, fmt.Errorf("backend: read: %w", net.ErrClosed)
		}
		n, err := s.fromStream(p)
		if n > 0 || err == nil {
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err == io.EOF && s.isHungup() {
			return 0, io.EOF
		}
		if err := s.nextStream(err); err != nil {
			return 0, err
		}
	}
}

// fromStream reads from the current stream up to one batch of input, or
// one other frame, which it handles. It returns input bytes, or (0, nil)
// after another frame, or the stream's error.
func (s *Session) fromStream(p []byte) (int, error) {
	if s.inInput {
		n, err := s.fr.Read(p)
		if n > 0 {
			// A stream that started before what was received repeats it.
			k := int(min(s.skip, uint64(n)))
			s.skip -= uint64(k)
			n = copy(p, p[k:n])
			s.recv += uint64(n)
			return n, nil
		}
		if err != nil && err != io.EOF {
			return 0, err
		}
		s.inInput = false
	}
	typ, _, err := s.fr.Next()
	if err != nil {
		return 0, err
	}
	switch typ {
	case link.FrameInput:
		s.inInput = true
	case link.FrameHangup:
		s.mu.Lock()
		s.hungup = true
		holder := s.holder
		if !s.away {
			holder = nil
		}
		s.mu.Unlock()
		if holder != nil {
			// Stowed as the player left: held, it would wait for a
			// Drop, which the Hangup says already.
			s.drop(holder)
		}
		return 0, io.EOF
	case link.FrameFacts, link.FrameFactsUpdate, link.FrameGMCPIn:
		payload, err := s.fr.Payload()
		if err != nil {
			return 0, err
		}
		if typ == link.FrameGMCPIn && s.skipGMCP > 0 {
			s.skipGMCP-- // heard already, after the OpenHeld
			return 0, nil
		}
		s.event(typ, payload)
	case link.FrameOutAck, link.FrameTokens:
		payload, err := s.fr.Payload()
		if err != nil {
			return 0, err
		}
		s.keepFrame(typ, payload)
	}
	// Any other frame is from a later version: Next skips it.
	return 0, nil
}

// nextStream handles a failed read: the application's deadline, a stream
// the session has been moved off, or one that has gone. It returns nil
// when there is a stream to read on.
func (s *Session) nextStream(err error) error {
	s.mu.Lock()
	if st := s.next; st != nil {
		// Adopted on another stream: what the old one still held has
		// been read, so read on from the new one.
		s.next = nil
		s.rst, s.fr, s.inInput = st, link.Reader{R: st}, false
		s.skip, s.skipGMCP = 0, s.nextSkip
		if s.recv > s.nextOff {
			s.skip = s.recv - s.nextOff
		}
		rd, facts, changed := s.readDeadline, factsOf(&s.facts), s.newFacts
		s.newFacts = false
		onFacts := s.onFacts
		s.mu.Unlock()
		st.SetReadDeadline(rd)
		if changed && onFacts != nil {
			onFacts(facts)
		}
		return nil
	}
	if s.isDetached() {
		s.mu.Unlock()
		return ErrDetached
	}
	if s.closed {
		s.mu.Unlock()
		return nil // fill reports it
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !s.away {
		s.mu.Unlock()
		return err // the application's deadline
	}
	// The stream has gone without a Hangup: the gateway or the link went
	// away, or the session is moving. Wait for a gateway to claim it.
	if !s.away && !s.ended {
		s.goAwayLocked()
	}
	back, ended, rd := s.back, s.ended, s.readDeadline
	s.mu.Unlock()
	if ended {
		return io.EOF
	}
	var timeout <-chan time.Time
	if !rd.IsZero() {
		t := time.NewTimer(time.Until(rd))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-back:
		return nil
	case <-s.detached:
		return ErrDetached
	case <-timeout:
		return errReadTimeout
	}
}

// errReadTimeout is a read deadline passing while the session is away.
var errReadTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "backend: read deadline passed" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// event hands a Facts, FactsUpdate or GMCP frame to the application's
// callbacks. A FactsUpdate carries only what changed: it is merged into
// the facts the session has.
func (s *Session) event(typ link.FrameType, payload []byte) {
	s.mu.Lock()
	onFacts, onGMCP := s.onFacts, s.onGMCP
	var facts Facts
	isFacts := typ == link.FrameFacts || typ == link.FrameFactsUpdate
	switch typ {
	case link.FrameFacts:
		f, err := link.ParseFacts(payload)
		if err != nil {
			s.mu.Unlock()
			return
		}
		s.facts, facts = f, factsOf(&f)
	case link.FrameFactsUpdate:
		if _, err := s.facts.ApplyUpdate(payload); err != nil {
			s.mu.Unlock()
			return
		}
		facts = factsOf(&s.facts)
	}
	s.mu.Unlock()
	switch {
	case isFacts && onFacts != nil:
		onFacts(facts)
	case typ == link.FrameGMCPIn && onGMCP != nil:
		pkg, data, _ := strings.Cut(string(payload), " ")
		onGMCP(pkg, []byte(data))
	}
}

func (s *Session) isDetached() bool {
	select {
	case <-s.detached:
		return true
	default:
		return false
	}
}

// Detached returns a channel that is closed when the session leaves this
// backend, so that work on its behalf can stop.
func (s *Session) Detached() <-chan struct{} { return s.detached }

func (s *Session) isReleased() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.released
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Session) isHungup() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hungup
}

// flushAck sends an Ack when more than batch bytes wait for one, and with
// batch 0 whatever is corked too.
func (s *Session) flushAck(batch uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.flushAckLocked(batch)
}

func (s *Session) flushAckLocked(batch uint64) error {
	if s.cork != nil && (batch == 0 || s.finished-s.acked > batch) {
		// The acknowledgement goes with the corked output, after it.
		s.corkAck = s.finished
		return s.uncorkLocked()
	}
	if s.finished-s.acked <= batch || s.isReleased() {
		return nil
	}
	if s.isAway() {
		// An away session's acknowledgement goes with its next stream,
		// or a held one's on the control stream; none once detached,
		// since its output is refused then (writable).
		if !s.isDetached() {
			s.sendHeldLocked(nil, s.finished)
		}
		return nil
	}
	s.wakeLocked()
	if err := link.WriteFrame(s.st, link.FrameAck, link.AppendAck(nil, s.finished)); err != nil {
		return err
	}
	s.acked = s.finished
	return nil
}

// wakeLocked, with wmu held, wakes the gateway's reader of st if it has
// parked: st is about to be written to or closed.
func (s *Session) wakeLocked() {
	if s.parked != nil {
		s.parked.wake(s.id)
		s.parked = nil
	}
}

// park answers the gateway's Park on link gl: Parked on the stream, after
// which the gateway's reader is gone until a Wake.
func (s *Session) park(gl *gatewayLink) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	ok := s.gl == gl && !s.away && !s.ended && !s.hungup && !s.closed && !s.released && !s.isDetached()
	s.mu.Unlock()
	if !ok || s.parked != nil {
		return
	}
	s.uncorkLocked()
	if link.WriteFrame(s.st, link.FrameParked, nil) == nil {
		s.parked = gl
		s.parks++
	}
}

// parkedOn returns the link whose gateway has parked the session's stream,
// and how many Parked that stream has had; nil when the stream is read.
// busy reports a writer inside, perhaps waiting for a slow player.
func (s *Session) parkedOn() (gl *gatewayLink, parks uint32, busy bool) {
	if !s.wmu.TryLock() {
		return nil, 0, true
	}
	defer s.wmu.Unlock()
	return s.parked, s.parks, false
}

// maxPending bounds the output kept for a session that is between
// streams; a writer beyond it waits until the session is back or ends.
const maxPending = 256 << 10

// send writes one frame, then acknowledges the input the application is
// done with: the output and state that input caused reach the gateway
// before the input is forgotten there. While the session is away, the
// frame waits for the next stream. While the application is answering
// input, the frame is corked instead (see Corking), unless the session is
// away: there it would save no write, and a writer must wait for room in
// pending.
func (s *Session) send(typ link.FrameType, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	answering := s.answering.Load()
	s.answered = s.answered || answering
	if answering && s.parked == nil && (s.cork == nil || len(*s.cork) < maxCork) && !s.isAway() {
		if err := s.writable(); err != nil {
			return err
		}
		if s.cork == nil {
			s.cork = frameBufs.Get().(*[]byte)
			*s.cork = (*s.cork)[:0]
			s.corkedAt = time.Now()
			s.l.corks.add(s)
		}
		*s.cork = link.AppendFrame(*s.cork, typ, payload)
		s.corkAck = s.finished
		if typ == link.FrameOutput {
			s.keepOutput(payload)
		}
		return nil
	}
	fb := s.takeCork()
	if fb == nil {
		fb = frameBufs.Get().(*[]byte)
		*fb = (*fb)[:0]
	}
	defer putFrameBuf(fb)
	*fb = link.AppendFrame(*fb, typ, payload)
	err := s.writeLocked(fb, s.finished, true)
	if err == nil && typ == link.FrameOutput {
		s.keepOutput(payload)
	}
	return err
}

// writable reports why a frame cannot be written now, if it cannot.
func (s *Session) writable() error {
	away, ended := s.awayState()
	switch {
	case ended:
		return errEnded
	case s.isReleased():
		return ErrDetached
	case away && s.isDetached():
		return ErrDetached // this backend is going: the output has nowhere to go
	}
	return nil
}

// writeLocked writes the frames in *fb with an acknowledgement of ack, or
// keeps them for the next stream while the session is away: if wait is
// set, only up to maxPending, waiting for the session to be back beyond
// that. It is called with wmu held.
func (s *Session) writeLocked(fb *[]byte, ack uint64, wait bool) error {
	frames := len(*fb)
	for {
		if err := s.writable(); err != nil {
			return err
		}
		away, _ := s.awayState()
		switch {
		case away && wait && len(s.pending) > 0 && len(s.pending)+frames > maxPending:
			s.mu.Lock()
			back := s.back
			s.mu.Unlock()
			s.wmu.Unlock()
			select {
			case <-back:
			case <-s.detached:
			}
			s.wmu.Lock()
			continue
		case away:
			if s.sendHeldLocked((*fb)[:frames], ack) {
				return nil
			}
			s.pending = append(s.pending, (*fb)[:frames]...)
			s.pendingAck = max(s.pendingAck, ack)
			s.wakeHeldLocked()
			return nil
		}
		s.wakeLocked()
		b := (*fb)[:frames]
		if ack > s.acked {
			// One write, so that frames and acknowledgement travel together.
			var a [8]byte
			b = link.AppendFrame(b, link.FrameAck, link.AppendAck(a[:0], ack))
			*fb = b
		}
		if _, err := s.st.Write(b); err != nil {
			if away, _ := s.awayState(); away {
				// The link broke under the write: the frames go again on
				// the next stream (without the acknowledgement, which is
				// recomputed there).
				continue
			}
			return s.writeError(err)
		}
		s.acked = max(s.acked, ack)
		return nil
	}
}

// Corking. While the application answers input (from the moment Read or
// ReadLine hands it over until it comes back to read), what the session
// is written, by it or by any other goroutine, is corked: kept, and sent
// when the application comes back to read with nothing left, when
// maxCork is reached, or after corkDelay at the latest. So an answer
// usually goes in one write with the acknowledgement of the line it
// answers, which is sent only once the application is back: neither lost
// (acknowledged before the answer went) nor repeated (answered, but not
// acknowledged, when the backend dies). And a player's client often sends
// several lines at once (a paste, a speedwalk, a trigger's commands): each
// write is a frame on the link, so a burst of answers costs one, not one
// each; the gateway reads, and the player receives, one burst too.
const maxCork = 16 << 10

var corkDelay = 2 * time.Millisecond // a variable for the tests

// takeCork returns the corked frames, leaving none; nil if there are none.
func (s *Session) takeCork() *[]byte {
	fb := s.cork
	s.cork = nil
	return fb
}

// uncorkLocked sends what is corked, with the acknowledgement the last of
// it would have carried. It is called with wmu held, before anything else
// is written to the stream or kept for the next one.
func (s *Session) uncorkLocked() error {
	fb := s.takeCork()
	if fb == nil {
		return nil
	}
	defer putFrameBuf(fb)
	// Never waiting: a later write must not overtake these frames. They
	// acknowledge what the application is done with by now, whose
	// answers were written before it came back to read.
	return s.writeLocked(fb, max(s.corkAck, s.finished), false)
}

// uncork sends what is corked; the Listener's corks run it once the cork
// has waited corkDelay.
func (s *Session) uncork() {
	s.wmu.Lock()
	s.uncorkLocked()
	s.wmu.Unlock()
}

func putFrameBuf(fb *[]byte) {
	if cap(*fb) <= maxFrameBuf {
		frameBufs.Put(fb)
	}
}

// frameBufs hold frames while send writes them: the link has copied a
// frame's body by the time Write returns, so each buffer serves the next
// write, of any session.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxFrameBuf bounds the buffers frameBufs keeps.
const maxFrameBuf = 2 * link.MaxChunk

// errEnded is what writes to a session that ended unclaimed return.
var errEnded = fmt.Errorf("backend: write: the session has ended: %w", net.ErrClosed)

func (s *Session) writeError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return fmt.Errorf("%w: %v", ErrDetached, err)
}

// Write sends text to the player. It works on a detached session too,
// while the link lasts, so that a backend that is shutting down finishes
// what it is writing; once the link is gone it returns ErrDetached.
func (s *Session) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), link.MaxChunk)]
		if err := s.send(link.FrameOutput, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// detach marks the session as leaving this backend and wakes a blocked Read.
func (s *Session) detach() {
	s.mu.Lock()
	if !s.isDetached() {
		close(s.detached)
	}
	if s.expiry != nil {
		s.expiry.Stop()
	}
	cur := s.cur
	s.mu.Unlock()
	if cur != nil { // opened held, a reader waits for no stream
		cur.SetReadDeadline(time.Now())
	}
}

// Close ends the player's session: the gateway sends what was written and
// closes the player's connection. On a detached session, or once the player
// has gone, it only releases the session. It is safe to call twice. On a
// session that is between streams, the end goes with what was written to
// the next stream.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	end := !s.isDetached() && !s.hungup
	wait := s.away && !s.ended && !s.isDetached()
	s.mu.Unlock()
	s.wmu.Lock()
	s.uncorkLocked()
	if wait {
		if end {
			s.pending = link.AppendFrame(s.pending, link.FrameEnd, nil)
			s.wakeHeldLocked()
		}
		s.wmu.Unlock()
		return nil // adopt or expire finishes it
	}
	if s.st == nil {
		// Opened held and never adopted: it ended (or left) away, and
		// there is no stream to end.
		s.wmu.Unlock()
		s.l.untrack(s)
		return nil
	}
	s.wakeLocked() // the stream closes, with or without an End
	s.st.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := s.flushAckLocked(0)
	if end && err == nil {
		err = link.WriteFrame(s.st, link.FrameEnd, nil)
	}
	st := s.st
	s.wmu.Unlock()
	st.Close()
	st.SetReadDeadline(time.Now()) // a reader still waiting learns of the close
	s.l.untrack(s)
	if err != nil {
		return s.writeError(err)
	}
	return nil
}

// LocalAddr returns the address of the backend's link listener.
func (s *Session) LocalAddr() net.Addr { return s.l.Addr() }

// RemoteAddr returns the player's address as the gateway saw it.
func (s *Session) RemoteAddr() net.Addr {
	addr := s.Facts().ClientAddr
	if a, err := net.ResolveTCPAddr("tcp", addr); err == nil {
		return a
	}
	return netx.Addr(addr)
}

// SetDeadline sets the read and write deadlines.
func (s *Session) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read and ReadLine; it also bounds
// a wait while the session is between streams.
func (s *Session) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDeadline = t
	cur := s.cur
	s.mu.Unlock()
	if cur == nil {
		return nil // opened held: the wait for a stream heeds readDeadline
	}
	return cur.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline for Write.
func (s *Session) SetWriteDeadline(t time.Time) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.st == nil {
		return nil // opened held: writes wait in pending, as for any away session
	}
	return s.st.SetWriteDeadline(t)
}

var _ net.Conn = (*Session)(nil)
