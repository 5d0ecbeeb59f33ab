package bridge

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"holdfast/backend"
	"holdfast/gateway/telnet"
)

// Bounds on what a session keeps of the client's GMCP: messages waiting
// for the game (a client flooding GMCP loses the excess, as at the
// gateway), and the Core.Hello and Core.Supports messages replayed to each
// new connection.
const (
	maxGMCPWaiting = 64
	maxHello       = 16
)

// session carries one player with two goroutines: the player's reader
// reads the player's input into held (and, once the game has greeted the
// player, writes it to the game itself), and the run goroutine opens
// connections to the game one after another, reading the current one
// (see carry). An idle player costs these two goroutines, no buffer of
// the game's connection, and no goroutine of the connection's own.
type session struct {
	b  *Bridge
	p  Player
	id string

	// wmu is held by whoever writes to the game, the run goroutine or the
	// player's reader (see direct), from taking what waits in the queue
	// until it is written: one writer at a time, in the queue's order. It
	// guards wbuf.
	wmu  sync.Mutex
	wbuf []byte // what one flush writes

	// mu guards the fields below. Lock order: wmu, then an upstream's mu,
	// then mu (the reader replays the hello under the upstream's); the
	// Bridge's mu is never held with any of them.
	mu sync.Mutex
	// direct is the connection the player's input flows to, once the game
	// has greeted the player: the player's reader writes it there itself,
	// with no other goroutine to wake on the way. Nil while input waits.
	direct *upstream
	// held and gmcp are one queue, the player's to the game, in the
	// order the player sent it: held is the input, as telnet for the game,
	// and each GMCP message sits at the offset in held where it came.
	held      []byte
	gmcp      []heldGMCP
	facts     backend.Facts
	factsBy   time.Time // see negotiator.factsBy: for a new session's first connections
	newFacts  bool      // facts changed since the writer last looked
	factsTold bool      // ... and the gateway told of them (onFacts)
	helloMsg  [][]byte  // Core.Hello and Core.Supports.*, for each new connection
	inErr     error     // why the player's input ended
	// inEnd is the player's input offset (see backend's InputOffset) at
	// the end of what is held or was sent to the game; 0 if unknown.
	inEnd uint64
	// skip is how much of the player's first input the gateway gives again
	// that the bridge before had passed on (a deploy); readPlayer's alone.
	skip uint64

	// told says the player has been told the game is down, since it was
	// last reached; toldErr is why telling failed. The run goroutine's.
	told    bool
	toldErr error

	// cur is the connection the session's goroutine reads, for wake.
	cur *upstream
	// kicked says something waits for the session's goroutine (see wake).
	kicked atomic.Bool
	room   chan struct{} // held has room again
	inDone chan struct{} // closed when the player's input has ended
}

func newSession(b *Bridge, p Player) *session {
	s := &session{
		b: b, p: p, id: p.ID(),
		facts:  p.Facts(),
		room:   make(chan struct{}, 1),
		inDone: make(chan struct{}),
	}
	// A session the gateway opens for the first time may come before its
	// client's answers; one resumed has all the facts there will be.
	if r, ok := p.(interface{ Resumed() int }); !ok || r.Resumed() == 0 {
		s.factsBy = time.Now().Add(lateFactsWait)
	}
	return s
}

// wake has the session's goroutine look at what changed: input, facts,
// GMCP, the player's input ending, the bridge closing. While it reads the
// game, a read deadline in the past ends the read.
func (s *session) wake() {
	s.kicked.Store(true)
	s.mu.Lock()
	u := s.cur
	s.mu.Unlock()
	if u != nil {
		u.conn.SetReadDeadline(time.Now())
	}
}

// wakeLocal is wake from the session's goroutine itself, which looks
// before its next read.
func (s *session) wakeLocal() { s.kicked.Store(true) }

// stop wakes the player's reader, and the session's goroutine: the bridge
// is closing.
func (s *session) stop() {
	s.p.SetReadDeadline(time.Now())
	s.wake()
}

