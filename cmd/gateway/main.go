// Command gateway holds players' telnet sessions and carries them to a
// restartable backend that it finds by name in epmd.
//
//	gateway [flags]                  serve players
//	gateway sessions [-json]         list the sessions a running gateway holds
//	gateway log-level [LEVEL]        print or change a running gateway's log level
//	gateway upgrade                  replace a running gateway with the binary at its path
//	gateway drain                    empty a running gateway for maintenance; it exits
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
	"holdfast/gateway/web"
	"holdfast/internal/cli"
	"holdfast/internal/systemd"
	"holdfast/internal/upgrade"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		tools := map[string]func([]string) error{
			"sessions":  func(a []string) error { return runSessions(a, os.Stdout) },
			"log-level": func(a []string) error { return runLogLevel(a, os.Stdout) },
			"upgrade":   func(a []string) error { return runUpgrade(a, os.Stdout) },
			"drain":     func(a []string) error { return runDrain(a, os.Stdout) },
		}
		if tool := tools[os.Args[1]]; tool != nil {
			if err := tool(os.Args[2:]); err != nil {
				cli.Fatal("gateway "+os.Args[1], err)
			}
			return
		}
		if os.Args[1] == "-version" || os.Args[1] == "--version" {
			fmt.Println(version)
			return
		}
	}
	// A gateway started by an upgrade reports to the one it takes over from.
	pred, err := upgrade.FromEnv()
	if err != nil {
		cli.Fatal("gateway", err)
	}
	// Settings it cannot start with: status 2, as for a usage error.
	fail := func(code int, err error) {
		if code == 2 {
			err = fmt.Errorf("configuration: %w", err)
		}
		if pred != nil {
			pred.Failed(err)
		}
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		os.Exit(code)
	}
	var cfg config
	cfg.register(flag.CommandLine)
	if err := cli.Configure(flag.CommandLine, os.Args[1:], "HOLDFAST", os.Environ()); err != nil {
		fail(2, err)
	}
	if err := cfg.validate(); err != nil {
		fail(2, err)
	}
	log, err := cfg.common.Logger()
	if err != nil {
		fail(2, err)
	}
	cookie, err := cfg.common.Cookie()
	if err != nil {
		fail(1, err)
	}
	if err := run(log, &cfg, cookie, pred); err != nil {
		if pred != nil {
			pred.Failed(err)
		}
		log.Error("gateway: stopped", zap.Error(err))
		os.Exit(1)
	}
}

