// Command gateway holds players' telnet sessions and carries them to a
// restartable backend that it finds by name in epmd.
//
//	gateway [flags]                  serve players
//	gateway sessions [-json]         list the sessions a running gateway holds
//	gateway log-level [LEVEL]        print or change a running gateway's log level
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/gateway"
	"holdfast/internal/cli"
	"holdfast/internal/systemd"
)

func main() {
	if len(os.Args) > 1 {
		tools := map[string]func([]string) error{
			"sessions":  func(a []string) error { return runSessions(a, os.Stdout) },
			"log-level": func(a []string) error { return runLogLevel(a, os.Stdout) },
		}
		if tool := tools[os.Args[1]]; tool != nil {
			if err := tool(os.Args[2:]); err != nil {
				cli.Fatal("gateway "+os.Args[1], err)
			}
			return
		}
	}
	var cfg config
	cfg.register(flag.CommandLine)
	if err := cli.Configure(flag.CommandLine, os.Args[1:], "HOLDFAST", os.Environ()); err != nil {
		configError(err)
	}
	if err := cfg.validate(); err != nil {
		configError(err)
	}
	log, err := cfg.common.Logger()
	if err != nil {
		configError(err)
	}
	cookie, err := cfg.common.Cookie()
	if err != nil {
		cli.Fatal("gateway", err)
	}
	if err := run(log, &cfg, cookie); err != nil {
		log.Error("gateway: stopped", zap.Error(err))
		os.Exit(1)
	}
}

// configError reports settings the gateway cannot start with, and exits
// with status 2, as for a usage error.
func configError(err error) {
	fmt.Fprintf(os.Stderr, "gateway: configuration: %v\n", err)
	os.Exit(2)
}

func run(log *zap.Logger, cfg *config, cookie []byte) error {
	// Early, so that a reload asked for while starting does not kill the
	// gateway (SIGHUP's default action).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	metrics := prometheus.NewRegistry()
	gw := &gateway.Server{
		Backend:          cfg.backend,
		Cookie:           cookie,
		Logger:           log,
		EPMD:             cfg.common.EPMDAddr(),
		NoCompress:       !cfg.mccp,
		MaxSessions:      cfg.maxSessions,
		MaxPerIP:         cfg.maxPerIP,
		ConnRate:         cfg.connRate,
		ConnBurst:        cfg.connBurst,
		HandshakeTimeout: cfg.handshakeTimeout,
		IdleTimeout:      cfg.idleTimeout,
		Metrics:          metrics,
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if cfg.embed {
		registry, addr, err := embedRegistry(log, cfg.epmdAddress, cfg.common.EPMDPort)
		if err != nil {
			return err
		}
		if registry != nil {
			gw.Registry, gw.EPMD = registry, addr
			closers = append(closers, func() { registry.Close() })
		}
	}
	for _, h := range []struct {
		addr  string
		serve func(*zap.Logger, string) (*http.Server, error)
	}{
		{cfg.metrics, func(log *zap.Logger, addr string) (*http.Server, error) {
			return serveAdmin(log, addr, gw, metrics)
		}},
		{cfg.debug, serveDebug},
	} {
		if h.addr == "" {
			continue
		}
		srv, err := h.serve(log, h.addr)
		if err != nil {
			return err
		}
		closers = append(closers, func() { srv.Close() })
	}

	if cfg.control != "" {
		ln, err := listenControl(cfg.control)
		if err != nil {
			return err
		}
		srv := serveControl(log, ln, gw, cfg.common.Level)
		closers = append(closers, func() { srv.Close() })
	}

	lns, cert, err := listen(log, cfg)
	if err != nil {
		return err
	}
	log.Info("gateway: telnet listening", zap.Stringer("addr", lns[0].Addr()), zap.String("backend", cfg.backend),
		zap.String("epmd", gw.EPMD), zap.Strings("proxy_protocol_from", cfg.proxyFrom),
		zap.Int("max_sessions", cfg.maxSessions))
	served := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { served <- gw.Serve(ln) }()
	}
	systemd.Ready()
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(log, cert)
				continue
			}
			log.Info("gateway: shutting down", zap.Stringer("signal", sig), zap.Int("sessions", gw.SessionCount()))
			systemd.Stopping()
			ctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
			defer cancel()
			if err := gw.Shutdown(ctx); err != nil {
				log.Warn("gateway: players not all told before the shutdown timeout", zap.Error(err))
			}
			return nil
		case err := <-served:
			gw.Close()
			return err
		}
	}
}

// listen opens the telnet listeners: plain, and TLS when asked for, each
// expecting PROXY headers from the configured sources.
func listen(log *zap.Logger, cfg *config) ([]net.Listener, *certificate, error) {
	var lns []net.Listener
	fail := func(err error) ([]net.Listener, *certificate, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, nil, err
	}
	open := func(flag, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", flag, err)
		}
		pl, err := withProxy(ln, cfg.proxyFrom, cfg.handshakeTimeout)
		if err != nil {
			ln.Close()
			return nil, err
		}
		return pl, nil
	}
	ln, err := open("listen", cfg.listen)
	if err != nil {
		return fail(err)
	}
	lns = append(lns, ln)
	if cfg.tlsListen == "" {
		return lns, nil, nil
	}
	cert := &certificate{certFile: cfg.tlsCert, keyFile: cfg.tlsKey}
	if err := cert.reload(); err != nil {
		return fail(fmt.Errorf("-tls-cert: %w", err))
	}
	ln, err = open("tls-listen", cfg.tlsListen)
	if err != nil {
		return fail(err)
	}
	lns = append(lns, tlsListener(ln, cert))
	log.Info("gateway: telnet over TLS listening", zap.Stringer("addr", ln.Addr()), zap.String("cert", cfg.tlsCert))
	return lns, cert, nil
}

// reload takes a renewed TLS certificate on SIGHUP; a bad one is logged
// and the one in use kept.
func reload(log *zap.Logger, cert *certificate) {
	if cert == nil {
		log.Info("gateway: SIGHUP: nothing to reload")
		return
	}
	if err := cert.reload(); err != nil {
		log.Error("gateway: SIGHUP: certificate not reloaded; keeping the one in use", zap.Error(err))
		return
	}
	log.Info("gateway: SIGHUP: certificate reloaded", zap.String("cert", cert.certFile))
}

// embedRegistry serves the registry on port, on loopback and the addresses
// in list, or returns nil when another epmd already answers there. Port 0
// picks a free port. Registrations come from this host only, so nothing
// needs the registry beyond loopback unless the operator says so: from
// elsewhere it would only tell anyone the games' names and ports.
func embedRegistry(log *zap.Logger, list string, port int) (*epmd.Server, string, error) {
	lns, err := epmd.ListenAddrs(list, port)
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
	actual := lns[0].Addr().(*net.TCPAddr).Port
	for _, ln := range lns {
		go func() {
			if err := reg.Serve(ln); err != nil && !errors.Is(err, epmd.ErrServerClosed) {
				log.Error("gateway: registry stopped", zap.Error(err))
			}
		}()
		log.Info("gateway: registry listening", zap.Stringer("addr", ln.Addr()), zap.Int("port", actual))
	}
	return reg, "127.0.0.1:" + strconv.Itoa(actual), nil
}