// readPlayer reads the player's input until the player leaves, the session
// is detached, or the bridge closes. Facts and GMCP arrive through the
// callbacks, in order with the input.
func (s *session) readPlayer() {
	buf := make([]byte, 2<<10)
	for {
		n, err := s.p.Read(buf)
		in := buf[:n]
		if k := min(s.skip, uint64(n)); k > 0 {
			in, s.skip = in[k:], s.skip-k
		}
		if n > 0 && !s.hold(in, inputOffset(s.p)) {
			err = errors.New("bridge: closed")
		}
		if err != nil {
			s.mu.Lock()
			s.inErr = err
			s.mu.Unlock()
			close(s.inDone)
			s.wake()
			return
		}
	}
}

// hold keeps p for the game, waiting while MaxHeld is already kept: the
// player's further input then waits at the gateway. A session that leaves
// this bridge meanwhile keeps p beyond the bound, for its successor: the
// gateway counts it as read. It reports false when the bridge closes.
func (s *session) hold(p []byte, end uint64) bool {
	var detached <-chan struct{}
	if d, ok := s.p.(interface{ Detached() <-chan struct{} }); ok {
		detached = d.Detached()
	}
	s.mu.Lock()
	for left := false; !left && len(s.held) >= s.b.maxHeld(); {
		s.mu.Unlock()
		select {
		case <-s.room:
		case <-detached:
			left = true
		case <-s.b.ctx.Done():
			return false
		}
		s.mu.Lock()
	}
	s.held = appendInput(s.held, p)
	s.inEnd = end
	u := s.direct
	s.mu.Unlock()
	if u == nil || s.flushDirect(u) != nil {
		s.wake() // the run goroutine writes it, or learns the connection failed
	}
	return true
}

// inputOffset returns the player's input offset, if the player tells it.
func inputOffset(p Player) uint64 {
	if o, ok := p.(interface{ InputOffset() uint64 }); ok {
		return o.InputOffset()
	}
	return 0
}

func (s *session) onFacts(f backend.Facts) {
	s.mu.Lock()
	s.facts, s.newFacts, s.factsTold = f, true, true
	s.factsBy = time.Time{} // a connection opened after this waits for nothing
	s.mu.Unlock()
	s.wake()
}

func (s *session) onGMCP(pkg string, data []byte) {
	msg := []byte(pkg)
	if len(data) > 0 {
		msg = append(append(msg, ' '), data...)
	}
	s.mu.Lock()
	if pkg == "Core.Hello" || strings.HasPrefix(pkg, "Core.Supports.") {
		if pkg == "Core.Hello" || pkg == "Core.Supports.Set" {
			// Each replaces what came before it of its kind.
			s.helloMsg = dropPrefix(s.helloMsg, pkg)
		}
		if len(s.helloMsg) < maxHello {
			s.helloMsg = append(s.helloMsg, msg)
		}
	}
	if len(s.gmcp) < maxGMCPWaiting {
		s.gmcp = append(s.gmcp, heldGMCP{At: len(s.held), Msg: msg})
	}
	s.mu.Unlock()
	s.wake()
}

// dropPrefix removes the messages of package pkg, and for Core.Supports.Set
// every Core.Supports message, which it replaces.
func dropPrefix(msgs [][]byte, pkg string) [][]byte {
	if pkg == "Core.Supports.Set" {
		pkg = "Core.Supports."
	}
	keep := msgs[:0]
	for _, m := range msgs {
		name, _, _ := strings.Cut(string(m), " ")
		if name == pkg || strings.HasPrefix(pkg, "Core.Supports.") && strings.HasPrefix(name, pkg) {
			continue
		}
		keep = append(keep, m)
	}
	return keep
}

// heldGMCP is a GMCP message from the client waiting for the game, At
// bytes into the input held before it.
type heldGMCP struct {
	At  int
	Msg []byte
}

// isHello reports whether a GMCP message is one that hello replays.
func isHello(msg []byte) bool {
	name, _, _ := strings.Cut(string(msg), " ")
	return name == "Core.Hello" || strings.HasPrefix(name, "Core.Supports.")
}

