package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"go.uber.org/zap"

	"holdfast/backend"
	"holdfast/gateway/telnet"
)

// ErrNoMSSP is what FetchMSSP returns for a game that offers no MSSP.
var ErrNoMSSP = errors.New("bridge: the game offers no MSSP")

// msspWait is how long FetchMSSP waits for the game's MSSP after the
// game's first output: games offer it with their first negotiation.
const msspWait = time.Second

// msspRetry is how soon a fetch that failed (the game is down) is tried
// again, if no player reaches the game first.
const msspRetry = 30 * time.Second

// msspTimeout bounds a whole FetchMSSP whose ctx has no deadline.
const msspTimeout = 10 * time.Second

// FetchMSSP asks the game for its MSSP variables (the server status MUD
// crawlers read) over a connection of its own, answering the game's
// negotiation as a client without a player would, and closes it.
func (b *Bridge) FetchMSSP(ctx context.Context) ([]backend.MSSPVar, error) {
	b.init()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, msspTimeout)
		defer cancel()
	}
	conn, err := b.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("bridge: MSSP: dial %s: %w", b.Upstream, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if b.ProxyHeader != 0 {
		// No player: the header says so, and the game sees the bridge.
		h, err := proxyHeader(b.ProxyHeader, "", conn.RemoteAddr())
		if err != nil {
			return nil, err
		}
		if _, err := conn.Write(h); err != nil {
			return nil, fmt.Errorf("bridge: MSSP: %w", err)
		}
	}
	f := &msspFetch{conn: conn, neg: negotiator{mssp: true}}
	buf := make([]byte, readBuf)
	for f.vars == nil {
		n, err := conn.Read(buf)
		if n > 0 {
			f.dec.decode(buf[:n], f)
			if len(f.out) > 0 {
				conn.SetWriteDeadline(time.Now().Add(writeTimeout))
				if _, err := conn.Write(f.out); err != nil {
					return nil, fmt.Errorf("bridge: MSSP: %w", err)
				}
				f.out = f.out[:0]
			}
			if f.refused {
				return nil, ErrNoMSSP
			}
			if f.texted && !f.offered && !f.waiting {
				f.waiting = true
				conn.SetReadDeadline(time.Now().Add(msspWait))
			}
		}
		if err != nil {
			var ne net.Error
			if f.texted && !f.offered && errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				return nil, ErrNoMSSP
			}
			return nil, fmt.Errorf("bridge: MSSP: read: %w", err)
		}
	}
	return f.vars, nil
}

// msspFetch is the decoder's handler while FetchMSSP reads.
type msspFetch struct {
	conn    net.Conn
	dec     decoder
	neg     negotiator
	out     []byte
	vars    []backend.MSSPVar
	texted  bool // the game has sent text: its first negotiation is over
	offered bool // the game said WILL MSSP
	waiting bool
	refused bool // the game said WONT MSSP
}

func (f *msspFetch) text([]byte) { f.texted = true }

func (f *msspFetch) negotiate(verb, opt byte) {
	f.out, _ = f.neg.negotiate(f.out, verb, opt)
	if opt == telnet.OptMSSP {
		f.offered = verb == telnet.WILL
		f.refused = verb == telnet.WONT
		if f.offered {
			f.conn.SetReadDeadline(time.Time{})
		}
	}
}

func (f *msspFetch) subneg(opt byte, p []byte, truncated bool) {
	if opt == telnet.OptMSSP && !truncated {
		f.vars = parseMSSP(p)
		if f.vars == nil {
			f.vars = []backend.MSSPVar{}
		}
		return
	}
	f.out = f.neg.subneg(f.out, opt, p)
}

func (f *msspFetch) command(byte) {}

// gameBack says the game is reachable again after an outage: its MSSP may
// have changed with the restart.
func (b *Bridge) gameBack() {
	select {
	case b.back <- struct{}{}:
	default:
	}
}

// reached says a player has reached the game: it is not down, and the
// players waiting out a backoff need not wait so long.
func (b *Bridge) reached() {
	b.mu.Lock()
	select {
	case <-b.isDown:
		b.isDown = make(chan struct{}) // no longer known to be down
		b.log().Info("bridge: the game is back")
	default:
	}
	if b.waiting > 0 {
		close(b.up)
		b.up = make(chan struct{})
	}
	b.mu.Unlock()
}

// wait counts a player waiting out a backoff, and returns the channel
// closed when another reaches the game, and the function that ends the
// wait.
func (b *Bridge) wait() (<-chan struct{}, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waiting++
	return b.up, func() {
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
	}
}

// watchMSSP fetches the game's MSSP at the start, every MSSPInterval, and
// after the game comes back, and hands what changed to set.
func (b *Bridge) watchMSSP(set func([]backend.MSSPVar)) {
	log := b.log()
	var last []backend.MSSPVar
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		case <-b.back:
		}
		vars, err := b.FetchMSSP(b.ctx)
		switch {
		case errors.Is(err, ErrNoMSSP):
			log.Debug("bridge: the game offers no MSSP")
		case err != nil:
			if b.ctx.Err() != nil {
				return
			}
			log.Info("bridge: cannot fetch the game's MSSP", zap.Error(err))
			t.Reset(min(b.msspInterval(), msspRetry))
			continue
		case !slices.EqualFunc(vars, last, func(a, b backend.MSSPVar) bool {
			return a.Name == b.Name && slices.Equal(a.Values, b.Values)
		}):
			last = vars
			set(vars)
			log.Info("bridge: the game's MSSP", zap.Int("vars", len(vars)))
		}
		t.Reset(b.msspInterval())
	}
}
