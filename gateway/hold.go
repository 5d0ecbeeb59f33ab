package gateway

import (
	"bytes"
	"time"

	"go.uber.org/zap"

	"holdfast/link"
)

// Holding (see link's package documentation): the sessions that come to
// this process in an upgrade quiet, with nothing to send, are not opened on
// the backend one by one, which would keep the players who are typing
// waiting behind thousands of Opens. The backend is asked to hold them on
// the link without a stream, in a few Hold frames, and a held session is
// opened when it has something to send (openHeld) or the backend Wakes it.
// So are the sessions that resume on a new backend (after a restart) or go
// to a successor (a deploy): their Opens go in OpenHeld frames, which the
// backend starts held.

// holdable reports whether the session, with s.mu held, may be held on lk
// rather than opened: it moved here quiet, from the backend lk reaches,
// and nothing of its own waits to go (input, facts, a notice, a claim).
// A page's session is opened, and held again only once idle (Stow): a
// backend holds no kept session by Hold.
func (s *session) holdable(lk *backendLink) bool {
	return s.Quiet && s.MoveFrom != "" && s.MoveFrom == lk.instance && lk.canHold() &&
		len(s.In) == 0 && s.factsDirty == 0 && !s.factsHeld && !s.Noticed && !s.keeps && s.claimToken() == "" && !s.deployed
}

// openHoldable reports whether the session, with s.mu held, may be opened
// held on lk (OpenHeld): it has been open on a backend before (a new
// player's game speaks first), lk does not have it already, and nothing of
// its own waits to go that the Open does not carry: the input typed
// meanwhile it carries too, up to maxHeldOpenInput, to a backend that
// answers it in HeldFrames. A page's session needs a stream: the tokens
// that may claim it go on it.
func (s *session) openHoldable(lk *backendLink) bool {
	return s.Opened && s.MoveFrom != lk.instance && lk.can(link.FeatureOpenHeld) &&
		(len(s.In) == 0 || len(s.In) <= maxHeldOpenInput && lk.can(link.FeatureHeldFrames)) && !s.keeps && s.claimToken() == "" &&
		!s.factsHeld // its input waits for its facts: it needs a stream for them
}

// The largest OpenHeld frame is one past openHeldFrame by one session.
var _ [link.MaxFrame - openHeldFrame - link.MaxState - maxHelloBytes - maxHeldOpenInput - 8<<10]struct{}

// maxHeldOpenInput bounds the input an OpenHeld carries for a session, so
// that a frame of them stays within link.MaxFrame whatever the held-input
// bound: openHeldFrame, and one more Open with its state (link.MaxState),
// hello (maxHelloBytes) and this. More goes on a stream of its own.
const maxHeldOpenInput = 16 << 10

// canHold reports whether the backend said it takes Hold.
func (lk *backendLink) canHold() bool { return lk.can(link.FeatureHold) }

// can reports whether the backend said it has feature f.
func (lk *backendLink) can(f link.Features) bool {
	return link.Features(lk.features.Load())&f != 0
}

// openHeldFrame bounds an OpenHeld frame's payload: some hundreds of
// sessions each, well within link.MaxFrame.
const openHeldFrame = 64 << 10

// placeAll resumes sessions on lk: those it may hold, held; those it may
// open held, in OpenHeld; the others, and any the backend could not hold,
// opened. It returns how many are on lk afterwards.
func placeAll(lk *backendLink, sessions []*session) int64 {
	var open, held, opened []*session
	var frames [][]byte // OpenHeld payloads
	var there int64
	for _, s := range sessions {
		s.mu.Lock()
		switch {
		case s.lk == lk && s.cond.stream != streamAway:
			there++ // a successor linked again under the backend's name has it already
		case s.holdable(lk) && s.holdOn(lk):
			held = append(held, s)
		case s.openHoldable(lk) && s.holdOn(lk):
			if len(frames) == 0 || len(frames[len(frames)-1]) > openHeldFrame {
				frames = append(frames, nil)
			}
			frames[len(frames)-1] = s.appendHeldOpen(frames[len(frames)-1], lk)
			opened = append(opened, s)
		default:
			open = append(open, s)
		}
		s.mu.Unlock()
	}
	on := there
	if len(held) > 0 && lk.holdByID(held) {
		on += int64(len(held))
	}
	if len(opened) > 0 {
		// Told first: the game's answer may follow the OpenHeld at once.
		for _, s := range opened {
			s.noticeBackHeld()
		}
		if lk.hold(opened, func() error { return lk.sendAll(link.FrameOpenHeld, frames) }) {
			on += int64(len(opened))
		}
	}
	if len(open) > 0 {
		on += attachAll(lk, open)
	}
	return on
}