// hello returns the client's Core.Hello and Core.Supports messages, for a
// connection on which the game has just turned GMCP on, and drops those
// waiting in the queue ahead of all held input: the replay carries them.
// Those behind input stay, in their place.
func (s *session) hello() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.gmcp[:0]
	for _, g := range s.gmcp {
		if g.At > 0 || !isHello(g.Msg) {
			keep = append(keep, g)
		}
	}
	clear(s.gmcp[len(keep):])
	s.gmcp = keep
	return append([][]byte(nil), s.helloMsg...)
}

// factsChange is facts that changed since the writer last looked; told
// says the gateway sent them (not a successor's first look at the facts
// it was handed).
type factsChange struct {
	f    backend.Facts
	told bool
}

// How a connection to the game ended.
type ending uint8

const (
	endGame   ending = iota // the game closed it, or it failed
	endPlayer               // the player left, or the session left this bridge
	endBridge               // the bridge is closing
	endMoved                // the session went to the successor, the connection with it
)

func (e ending) String() string {
	return [...]string{"game", "player", "bridge", "moved"}[e]
}

// run carries the player to the game until the player leaves, the game
// ends the player's connection on purpose, or the bridge closes.
func (s *session) run() {
	s.p.OnFacts(s.onFacts)
	s.p.OnGMCP(s.onGMCP)
	u := s.adopt() // a deploy's: the connection the bridge before had
	go s.readPlayer()
	log := s.b.log()
	var (
		delay    time.Duration
		attempts int // since the game went out of reach
	)
	for {
		release := func() {}
		var err error
		if u == nil {
			u, release, err = s.connect(s.b.ctx)
			if s.toldErr != nil {
				if err == nil {
					release()
					u.close()
				}
				s.end(endPlayer)
				return
			}
		}
		if err == nil {
			var why ending
			why, err = s.carry(u, release, func() {
				if s.told {
					log.Debug("bridge: the game is back; player reconnected", zap.String("session", s.id), zap.Int("attempts", attempts))
					s.b.gameBack()
				}
				s.b.reached()
				s.told, delay, attempts = false, 0, 0
			})
			last := u
			u = nil
			if why != endGame {
				s.end(why)
				return
			}
			// The game closed the connection, or it broke: it ended this
			// player's connection on purpose (a quit, a boot, a refusal),
			// and the player leaves too, or it went down or restarted, and
			// the player waits for it. See drops.go.
			if !s.told && !errors.Is(err, errSilent) && s.gameEnded(last) {
				log.Info("bridge: the game ended the player's connection", zap.String("session", s.id), zap.Error(err))
				s.p.Close()
				return
			}
		}
		if s.finished() {
			return
		}
		attempts++
		if !s.told {
			log.Debug("bridge: the game went away; holding the player", zap.String("session", s.id), zap.Error(err))
			if s.gameDown(); s.toldErr != nil {
				s.end(endPlayer)
				return
			}
		}
		delay = s.b.nextDelay(delay)
		if !s.pause(jitter(delay)) {
			return
		}
	}
}

// gameDown tells the player, once, that the game is down.
func (s *session) gameDown() {
	s.b.down()
	if !s.told {
		s.told = true
		s.toldErr = s.tell(s.b.notice())
	}
}

// gameEnded reports whether the game, closing u, ended the player's
// connection on purpose, rather than going down: by the drop u's close
// joined, or, without a witness, by asking the game.
func (s *session) gameEnded(u *upstream) bool {
	switch v := s.b.judge(u); v {
	case verdictEnded:
		return true
	case verdictRestart:
		s.b.log().Debug("bridge: the game dropped its connections together", zap.String("session", s.id))
		return false
	}
	return s.gameUp()
}

// errSilent is a connection on which the game said nothing in GreetWait:
// a listener that outlived the game (a child process holding its socket)
// accepts connections but never serves them.
var errSilent = errors.New("bridge: the game accepted the connection but said nothing")

// probeWait bounds how long gameUp waits for the game to say something.
const probeWait = 2 * time.Second

