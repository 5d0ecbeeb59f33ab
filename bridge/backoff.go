package bridge

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"holdfast/internal/netx"
)

// nextDelay returns the next backoff after d, doubling from RetryMin up to
// RetryMax.
func (b *Bridge) nextDelay(d time.Duration) time.Duration {
	return netx.Backoff(d, b.retryMin(), b.retryMax())
}

// jitter spreads a wait over [d/2, d): players whose connections the game
// dropped at the same moment come back spread out, not in waves.
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// acquire takes a slot for a connection being opened, waiting while
// MaxConnecting are; it returns the function that gives the slot back
// (safe to call twice), or ctx's error. If the game is known to be down
// while it waits, down is called, once, and the wait goes on.
func (b *Bridge) acquire(ctx context.Context, down func()) (release func(), err error) {
	if b.gate == nil {
		return func() {}, nil
	}
	isDown := b.downSignal()
	for {
		select {
		case b.gate <- struct{}{}:
			return sync.OnceFunc(func() { <-b.gate }), nil
		case <-isDown:
			isDown = nil
			down()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// sleep waits d, or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
