// Command backend is holdfast's demo application: a small multi-user talker
// built on package backend. Kill it and start it again at will; the players
// stay connected to the gateway and stay logged in.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/backend"
	"holdfast/epmd"
	"holdfast/internal/cli"
	"holdfast/internal/systemd"
)

func main() {
	var (
		common cli.Common
		name   = flag.String("name", backend.DefaultName, "name to register in epmd")
		listen = flag.String("listen", "127.0.0.1:0", "address for the gateway's link")
		quiet  = flag.Bool("quiet", false, "do not announce arrivals and departures (for load tests)")
		orphan = flag.Duration("orphan-timeout", backend.DefaultOrphanTimeout, "how long a player whose gateway is gone waits for it to come back before leaving the game")
		kept   = flag.Duration("kept-timeout", backend.DefaultKeptTimeout, "how long a browser player whose gateway is gone waits to come back through another gateway (at least -orphan-timeout)")
		take   = flag.Bool("takeover", false, "take the players over from the backend running under -name (a deploy without a pause)")
		delay  = flag.Duration("ready-delay", 0, "wait this long before saying ready, as a game loading its world would")
	)
	common.Register(flag.CommandLine)
	flag.Parse()
	if flag.NArg() > 0 {
		cli.Fatal("backend", fmt.Errorf("unexpected arguments: %q", flag.Args()))
	}
	log, err := common.Logger()
	if err != nil {
		cli.Fatal("backend", err)
	}
	cookie, err := common.Cookie()
	if err != nil {
		cli.Fatal("backend", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := backend.Config{Name: *name, ListenAddr: *listen, EPMD: common.EPMDAddr(), Cookie: cookie, Logger: log,
		OrphanTimeout: *orphan, KeptTimeout: *kept, Takeover: *take}
	l, err := backend.ListenRetrying(ctx, cfg)
	if errors.Is(err, epmd.ErrRefused) {
		cli.Fatal("backend", fmt.Errorf("the name %q is taken: a backend is running under it; start this one with -takeover to take its players over", *name))
	}
	if err != nil {
		return // interrupted before the registry answered
	}
	if *delay > 0 {
		log.Info("backend: getting ready", zap.Duration("delay", *delay))
		select {
		case <-time.After(*delay):
		case <-ctx.Done():
			l.Close()
			return
		}
	}
	if err := l.ReadyRetrying(ctx); err != nil {
		l.Close()
		if ctx.Err() != nil {
			return // interrupted before the registry answered
		}
		cli.Fatal("backend", err)
	}
	log.Info("backend: registered", zap.String("name", *name), zap.Stringer("addr", l.Addr()), zap.Bool("takeover", *take))
	systemd.Ready()

	l.SetMSSP([]backend.MSSPVar{
		{Name: "NAME", Values: []string{"holdfast demo talker"}},
		{Name: "CODEBASE", Values: []string{"holdfast"}},
		{Name: "GENRE", Values: []string{"None"}},
		{Name: "GAMEPLAY", Values: []string{"Social"}},
		{Name: "ANSI", Values: []string{"0"}},
		{Name: "UTF-8", Values: []string{"1"}},
		{Name: "GMCP", Values: []string{"1"}},
		{Name: "MCCP", Values: []string{"1"}},
	})
	t := newTalker(log, l, *quiet)
	var wg sync.WaitGroup
	served := cli.ShutdownOnSignal(ctx, log, "backend", l)
	for {
		s, err := l.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.serve(s)
		}()
	}
	served() // handed over to a successor, or shut down: the players are not here
	wg.Wait()
	l.Close()
}

func init() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: backend [flags]\n\nThe demo talker behind a holdfast gateway.\n\n")
		flag.PrintDefaults()
	}
}
