package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"holdfast/backend"
	"holdfast/internal/fdmsg"
)

// Defaults for the Bridge's knobs left at zero.
const (
	DefaultMaxConnecting = 16
	DefaultRetryMin      = 200 * time.Millisecond
	DefaultRetryMax      = 5 * time.Second
	DefaultMaxHeld       = 16 << 10
	DefaultDialTimeout   = 5 * time.Second
	DefaultGreetWait     = 5 * time.Second
	DefaultMSSPInterval  = 10 * time.Minute
	DefaultNotice        = "[holdfast] The game is restarting. Stay connected: you will be back in a moment."
)

// ErrServerClosed is what Serve returns after Close or Shutdown.
var ErrServerClosed = errors.New("bridge: server closed")

// ErrProxyVersion is what Serve returns for a ProxyHeader other than 0, 1
// or 2.
var ErrProxyVersion = errors.New("bridge: PROXY header version: want 1 or 2")

// Player is the player's side of a bridged session, as package backend
// hands it to a game: a *backend.Session.
type Player interface {
	ID() string
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
	SetReadDeadline(t time.Time) error
	Prompt(text string) error
	SetEcho(on bool) error
	SendGMCP(pkg string, data []byte) error
	Facts() backend.Facts
	OnFacts(f func(backend.Facts))
	OnGMCP(f func(pkg string, data []byte))
}

var _ Player = (*backend.Session)(nil)

// A Bridge carries each player to a telnet game over a connection of the
// player's own, and answers the game's negotiation as the player's client
// would. Its zero value, with Upstream set, is ready to Serve.
type Bridge struct {
	// Upstream is the game's address, host:port.
	Upstream string
	// ProxyHeader, 1 or 2, sends a PROXY header of that version first on
	// each connection to the game, with the player's address. Zero sends
	// none; any other value makes Serve fail.
	ProxyHeader int
	// Dial opens a connection to the game. Nil means a net.Dialer bounded
	// by DefaultDialTimeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxConnecting bounds the connections to the game being opened at
	// once, each counted from its dial to the game's first output, so that
	// thousands of players coming back after a restart do not all land on
	// the game at the same moment. Zero means DefaultMaxConnecting;
	// negative, no bound.
	MaxConnecting int
	// RetryMin and RetryMax bound the backoff between one player's
	// attempts to reach a game that is down; each wait is jittered. Zero
	// or negative means DefaultRetryMin and DefaultRetryMax; a RetryMax
	// below RetryMin is RetryMin.
	RetryMin, RetryMax time.Duration
	// MaxHeld bounds the input kept for a player while the game is away;
	// beyond it the bridge stops reading the player, and the gateway keeps
	// the rest. Zero or negative means DefaultMaxHeld.
	MaxHeld int
	// GreetWait is how long input waits on a new connection for the game's
	// first output before it is sent anyway. Zero or negative means
	// DefaultGreetWait.
	GreetWait time.Duration
	// Notice is what a player is told, once, when the game cannot be
	// reached. Empty means DefaultNotice.
	Notice string
	// MSSPInterval is how often Serve asks the game for its MSSP
	// variables (also once at the start, and when the game is back after
	// an outage). Zero means DefaultMSSPInterval; negative, never.
	MSSPInterval time.Duration
	// HandoverAddr is the Unix socket (a path, or "@name" for an abstract
	// one on Linux) where this bridge hands its connections to the game to
	// a successor that calls TakeOver, so that a deploy keeps them. Serve
	// listens on it. Empty means no handover: the successor opens new
	// connections, and the game sees its players leave and come back.
	HandoverAddr string
	// Logger receives the bridge's events. Nil logs nothing.
	Logger *zap.Logger

	initOnce sync.Once
	ctx      context.Context // done once Close or Shutdown is called
	cancel   context.CancelFunc
	gate     chan struct{} // a slot per connection being opened; nil: no bound
	back     chan struct{} // the game is back after an outage: fetch MSSP again

	mu       sync.Mutex
	up       chan struct{} // closed and replaced when a player reaches the game, while some wait
	waiting  int           // players waiting out a backoff
	sessions map[*session]struct{}
	serial   uint64            // the next connection to the game's, in the order opened
	live     int               // connections to the game open, probes aside
	drops    []*drop           // drops not yet decided
	isDown   chan struct{}     // closed while the game is known to be down
	pred     *predecessor      // the bridge taken over, while its records come
	succ     *fdmsg.Conn       // the successor, once one is connected
	hln      *net.UnixListener // where a successor connects
	handover bool              // TakeOver or Serve has started the handover's side
	idle     chan struct{}     // closed when the last session ends, while shutting down
	closed   bool
	wg       sync.WaitGroup
}

func (b *Bridge) init() {
	b.initOnce.Do(func() {
		b.ctx, b.cancel = context.WithCancel(context.Background())
		if n := b.maxConnecting(); n > 0 {
			b.gate = make(chan struct{}, n)
		}
		b.back = make(chan struct{}, 1)
		b.up = make(chan struct{})
		b.isDown = make(chan struct{})
		b.sessions = make(map[*session]struct{})
	})
}