// gameUp reports whether the game accepts a connection and says something
// on it within probeWait, as a game that is up does at once.
func (s *session) gameUp() bool {
	u, release, err := s.open(s.b.ctx, true)
	if err != nil {
		return false
	}
	defer release()
	defer u.close()
	t := time.NewTimer(probeWait)
	defer t.Stop()
	select {
	case <-u.spoke:
		return true
	case <-u.done:
	case <-t.C:
	case <-s.b.ctx.Done():
	}
	select {
	case <-u.spoke:
		return true
	default:
		return false
	}
}

// finished reports whether the session is over for a reason other than
// the game, and if so ends it.
func (s *session) finished() bool {
	switch {
	case s.b.ctx.Err() != nil:
		s.end(endBridge)
		return true
	case s.inputEnded():
		s.end(endPlayer)
		return true
	}
	return false
}

func (s *session) inputEnded() bool {
	select {
	case <-s.inDone:
		return true
	default:
		return false
	}
}

// upSpread bounds how long a waiting player takes to come back once
// another has found the game back.
const upSpread = time.Second

// pause waits d before the next attempt; it reports false when the session
// ended meanwhile.
func (s *session) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	up, done := s.b.wait()
	defer done()
	select {
	case <-t.C:
		return true
	case <-up:
		// Another player has reached the game: it is back. Come back
		// soon, spread out so as not to arrive with everyone else.
		t.Reset(jitter(min(d, upSpread)))
		select {
		case <-t.C:
			return true
		case <-s.inDone:
			s.end(endPlayer)
		case <-s.b.ctx.Done():
			s.end(endBridge)
		}
	case <-s.inDone:
		s.end(endPlayer)
	case <-s.b.ctx.Done():
		s.end(endBridge)
	}
	return false
}

// end finishes the session. A player who left, or whose session left this
// bridge, is closed: package backend ends a player's session only if it
// is still here (and for one detached, only lets it go). When the bridge
// closes, the player is left to the listener.
func (s *session) end(why ending) {
	switch {
	case why == endMoved:
		s.p.Close()
	case why == endPlayer && s.b.ctx.Err() == nil:
		if fc := s.b.successor(); fc != nil && s.detached(nil) {
			// Away from the game (it is down): the held input goes.
			if err := s.handOver(fc, nil); err != nil {
				s.b.log().Info("bridge: cannot hand a session to the successor", zap.String("session", s.id), zap.Error(err))
			}
		}
		s.p.Close()
	}
	// The player's reader leaves with the player or the listener.
	s.b.log().Debug("bridge: session ended", zap.String("session", s.id), zap.Stringer("by", why))
}

// tell writes a notice to the player on a line of its own.
func (s *session) tell(text string) error {
	_, err := io.WriteString(s.p, "\n"+text+"\n")
	return err
}

// owedRetry is how soon what the game did not take is written again, while
// the game sends nothing.
const owedRetry = 20 * time.Millisecond

// settleWait bounds how long input waits, after the game's first text, for
// the game to ask what it turned on (the terminal type, the environment).
// A variable for the tests.
var settleWait = 500 * time.Millisecond