// holdOn marks the session held on lk, where its Hold or OpenHeld is
// about to go; s.mu is held.
func (s *session) holdOn(lk *backendLink) bool {
	if !s.to(evHold) {
		return false
	}
	s.lk = lk
	s.wanted, s.woken, s.holding = false, false, true
	return true
}

// appendHeldOpen appends to b the session's part of an OpenHeld on lk, and
// counts it as opened there, as attach does; s.mu is held. Opened held, it
// is on lk as after a move: what opens its stream later carries it on.
func (s *session) appendHeldOpen(b []byte, lk *backendLink) []byte {
	s.factsDirty = 0 // the Open has them all
	s.Resumed++
	s.srv.metrics.resumes.Inc()
	s.srv.metrics.resumeSeconds.Observe(time.Since(s.Lost).Seconds())
	o := s.open(s.deployed)
	s.heldOpen, s.heldHanded = true, s.deployed
	s.deployed, s.woken = false, false
	var after []byte
	for _, m := range s.Hello {
		after = link.AppendFrame(after, link.FrameGMCPIn, m)
	}
	after = appendInput(after, s.In)
	s.MoveFrom, s.Quiet = lk.instance, false
	return link.AppendHeldOpen(b, &o, after)
}

// holdByID has the backend hold sessions it has already on lk (Hold),
// which placeAll has marked held, and reports whether it does.
func (lk *backendLink) holdByID(held []*session) bool {
	return lk.hold(held, func() error {
		ids := make([]string, len(held))
		for i, s := range held {
			ids[i] = s.ID
		}
		return lk.sendIDs(link.FrameHold, ids)
	})
}

// hold has the backend hold sessions on lk, which placeAll has marked
// held, by what send sends, and reports whether it does.
func (lk *backendLink) hold(held []*session, send func() error) bool {
	lk.register(held)
	if lk.leaving() || send() != nil {
		// The link is going, and its end may have come and gone: they go
		// where a session goes that loses its link, unless that end took
		// them first; or a frame failed on a link still there, which
		// opens them.
		alive := !lk.leaving()
		for _, s := range held {
			if lk.letGoHeld(s) {
				s.resumeElsewhere(lk, alive)
			}
		}
		return false
	}
	// A player who left before the Hold went out sent a Drop the backend
	// could not take yet: again, now. One who had something to send
	// meanwhile asks for a stream now, after the Hold (Want).
	var gone, want []string
	for _, s := range held {
		s.mu.Lock()
		s.holding = false
		ended := s.cond.phase == phaseGone
		wanted := s.wanted && s.lk == lk && s.cond.stream == streamHeld
		s.mu.Unlock()
		switch {
		case ended:
			lk.forget(s)
			gone = append(gone, s.ID)
		case wanted:
			want = append(want, s.ID)
		}
	}
	if len(gone) > 0 {
		lk.sendIDs(link.FrameDrop, gone)
	}
	if len(want) > 0 {
		lk.sendIDs(link.FrameWant, want)
	}
	return true
}

// letGoHeld takes the session off lk if it is held there, and reports
// whether it did.
func (lk *backendLink) letGoHeld(s *session) bool {
	s.mu.Lock()
	ok := s.lk == lk && s.cond.stream == streamHeld && s.to(evDetach)
	if ok {
		s.lk = nil
		s.Lost = time.Now()
		s.wanted, s.woken, s.holding = false, false, false
		if s.streamDone != nil {
			close(s.streamDone) // a move waited for its answer from lk: none comes
			s.streamDone = nil
		}
	}
	s.mu.Unlock()
	if ok {
		lk.forget(s)
	}
	return ok
}

