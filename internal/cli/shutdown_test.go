package cli

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

type shutdowner chan struct{}

func (s shutdowner) Shutdown(context.Context) error {
	close(s)
	return nil
}

func TestShutdownOnSignal(t *testing.T) {
	t.Run("signal", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		l := make(shutdowner)
		served := ShutdownOnSignal(ctx, zaptest.NewLogger(t), "test", l)
		defer served()
		cancel()
		select {
		case <-l:
		case <-time.After(10 * time.Second):
			t.Fatal("a signal did not shut the listener down")
		}
	})
	t.Run("served first", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		l := make(shutdowner)
		served := ShutdownOnSignal(ctx, zaptest.NewLogger(t), "test", l)
		served()
		served() // twice is harmless
		cancel()
		// A second watcher of the same context, shut down, shows the
		// signal has been seen; the first, though, had been told its
		// players were gone before it.
		l2 := make(shutdowner)
		ShutdownOnSignal(ctx, zaptest.NewLogger(t), "test", l2)
		<-l2
		select {
		case <-l:
			t.Fatal("a daemon that had handed its players over was shut down at a signal")
		default:
		}
	})
}
