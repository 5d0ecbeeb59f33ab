package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/internal/systemd"
)

// daemon runs the registry until it is killed or signalled, and returns the
// exit code.
func daemon(o *options) int {
	if o.daemon {
		return detach()
	}
	log := zap.NewNop()
	if o.debug {
		cfg := zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
		if l, err := cfg.Build(); err == nil {
			log = l
		}
	}
	lns, err := listeners(o)
	if errors.Is(err, syscall.EADDRINUSE) {
		// As Erlang's epmd: the port is taken, so an epmd already runs.
		log.Info("epmd: port in use; assuming another epmd runs", zap.Error(err))
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "epmd: %v\n", err)
		return 1
	}
	srv := &epmd.Server{Logger: log, Relaxed: o.relaxed, IdleTimeout: time.Duration(o.packetTimeout) * time.Second}
	stopped := make(chan struct{})
	var once sync.Once
	stopNow := func() { once.Do(func() { close(stopped) }) }
	srv.OnKill = stopNow

	var wg sync.WaitGroup
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); !errors.Is(err, epmd.ErrServerClosed) {
				errs <- err
			}
		}()
	}
	log.Info("epmd: listening", zap.Int("port", o.port), zap.Bool("relaxed", o.relaxed))
	systemd.Ready()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	code := 0
	select {
	case <-sigs:
	case <-stopped:
	case err := <-errs:
		fmt.Fprintf(os.Stderr, "epmd: %v\n", err)
		code = 1
	}
	systemd.Stopping()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	wg.Wait()
	return code
}

// listeners opens the sockets: systemd's when asked to, else one per
// address in -address (loopback always added), else all interfaces.
func listeners(o *options) ([]net.Listener, error) {
	if o.systemd {
		lns, err := systemd.Listeners()
		if err != nil {
			return nil, err
		}
		if len(lns) == 0 {
			return nil, errors.New("-systemd: no socket passed by systemd")
		}
		return lns, nil
	}
	port := strconv.Itoa(o.port)
	if strings.TrimSpace(o.address) == "" {
		ln, err := epmd.Listen(":" + port)
		if err != nil {
			return nil, err
		}
		return []net.Listener{ln}, nil
	}
	lns, err := epmd.ListenAddrs(o.address, o.port)
	if err != nil {
		return nil, fmt.Errorf("-address: %w", err)
	}
	return lns, nil
}

// detach starts the daemon again without -daemon in a session of its own,
// with no terminal, and returns at once, as Erlang's epmd -daemon does.
func detach() int {
	var args []string
	for _, a := range os.Args[1:] {
		if a != "-daemon" && a != "--daemon" {
			args = append(args, a)
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "epmd: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "epmd: %v\n", err)
		return 1
	}
	cmd.Process.Release()
	return 0
}
