package web

import (
	"encoding/json"
	"time"
)

// A resumable page may come back through another gateway (a balancer in
// front of several): the gateway's session is told so (Keeps) and keeps
// the game informed of what the page has (gateway/keep.go). The Conn's part:
// it tells the page its session's id, and how much of its input the game
// has ({"session":ID}, {"in":N}), so that the page keeps what it typed
// until then; it maps the page's acknowledgements of its messages onto the
// game's output offset, for the backend; and a page whose token this
// gateway does not know, but which names its session, becomes a Conn
// that claims the session from the backend (Claim).

// sentMark says that the page's messages up to sent carry the game's
// output up to game.
type sentMark struct{ sent, game uint64 }

// maxMarks bounds the marks kept: past it the oldest go, and the game is
// told of acknowledgements a little late, never early.
const maxMarks = 256

// claim is what a page back from another gateway brought.
type claim struct {
	session, token string
	in, out        uint64
}

// Keeps reports whether the page may come back through another gateway.
func (c *Conn) Keeps() bool { return c.resumable }

// KeepWith gives the Conn its session's id, and what to call when the page
// acknowledges the game's output up to an offset, or its tokens change.
func (c *Conn) KeepWith(id string, outAcked func(game uint64), tokens func()) {
	c.mu.Lock()
	c.session, c.outAcked, c.tokensChanged = id, outAcked, tokens
	c.mu.Unlock()
	c.tell(info{Session: id})
}

// Sent records that what was written so far carries the game's output up
// to game. The gateway's one writer calls it after each Write.
func (c *Conn) Sent(game uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.marks); n > 0 && c.marks[n-1].game >= game {
		return
	}
	if len(c.marks) == maxMarks {
		c.marks = append(c.marks[:0], c.marks[1:]...)
	}
	c.marks = append(c.marks, sentMark{c.sent, game})
}

// ackedGameLocked returns the game's output offset the page has, given
// that it acknowledged its messages up to c.acked, and forgets the marks
// behind it; ok is false when it is not further than told before.
func (c *Conn) ackedGameLocked() (game uint64, ok bool) {
	i := 0
	for i < len(c.marks) && c.marks[i].sent <= c.acked {
		game, ok = c.marks[i].game, true
		i++
	}
	c.marks = c.marks[:copy(c.marks, c.marks[i:])]
	if len(c.marks) == 0 {
		c.marks = nil // up to 4 KiB after a burst, for as long as the page stays idle
	}
	return game, ok && c.outAcked != nil
}

// inEvery bounds how often a page is told how much of its input the game
// has: a message for each line typed would double a typing player's
// messages, and the page only forgets its typing by it.
const inEvery = 250 * time.Millisecond

// InputAcked tells the page, within inEvery, that the game has its input
// up to off.
func (c *Conn) InputAcked(off uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inAcked = off
	if c.inTimer == nil {
		c.inTimer = time.AfterFunc(inEvery, c.tellIn)
	}
}

func (c *Conn) tellIn() {
	c.mu.Lock()
	off := c.inAcked
	c.inTimer = nil
	c.mu.Unlock()
	c.tell(info{In: &off})
}

// TokenHashes returns the SHA-256 hashes of the tokens that resume the Conn.
func (c *Conn) TokenHashes() [][32]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var hs [][32]byte
	for _, h := range []string{c.token, c.fresh} {
		if len(h) == 32 {
			hs = append(hs, [32]byte([]byte(h)))
		}
	}
	return hs
}

// Claim says which session a page back from another gateway claims, with
// which token, where the typing it kept starts and how much of the game's
// output it has.
func (c *Conn) Claim() (session, token string, in, out uint64, ok bool) {
	if c.claim == nil {
		return "", "", 0, 0, false
	}
	return c.claim.session, c.claim.token, c.claim.in, c.claim.out, true
}

// tokensMoved tells the session that the Conn's tokens changed.
func (c *Conn) tokensMoved() {
	c.mu.Lock()
	f := c.tokensChanged
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// info tells a page that may come back elsewhere its session's id, or
// how much of its input the game has. It never carries a token, which
// tells it from the answer to the page's hello.
type info struct {
	Session string  `json:"session,omitempty"`
	In      *uint64 `json:"in,omitempty"`
}

// tell sends the page an info message now, if it is there: what it says
// is said again in the answer to the page's return.
func (c *Conn) tell(m info) {
	if !c.resumable {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	ws, gen, closed := c.ws, c.gen, c.closed || c.ended != nil
	c.mu.Unlock()
	if ws == nil || closed {
		return
	}
	b, _ := json.Marshal(m)
	if err := ws.write(opText, b, time.Now().Add(10*time.Second)); err != nil {
		c.lost(gen, err) // the session is held for the page's return
	}
}