func run(log *zap.Logger, cfg *config, cookie []byte, pred *upgrade.Predecessor) error {
	// Early, so that a reload asked for while starting does not kill the
	// gateway (SIGHUP's default action).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	socks, err := inheritSockets()
	if err != nil {
		return err
	}
	defer socks.closeUnused()
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
		HoldIdle:         cfg.holdIdle,
		Metrics:          metrics,
		DrainMessage:     cfg.drainMessage,
		DrainTimeout:     cfg.drainTimeout,
	}
	if cfg.holdIdle == 0 {
		gw.HoldIdle = -1 // the flag's 0 is "never"; the field's is the default
	}
	if cfg.drainTimeout == 0 {
		gw.DrainTimeout = -1 // the flag's 0 is "at once"; the field's is the default
	}
	if pred != nil {
		gw.PreferBackend = pred.Backend
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var reg *registry
	if cfg.embed {
		reg, err = embedRegistry(log, socks, cfg.epmdAddress, cfg.common.EPMDPort, pred == nil)
		if err != nil {
			return err
		}
		if reg != nil {
			gw.Registry, gw.EPMD = reg.srv, reg.addr
			closers = append(closers, func() { reg.srv.Close() })
		}
	}
	parts := &gatewayParts{log: log, gw: gw, socks: socks, reg: reg}
	up := newUpgrader(log, parts, cfg.upgradeTimeout)

	// What serves players and operators: opened (or inherited) now, served
	// at once, or, taking over from a predecessor, once it lets go.
	var serve []func()
	for _, h := range []struct {
		name, addr string
		open       func() (net.Listener, error)
		start      func(net.Listener) *http.Server
	}{
		{"metrics", cfg.metrics, tcpOpener("metrics", cfg.metrics), func(ln net.Listener) *http.Server {
			return serveAdmin(log, ln, gw, metrics)
		}},
		{"debug", cfg.debug, tcpOpener("debug-addr", cfg.debug), func(ln net.Listener) *http.Server { return serveDebug(log, ln) }},
		{"control", cfg.control, func() (net.Listener, error) { return listenControl(cfg.control) }, func(ln net.Listener) *http.Server {
			return serveControl(log, ln, gw, cfg.common.Level, up)
		}},
	} {
		if h.addr == "" {
			continue
		}
		ln, err := socks.listen(h.name, h.addr, h.open)
		if err != nil {
			return err
		}
		serve = append(serve, func() {
			srv := h.start(ln)
			up.servers = append(up.servers, srv)
			closers = append(closers, func() { srv.Close() })
		})
	}
	lns, cert, err := listen(log, cfg, socks)
	if err != nil {
		return err
	}
	var arrived func() // called once no more sessions come from the old process
	wl, httpLns, err := listenWeb(log, cfg, socks, cert, metrics, gw)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return err
	}
	if wl != nil {
		// After the gateway has closed: its players' WebSockets finish
		// closing, within the library's handshake timeout and a margin.
		closers = append(closers, func() {
			done := make(chan struct{})
			go func() { wl.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				log.Warn("gateway: browser connections still closing at exit")
			}
		})
		gw.Reconnect = wl.Restore
		if pred != nil {
			// Browsers reconnect to this process as their sessions move.
			wl.ExpectArrivals()
			arrived = wl.ArrivalsDone
		}
		lns = append(lns, wl)
		serve = append(serve, func() {
			for _, ln := range httpLns {
				go wl.Serve(ln)
			}
		})
	}
	served := make(chan error, len(lns))
	serve = append(serve, func() {
		log.Info("gateway: telnet listening", zap.Stringer("addr", lns[0].Addr()), zap.String("backend", cfg.backend),
			zap.String("epmd", gw.EPMD), zap.Strings("proxy_protocol_from", cfg.proxyFrom),
			zap.Int("max_sessions", cfg.maxSessions), zap.String("version", version))
		for _, ln := range lns {
			go func() { served <- gw.Serve(ln) }()
		}
	})
	startServing := func() {
		for _, f := range serve {
			f()
		}
	}
	if pred != nil {
		if err := takeOver(pred, parts, startServing, arrived); err != nil {
			return err
		}
	} else {
		startServing()
		systemd.Ready()
	}
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				reload(log, cert)
				continue
			case syscall.SIGUSR2:
				if gw.DrainStatus().Draining {
					log.Warn("gateway: SIGUSR2: no upgrade while draining")
					continue
				}
				go func() {
					if _, err := up.upgrade(); err == nil {
						up.leave()
					}
				}()
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
			if errors.Is(err, gateway.ErrServerClosed) {
				continue // handed to the new process of an upgrade
			}
			gw.Close()
			return err
		case <-up.done:
			up.retire()
			return nil
		case <-gw.Emptied():
			log.Info("gateway: drained; exiting")
			systemd.Stopping()
			for _, srv := range up.servers {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				srv.Shutdown(ctx) // the drain's last word goes out to the command
				cancel()
			}
			gw.Close()
			return nil
		}
	}
}

// tcpOpener opens a TCP listener for a flag's address.
func tcpOpener(flag, addr string) func() (net.Listener, error) {
	return func() (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", flag, err)
		}
		return ln, nil
	}
}

