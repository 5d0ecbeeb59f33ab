package cli

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/systemd"
)

// ShutdownTimeout bounds a daemon's graceful shutdown at a signal: the
// gateway takes its players back well within it, and systemd's stop
// timeout in the units (15 s) leaves room for the rest.
const ShutdownTimeout = 10 * time.Second

// A Shutdowner stops serving gracefully: a *backend.Listener, whose
// Shutdown detaches every player so that the gateway keeps them.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// ShutdownOnSignal shuts l down, within ShutdownTimeout, once ctx is done
// (signal.NotifyContext's for SIGINT and SIGTERM), after telling systemd
// and the log. It returns the function to call once the daemon has stopped
// serving by itself (its players handed over to a successor): a signal
// after that has nothing left to shut down. The daemon's own serving loop
// ends as the shutdown closes l; the function does not wait for it.
func ShutdownOnSignal(ctx context.Context, log *zap.Logger, prog string, l Shutdowner) (served func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		select {
		case <-done:
			return // both at once: served came first for all the select knew
		default:
		}
		systemd.Stopping()
		log.Info(prog + ": shutting down; the gateway keeps the players")
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		l.Shutdown(sctx)
	}()
	return sync.OnceFunc(func() { close(done) })
}