// carry reads the game on u, and writes to it, until the connection ends,
// the player leaves, or the bridge closes: the session's goroutine is the
// connection's reader, handing the game's text to the player and writing
// its answers. The player's input waits until the game has greeted the
// player (see upstream.greetSet), or settleWait after its first text, or
// GreetWait with the game saying something; a game silent for that long
// fails the connection with errSilent. The slot among the connections being
// opened is released at the game's first text. greeted is called when input
// may flow. What the session's other goroutines want of it (see wake), and
// those timers, end the read under way with a read deadline.
func (s *session) carry(u *upstream, release func(), greeted func()) (ending, error) {
	defer release()
	s.mu.Lock()
	s.cur = u
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
	}()
	flowing, welcomed := false, false
	greetAt := time.Now().Add(s.b.greetWait())
	var settleAt time.Time
	start := func() {
		if !flowing {
			flowing = true
			release()
			greeted()
			s.setDirect(u)
			s.wakeLocal()
		}
	}
	defer s.setDirect(nil)
	rc := rawConn(u.conn)
	var deadline time.Time // the read deadline last set here
	owed := false          // the game has not taken all that was written
	reset := true          // the deadline may have been moved by wake
	s.wakeLocal()          // a first flush: answers and facts a deploy brought
	for {
		if !welcomed && u.texted {
			// The game has taken the connection in: the next may come.
			welcomed = true
			release()
			settleAt = time.Now().Add(settleWait)
		}
		if !flowing && u.greetSet {
			start()
		}
		var want time.Time // no deadline once input flows
		if !flowing {
			want = greetAt
			if !settleAt.IsZero() && settleAt.Before(want) {
				want = settleAt
			}
		}
		if owed {
			// What the game did not take is tried again soon.
			if t := time.Now().Add(owedRetry); want.IsZero() || t.Before(want) {
				want = t
			}
		}
		late := u.lateQuestions()
		if !late.IsZero() && (want.IsZero() || late.Before(want)) {
			want = late // the game's questions answered with what is known then
		}
		if reset || !want.Equal(deadline) {
			u.conn.SetReadDeadline(want)
			deadline, reset = want, false
		}
		if s.kicked.Swap(false) {
			switch {
			case s.b.ctx.Err() != nil:
				s.setDirect(nil)
				u.stop(true)
				u.close()
				return endBridge, nil
			case s.inputEnded():
				s.setDirect(nil)
				if flowing {
					s.flush(u, true) // the player's last words (a QUIT) still go
				}
				u.stop(true)
				return s.leave(u), nil
			}
			var err error
			if owed, err = s.flushReader(u, flowing); err != nil {
				s.setDirect(nil)
				u.stop(false)
				u.broken()
				s.restoreEcho(u)
				return endGame, err
			}
			// The flush may have answered questions that waited for the
			// client's facts: then input may flow.
			if u.greeted(); !flowing && u.greetSet {
				continue
			}
		}
		if !flowing {
			now := time.Now()
			switch {
			case !settleAt.IsZero() && !now.Before(settleAt):
				start() // the game asked for less than it turned on
				continue
			case !now.Before(greetAt) && u.spokeSet:
				start() // a game that waits for input before its welcome
				continue
			case !now.Before(greetAt):
				u.stop(true)
				u.close()
				return endGame, errSilent
			}
		}
		bp, n, err := u.readOnce(rc)
		more := n <= 0 || u.handle(bp[:n])
		if bp != nil {
			readBufs.Put(bp)
		}
		if more && errors.Is(err, os.ErrDeadlineExceeded) {
			reset = true
			if owed || !late.IsZero() && !time.Now().Before(late) {
				s.wakeLocal()
			}
			continue
		}
		if more && err == nil {
			if u.pending() {
				s.wakeLocal()
			}
			continue
		}
		// The connection has ended: the game closed it, it failed, the
		// game broke a bound, or the player's side failed.
		if more {
			u.err = err
		}
		u.stop(false)
		s.setDirect(nil)
		s.flush(u, flowing) // input that cannot go is held for the next connection
		if u.lost != nil {
			return s.leave(u), u.lost
		}
		u.close()
		s.restoreEcho(u)
		return endGame, u.err
	}
}

// setDirect has the player's reader write the player's input to u itself,
// or, with nil, stop doing so: once it returns, the reader writes no more
// to the connection before.
func (s *session) setDirect(u *upstream) {
	s.mu.Lock()
	s.direct = u
	s.mu.Unlock()
	if u == nil {
		s.wmu.Lock()
		s.wmu.Unlock() // having waited out a write under way
	}
}

// leave ends the connection as the player leaves this bridge: handed to
// the successor when the session went to it, closed otherwise.
func (s *session) leave(u *upstream) ending {
	if fc := s.b.successor(); fc != nil && s.detached(u) {
		if err := s.handOver(fc, u); err != nil {
			s.b.log().Info("bridge: cannot hand a connection to the game to the successor; it closes", zap.String("session", s.id), zap.Error(err))
			return endPlayer
		}
		return endMoved
	}
	u.close()
	return endPlayer
}