func (b *Bridge) maxConnecting() int {
	if b.MaxConnecting == 0 {
		return DefaultMaxConnecting
	}
	return b.MaxConnecting
}

func (b *Bridge) retryMin() time.Duration {
	if b.RetryMin <= 0 {
		return DefaultRetryMin
	}
	return b.RetryMin
}

func (b *Bridge) retryMax() time.Duration {
	if b.RetryMax <= 0 {
		return max(DefaultRetryMax, b.retryMin())
	}
	return max(b.RetryMax, b.retryMin())
}

func (b *Bridge) maxHeld() int {
	if b.MaxHeld <= 0 {
		return DefaultMaxHeld
	}
	return b.MaxHeld
}

func (b *Bridge) greetWait() time.Duration {
	if b.GreetWait <= 0 {
		return DefaultGreetWait
	}
	return b.GreetWait
}

func (b *Bridge) notice() string {
	if b.Notice == "" {
		return DefaultNotice
	}
	return b.Notice
}

func (b *Bridge) msspInterval() time.Duration {
	if b.MSSPInterval == 0 {
		return DefaultMSSPInterval
	}
	return b.MSSPInterval
}

func (b *Bridge) log() *zap.Logger {
	if b.Logger == nil {
		return zap.NewNop()
	}
	return b.Logger
}

func (b *Bridge) dial(ctx context.Context) (net.Conn, error) {
	if b.Dial != nil {
		return b.Dial(ctx, "tcp", b.Upstream)
	}
	d := net.Dialer{Timeout: DefaultDialTimeout}
	return d.DialContext(ctx, "tcp", b.Upstream)
}

// Serve bridges every session l accepts until l is closed, Close or
// Shutdown, and keeps the gateways' MSSP answer up to date with the game's.
// It returns ErrServerClosed after Close or Shutdown.
func (b *Bridge) Serve(l *backend.Listener) error {
	b.init()
	if b.ProxyHeader < 0 || b.ProxyHeader > 2 {
		return fmt.Errorf("%w, not %d", ErrProxyVersion, b.ProxyHeader)
	}
	b.startHandover()
	if b.msspInterval() > 0 {
		b.wg.Go(func() { b.watchMSSP(l.SetMSSP) })
	}
	return b.serve(func() (Player, error) {
		s, err := l.Accept()
		if err != nil {
			return nil, err
		}
		return s, nil
	})
}

// serve bridges every player accept returns.
func (b *Bridge) serve(accept func() (Player, error)) error {
	b.init()
	if b.ProxyHeader < 0 || b.ProxyHeader > 2 {
		return fmt.Errorf("%w, not %d", ErrProxyVersion, b.ProxyHeader)
	}
	for {
		p, err := accept()
		if err != nil {
			if b.ctx.Err() != nil {
				return ErrServerClosed
			}
			return fmt.Errorf("bridge: accept: %w", err)
		}
		if !b.Handle(p) {
			return ErrServerClosed
		}
	}
}

// Handle bridges one player to the game, in a goroutine of its own, until
// the player leaves, the game ends the player's connection, or the Bridge
// closes. It reports false, and leaves the player alone, once the Bridge
// is closed.
func (b *Bridge) Handle(p Player) bool {
	b.init()
	s := newSession(b, p)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.sessions[s] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		s.run()
		b.mu.Lock()
		delete(b.sessions, s)
		if len(b.sessions) == 0 && b.idle != nil {
			close(b.idle)
			b.idle = nil
		}
		b.mu.Unlock()
	}()
	return true
}

// Close closes every connection to the game at once and waits for the
// bridge's goroutines. The players are left to the backend's listener,
// whose Shutdown or Close detaches them so that the gateway keeps them: call
// it first, as a player's output waiting for the gateway waits for that.
// It is safe to call twice.
func (b *Bridge) Close() error {
	b.init()
	b.mu.Lock()
	b.closed = true
	sessions := make([]*session, 0, len(b.sessions))
	for s := range b.sessions {
		sessions = append(sessions, s)
	}
	hln, succ, pred := b.hln, b.succ, b.pred
	b.mu.Unlock()
	b.cancel()
	if hln != nil {
		hln.Close()
	}
	if succ != nil {
		succ.Close()
	}
	for _, s := range sessions {
		s.stop()
	}
	b.wg.Wait()
	if pred != nil {
		pred.drop()
	}
	return nil
}

// Shutdown waits until every bridged session has ended by itself (after
// the backend's listener has detached them, say), or until ctx is done,
// and then closes.
func (b *Bridge) Shutdown(ctx context.Context) error {
	b.init()
	b.mu.Lock()
	b.closed = true
	var idle chan struct{}
	if len(b.sessions) > 0 {
		idle = make(chan struct{})
		b.idle = idle
	}
	b.mu.Unlock()
	var err error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	b.Close()
	return err
}

// Sessions returns how many players the bridge carries now.
func (b *Bridge) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}