// register makes held sessions known to the link, for Wake and Unheld.
func (lk *backendLink) register(held []*session) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.byID == nil {
		lk.streams = make(map[*link.Stream]*session)
		lk.byID = make(map[string]*session)
	}
	for _, s := range held {
		lk.byID[s.ID] = s
	}
}

// forget drops a session that left while held from the link's index.
func (lk *backendLink) forget(s *session) {
	lk.mu.Lock()
	if lk.byID[s.ID] == s {
		delete(lk.byID, s.ID)
	}
	lk.mu.Unlock()
}

// heldOn reports whether the session is held on lk.
func (s *session) heldOn(lk *backendLink) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lk == lk && s.cond.stream == streamHeld && s.cond.phase != phaseGone
}

// encodeHeld appends the encoded form of the held session's output p to
// dst, if the session is still held on lk, and reports whether it was.
// Under s.mu: a timed-out move or deploy may let go of the session and
// open a stream for it, or save it, while the control stream's reader is
// here, and the encoder is the new stream's from then on.
func (s *session) encodeHeld(lk *backendLink, dst, p []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lk != lk || s.cond.stream != streamHeld || s.cond.phase == phaseGone {
		return dst, false
	}
	return s.enc.Encode(dst, p), true
}

// heldMoving reports whether the session is held on lk and moving to
// another gateway process.
func (s *session) heldMoving(lk *backendLink) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lk == lk && s.cond.stream == streamHeld && s.cond.phase == phaseMoving
}

// wokenHeld reports whether the session is held on lk, and if so records
// that the backend woke it: should it be moving, and stay in this process
// after all, it is opened then (thaw).
func (s *session) wokenHeld(lk *backendLink) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.lk == lk && s.cond.stream == streamHeld && s.cond.phase != phaseGone
	if held {
		s.woken = true
	}
	return held
}

// openHeld opens a stream for a held session that has something to send.
// A backend that sends HeldFrames is asked to wake it instead (Want): a
// stream opened now could overtake the frames it has sent for the
// session on the control stream, and its Wake comes after them.
func (s *session) openHeld() {
	s.mu.Lock()
	lk := s.lk
	held := s.cond.stream == streamHeld && s.cond.phase == phaseLive
	want := held && lk.can(link.FeatureHeldFrames)
	ask := want && !s.wanted && !s.woken
	if ask {
		s.wanted = true
	}
	// A Want before the Hold or OpenHeld that holds the session would find
	// it not held yet: hold asks once that has gone.
	ask = ask && !s.holding
	s.mu.Unlock()
	switch {
	case ask:
		if lk.sendIDs(link.FrameWant, []string{s.ID}) != nil && lk.letGoHeld(s) {
			s.resumeElsewhere(lk, !lk.leaving())
		}
	case held && !want:
		s.attach(lk)
	}
}

// heldFrames delivers what the backend sent on the control stream for a
// session it holds (HeldFrames): frames that end nothing and need no
// answer, which the caller, the control stream's reader, must not wait
// for. Output is queued as a broadcast line is, past the output bound if
// need be, up to twice it.
func (lk *backendLink) heldFrames(srv *Server, p []byte) {
	id, frames, err := link.ParseHeldFrames(p)
	if err != nil {
		srv.log().Warn("gateway: bad held frames from the backend", zap.Error(err))
		return
	}
	lk.mu.Lock()
	s := lk.byID[id]
	lk.mu.Unlock()
	if s == nil || !s.heldOn(lk) {
		return // the player has gone
	}
	fr := link.Reader{R: bytes.NewReader(frames)}
	var out []byte
	for {
		typ, _, err := fr.Next()
		if err != nil {
			return
		}
		p, err := fr.Payload()
		if err != nil {
			return
		}
		switch typ {
		case link.FrameOutput:
			var held bool
			if out, held = s.encodeHeld(lk, out[:0], p); !held {
				return
			}
			s.putBroadcast(broadcastLine{out, len(p)})
		case link.FramePrompt:
			s.tmu.Lock()
			end := s.engine.PromptEnd()
			s.tmu.Unlock()
			if len(end) > 0 && !s.out.putProtocol(end) && !s.is(phaseGone) {
				s.slowPlayer()
			}
		default:
			s.frame(typ, p, &out) // Ack, State, Echo, GMCPOut: none waits
		}
	}
}