// listen opens the telnet listeners: plain, and TLS when asked for, each
// expecting PROXY headers from the configured sources.
func listen(log *zap.Logger, cfg *config, socks *sockets) ([]net.Listener, *certificate, error) {
	var lns []net.Listener
	fail := func(err error) ([]net.Listener, *certificate, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, nil, err
	}
	open := func(flag, addr string) (net.Listener, error) {
		ln, err := socks.listen(flag, addr, tcpOpener(flag, addr))
		if err != nil {
			return nil, err
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
	if cfg.tlsListen == "" && cfg.wssListen == "" {
		return lns, nil, nil
	}
	cert := &certificate{certFile: cfg.tlsCert, keyFile: cfg.tlsKey}
	if cfg.tlsCert != "" {
		if err := cert.reload(); err != nil {
			return fail(fmt.Errorf("-tls-cert: %w", err))
		}
	}
	if cfg.tlsListen == "" {
		return lns, cert, nil // for -wss-listen
	}
	ln, err = open("tls-listen", cfg.tlsListen)
	if err != nil {
		return fail(err)
	}
	lns = append(lns, tlsListener(ln, cert))
	log.Info("gateway: telnet over TLS listening", zap.Stringer("addr", ln.Addr()), zap.String("cert", cfg.tlsCert))
	return lns, cert, nil
}

// listenWeb opens the listeners for browser players, plain and TLS, each
// expecting PROXY headers from the configured sources, and the web
// listener that serves them. It returns a nil listener when neither is
// asked for.
func listenWeb(log *zap.Logger, cfg *config, socks *sockets, cert *certificate, metrics prometheus.Registerer, gw *gateway.Server) (*web.Listener, []net.Listener, error) {
	if cfg.wsListen == "" && cfg.wssListen == "" {
		return nil, nil, nil
	}
	grace := cfg.reconnectGrace
	if grace == 0 {
		grace = -1 // the flag's 0 is "not at all"; the field's is the default
	}
	wl := &web.Listener{
		Metrics:          metrics,
		Origins:          cfg.origins,
		LinkOrigins:      cfg.linkOrigins,
		Grace:            grace,
		ForwardedFrom:    cfg.forwardedFrom,
		HandshakeTimeout: cfg.handshakeTimeout,
		Logger:           log,
		Admission:        webAdmission{gw},
	}
	var lns []net.Listener
	for _, l := range []struct {
		flag, addr string
		tls        bool
	}{{"ws-listen", cfg.wsListen, false}, {"wss-listen", cfg.wssListen, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := socks.listen(l.flag, l.addr, tcpOpener(l.flag, l.addr))
		if err == nil {
			var pl net.Listener
			if pl, err = withProxy(ln, cfg.proxyFrom, cfg.handshakeTimeout); err != nil {
				ln.Close()
			}
			ln = pl
		}
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return nil, nil, err
		}
		// The limits apply before the TLS handshake and the request.
		ln = wl.Gate(ln, l.tls)
		if l.tls {
			ln = tlsListener(ln, cert)
		}
		log.Info("gateway: web client listening", zap.String("url", webURL(ln.Addr(), l.tls)))
		lns = append(lns, ln)
	}
	return wl, lns, nil
}

// webAdmission is the gateway's admission, asked by the web listener
// before each cost a browser's connection brings.
type webAdmission struct{ gw *gateway.Server }

func (a webAdmission) AdmitConnection(remote net.Addr) (web.Admission, error) {
	p, err := a.gw.AdmitConnection(remote)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (a webAdmission) AdmitSession(remote net.Addr, paid bool) (web.Admission, error) {
	p, err := a.gw.AdmitSession(remote, paid)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// webURL is where a player on this machine finds the web client.
func webURL(a net.Addr, secure bool) string {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return scheme + "://" + a.String() + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
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

// registry is the registry this gateway embeds.
type registry struct {
	srv  *epmd.Server
	addr string // where to ask it
	lns  []net.Listener
}

// serve starts serving on every listener.
func (r *registry) serve(log *zap.Logger) {
	for _, ln := range r.lns {
		go func() {
			if err := r.srv.Serve(ln); err != nil && !errors.Is(err, epmd.ErrServerClosed) {
				log.Error("gateway: registry stopped", zap.Error(err))
			}
		}()
		log.Info("gateway: registry listening", zap.Stringer("addr", ln.Addr()), zap.Int("port", ln.Addr().(*net.TCPAddr).Port))
	}
}

// embedRegistry opens the registry on port, on loopback and the addresses
// in list, or returns nil when another epmd already answers there. Port 0
// picks a free port. Registrations come from this host only, so nothing
// needs the registry beyond loopback unless the operator says so: from
// elsewhere it would only tell anyone the games' names and ports. A
// gateway taking over from another inherits its sockets and serves once
// it has the registrations too; any other serves at once.
func embedRegistry(log *zap.Logger, socks *sockets, list string, port int, serve bool) (*registry, error) {
	lns := socks.inheritedAll("epmd")
	if len(lns) == 0 {
		var err error
		lns, err = epmd.ListenAddrs(list, port)
		if err != nil {
			addr := "127.0.0.1:" + strconv.Itoa(port)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, _, perr := (&epmd.Client{Addr: addr}).Names(ctx); perr == nil {
				log.Info("gateway: an epmd already runs on the port; using it", zap.String("epmd", addr))
				return nil, nil
			}
			return nil, fmt.Errorf("registry: %w", err)
		}
		lns = socks.remember("epmd", list, lns...)
	}
	r := &registry{srv: &epmd.Server{Logger: log}, lns: lns,
		addr: "127.0.0.1:" + strconv.Itoa(lns[0].Addr().(*net.TCPAddr).Port)}
	if serve {
		r.serve(log)
	}
	return r, nil
}