// detached reports whether the session has left this bridge (for another
// one, or at its shutdown), as its reader or u's learnt.
func (s *session) detached(u *upstream) bool {
	s.mu.Lock()
	err := s.inErr
	s.mu.Unlock()
	if detachedErr(err) {
		return true
	}
	if u != nil {
		select {
		case <-u.done:
			return detachedErr(u.lost)
		default:
		}
	}
	return false
}

// restoreEcho gives the player's client its echo back when a connection
// that had hidden it ends: the next one starts with the welcome.
func (s *session) restoreEcho(u *upstream) {
	if u.echoOff {
		s.p.SetEcho(true)
	}
}

// flush writes what waits for the game, in one write: answers and a
// changed window size, then the player's queue. Before the game has
// greeted the player only the GMCP ahead of all held input goes, once the
// game has turned GMCP on; after, the whole queue goes, GMCP in its place
// among the input (dropped if the game has no GMCP). What fails to go is
// held again for the next connection.
func (s *session) flush(u *upstream, greeted bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.flushLocked(u, greeted, false, false)
}

// flushReader is flush from the session's goroutine while it reads the
// game: it writes what the game takes without waiting, and keeps the rest
// for the next flush (see upstream.rest), so that a game that asks without
// reading is still read, and dropped past maxOut. It reports whether
// something is left.
func (s *session) flushReader(u *upstream, greeted bool) (owed bool, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	err = s.flushLocked(u, greeted, false, true)
	return len(u.rest) > 0, err
}

// flushDirect is flush from the player's reader, while u is the connection
// input flows to; errNotDirect once it no longer is.
func (s *session) flushDirect(u *upstream) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.flushLocked(u, true, true, false)
}

var errNotDirect = errors.New("bridge: input no longer flows to this connection")

// flushLocked is flush with wmu held; direct says only while u is the
// connection input flows to, try without waiting for the game to read.
func (s *session) flushLocked(u *upstream, greeted, direct, try bool) error {
	gmcpOn := u.gmcpOn()
	s.mu.Lock()
	if direct && s.direct != u {
		s.mu.Unlock()
		return errNotDirect
	}
	var fc *factsChange
	if s.newFacts {
		fc = &factsChange{s.facts, s.factsTold}
		s.newFacts, s.factsTold = false, false
	}
	var in []byte
	var gmcp []heldGMCP
	switch {
	case greeted:
		in, gmcp = s.held, s.gmcp
		s.held, s.gmcp = nil, nil
	case gmcpOn:
		n := 0
		for n < len(s.gmcp) && s.gmcp[n].At == 0 {
			n++
		}
		if n > 0 {
			gmcp = s.gmcp[:n:n]
			s.gmcp = append([]heldGMCP(nil), s.gmcp[n:]...)
		}
	}
	s.mu.Unlock()
	out := append(s.wbuf[:0], u.rest...)
	u.rest = nil
	out = u.takeOut(out, fc)
	sent := 0
	for _, g := range gmcp {
		out = append(out, in[sent:g.At]...)
		sent = g.At
		if gmcpOn {
			out = telnet.AppendSubneg(out, telnet.OptGMCP, g.Msg)
		}
	}
	out = append(out, in[sent:]...)
	var err error
	if try {
		var n int
		if n, err = u.tryWrite(out); err == nil && n < len(out) {
			u.rest = append([]byte(nil), out[n:]...)
			if len(u.rest) > maxOut {
				err = fmt.Errorf("bridge: the game asks more than it reads (%d bytes waiting)", len(u.rest))
				u.fault = err
			}
		}
	} else {
		err = u.write(out)
	}
	if cap(out) <= maxKeptBuf {
		s.wbuf = out[:0]
	}
	if len(in) > 0 || len(gmcp) > 0 {
		s.mu.Lock()
		if err != nil {
			for i := range s.gmcp {
				s.gmcp[i].At += len(in)
			}
			s.gmcp = append(gmcp, s.gmcp...)
			s.held = append(in, s.held...)
		} else if s.held == nil && cap(in) <= maxKeptBuf {
			s.held = in[:0] // written: its array serves the next input
		}
		s.mu.Unlock()
		select {
		case s.room <- struct{}{}:
		default:
		}
	}
	return err
}