// openLater opens the held sessions on lk on a goroutine of their own: the
// caller reads the control stream, which must not wait for the link's
// queue.
func (lk *backendLink) openLater(srv *Server, list []*session) {
	if len(list) == 0 {
		return
	}
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		attachAll(lk, list)
	}()
}

// unheld takes the sessions named off lk, where the backend does not
// hold them (Unheld), and opens them.
func (lk *backendLink) unheld(srv *Server, ids []string) {
	var list []*session
	for _, s := range lk.sessionsNamed(ids) {
		if lk.letGoHeld(s) {
			list = append(list, s)
		}
	}
	lk.openLater(srv, list)
}

// sessionsNamed returns the link's sessions of ids.
func (lk *backendLink) sessionsNamed(ids []string) []*session {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	var out []*session
	for _, id := range ids {
		if s := lk.byID[id]; s != nil {
			out = append(out, s)
		}
	}
	return out
}

// releaseHeld takes every session held on lk, which has gone, off it, and
// resumes each on the current link, or tells its player the game is away.
func (lk *backendLink) releaseHeld(srv *Server) {
	lk.mu.Lock()
	var list []*session
	for _, s := range lk.byID {
		list = append(list, s)
	}
	lk.mu.Unlock()
	for _, s := range list {
		if lk.letGoHeld(s) && srv.ctx.Err() == nil {
			s.resumeElsewhere(lk, false)
		}
	}
}

// movedParked handles a MovedParked naming to: the sessions whose streams
// end at a Parked (a Move's or a Release's), and the held sessions
// released (a Release's, Parked 0). Those released that have no stream
// now go to the current link, the successor, together, on a goroutine of
// their own, since the caller reads the control stream; a released stream
// still read ends at that Parked, and its reader puts the session there.
func (lk *backendLink) movedParked(srv *Server, to []link.Parked) {
	var released []*session
	type ended struct {
		st   *link.Stream
		done chan struct{}
	}
	var closing []ended
	for _, r := range to {
		ss := lk.sessionsNamed([]string{r.ID})
		switch {
		case len(ss) == 0:
		case r.Park != 0 && ss[0].endParked(lk, r.Park):
			released = append(released, ss[0])
		case r.Park != 0:
			if st, done := ss[0].movedParked(lk, r.Park); st != nil {
				closing = append(closing, ended{st, done})
			}
		case ss[0].heldMoving(lk):
			ss[0].moveDone() // a Move's answer: its HeldFrames have all come
		case lk.letGoHeld(ss[0]):
			released = append(released, ss[0])
		}
	}
	for _, e := range closing {
		lk.endUnread(e.st)
		if e.done != nil {
			close(e.done)
		}
	}
	if len(released) == 0 {
		return
	}
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		srv.resumeAll(lk, released)
	}()
}

// resumeAll is resumeElsewhere for sessions the backend on lk let go of:
// placed on the current link together, those it may hold in a few frames.
func (srv *Server) resumeAll(lk *backendLink, list []*session) {
	cur := srv.current()
	if cur != nil {
		placeAll(cur, list)
	}
	for _, s := range list {
		if cur == nil || !on(s, cur) {
			s.resumeElsewhere(lk, true)
		}
	}
}

// dropHeld tells the backend that a held session's player has gone.
func (lk *backendLink) dropHeld(s *session) {
	lk.forget(s)
	if !lk.leaving() {
		lk.sendIDs(link.FrameDrop, []string{s.ID})
	}
}
