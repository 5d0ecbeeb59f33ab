package backend

import (
	"context"
	"errors"
	"net"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/internal/netx"
)

// ListenRetrying is Listen, tried again while the registry does not answer,
// backing off up to two seconds: registry, gateway and game may start in
// any order, and a registry that restarts comes back. A name held by
// another backend (epmd.ErrRefused) is returned at once, and so is ctx's
// end.
func ListenRetrying(ctx context.Context, cfg Config) (*Listener, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return retry(ctx, log, func() (*Listener, error) {
		l, err := Listen(ctx, cfg)
		if errors.Is(err, epmd.ErrRefused) {
			return nil, permanent{err}
		}
		return l, err
	})
}

// ReadyRetrying is Ready, tried again while the registry does not answer:
// a deploy started while the registry restarts waits for it rather than
// failing. A second successor (ErrHandoverBusy), a closed listener and
// ctx's end are returned at once.
func (l *Listener) ReadyRetrying(ctx context.Context) error {
	_, err := retry(ctx, l.log, func() (*Listener, error) {
		err := l.Ready(ctx)
		if errors.Is(err, ErrHandoverBusy) || errors.Is(err, net.ErrClosed) {
			return nil, permanent{err}
		}
		return l, err
	})
	return err
}

// permanent is an error not worth trying again.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

func retry(ctx context.Context, log *zap.Logger, try func() (*Listener, error)) (*Listener, error) {
	var delay time.Duration
	for {
		l, err := try()
		var p permanent
		switch {
		case err == nil:
			return l, nil
		case errors.As(err, &p):
			return nil, p.error
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		delay = netx.Backoff(delay, 100*time.Millisecond, 2*time.Second)
		log.Warn("backend: cannot register yet; retrying", zap.Error(err), zap.Duration("delay", delay))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}
