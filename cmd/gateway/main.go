// Command gateway holds players' telnet sessions and carries them to a
// restartable backend that it finds by name in epmd.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/gateway"
	"holdfast/internal/cli"
	"holdfast/internal/systemd"
)

func main() {
	var (
		common  cli.Common
		listen  = flag.String("listen", ":4000", "telnet address for players")
		backend = flag.String("backend", "game", "backend name in epmd; NAME@HOST asks the epmd on HOST")
		embed   = flag.Bool("embed-epmd", true, "serve the registry on -epmd-port unless an epmd already answers there")
		mccp    = flag.Bool("mccp", true, "offer MCCP2 output compression to clients")
		debug   = flag.String("debug-addr", "", "serve Go's /debug/pprof on this address (keep it on loopback); empty: off")
	)
	common.Register(flag.CommandLine)
	flag.Parse()
	if flag.NArg() > 0 {
		cli.Fatal("gateway", fmt.Errorf("unexpected arguments: %q", flag.Args()))
	}
	log, err := common.Logger()
	if err != nil {
		cli.Fatal("gateway", err)
	}
	cookie, err := common.Cookie()
	if err != nil {
		cli.Fatal("gateway", err)
	}
	if *debug != "" {
		if err := serveDebug(log, *debug); err != nil {
			cli.Fatal("gateway", err)
		}
	}
	if err := run(log, &common, cookie, *listen, *backend, *embed, *mccp); err != nil {
		log.Error("gateway: stopped", zap.Error(err))
		os.Exit(1)
	}
}

func run(log *zap.Logger, common *cli.Common, cookie []byte, listen, backend string, embed, mccp bool) error {
	gw := &gateway.Server{Backend: backend, Cookie: cookie, Logger: log, EPMD: common.EPMDAddr(), NoCompress: !mccp}
	var registry *epmd.Server
	if embed {
		reg, addr, err := embedRegistry(log, common.EPMDPort)
		if err != nil {
			return err
		}
		registry = reg
		if reg != nil {
			gw.Registry, gw.EPMD = reg, addr
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("telnet listener: %w", err)
	}
	log.Info("gateway: telnet listening", zap.Stringer("addr", ln.Addr()), zap.String("backend", backend),
		zap.String("epmd", gw.EPMD))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	systemd.Ready()
	select {
	case sig := <-sigs:
		log.Info("gateway: shutting down", zap.Stringer("signal", sig))
	case err := <-served:
		gw.Close()
		return err
	}
	systemd.Stopping()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gw.Shutdown(ctx)
	if registry != nil {
		registry.Close()
	}
	return nil
}

// embedRegistry serves the registry on port, or returns nil when another
// epmd already answers there. Port 0 picks a free port.
func embedRegistry(log *zap.Logger, port int) (*epmd.Server, string, error) {
	ln, err := epmd.Listen(":" + strconv.Itoa(port))
	if err != nil {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, _, perr := (&epmd.Client{Addr: addr}).Names(ctx); perr == nil {
			log.Info("gateway: an epmd already runs on the port; using it", zap.String("epmd", addr))
			return nil, addr, nil
		}
		return nil, "", fmt.Errorf("registry: %w", err)
	}
	reg := &epmd.Server{Logger: log}
	actual := ln.Addr().(*net.TCPAddr).Port
	go func() {
		if err := reg.Serve(ln); err != nil && !errors.Is(err, epmd.ErrServerClosed) {
			log.Error("gateway: registry stopped", zap.Error(err))
		}
	}()
	addr := "127.0.0.1:" + strconv.Itoa(actual)
	log.Info("gateway: registry listening", zap.Stringer("addr", ln.Addr()), zap.Int("port", actual))
	return reg, addr, nil
}

// serveDebug serves Go's profiler: goroutine counts, heap and CPU profiles
// of a running gateway.
func serveDebug(log *zap.Logger, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("gateway: debug listening", zap.Stringer("addr", ln.Addr()))
	return nil
}
