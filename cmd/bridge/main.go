// Command bridge puts an existing telnet game server, unmodified, behind a
// holdfast gateway: it registers like any backend, and carries each player
// over a connection of the player's own to the game at -upstream,
// answering the game's negotiation from what the gateway knows of the
// player's client. When the game restarts, the players stay connected to
// the gateway and find the game's welcome again when it is back.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"go.uber.org/zap"

	"holdfast/backend"
	"holdfast/bridge"
	"holdfast/epmd"
	"holdfast/internal/cli"
	"holdfast/internal/systemd"
)

func main() {
	var (
		common     cli.Common
		upstream   = flag.String("upstream", "", "the game's telnet address, HOST:PORT (required)")
		proxy      = flag.String("upstream-proxy", "", "send a PROXY header of this version (v1 or v2) first on each connection to the game, with the player's address")
		name       = flag.String("name", backend.DefaultName, "name to register in epmd")
		listen     = flag.String("listen", "127.0.0.1:0", "address for the gateway's link")
		orphan     = flag.Duration("orphan-timeout", backend.DefaultOrphanTimeout, "how long a player whose gateway is gone waits for it to come back before leaving the game")
		kept       = flag.Duration("kept-timeout", backend.DefaultKeptTimeout, "how long a browser player whose gateway is gone waits to come back through another gateway (at least -orphan-timeout)")
		take       = flag.Bool("takeover", false, "take the players over from the bridge running under -name (a deploy without a pause)")
		connecting = flag.Int("max-connecting", bridge.DefaultMaxConnecting, "connections to the game being opened at once, at most (negative: no bound)")
		retryMax   = flag.Duration("retry-max", bridge.DefaultRetryMax, "longest wait between a player's attempts to reach a game that is down")
		notice     = flag.String("notice", bridge.DefaultNotice, "what a player is told when the game cannot be reached")
		msspEvery  = flag.Duration("mssp-interval", bridge.DefaultMSSPInterval, "how often to ask the game for its MSSP variables (negative: never)")
		handover   = flag.String("handover", "", "Unix socket where a deploy's successor takes the connections to the game over (\"@name\" is abstract; default one per user, registry port and -name; \"none\": a deploy reconnects the players)")
	)
	common.Register(flag.CommandLine)
	flag.Parse()
	if flag.NArg() > 0 {
		cli.Fatal("bridge", fmt.Errorf("unexpected arguments: %q", flag.Args()))
	}
	if _, _, err := net.SplitHostPort(*upstream); err != nil {
		cli.Fatal("bridge", fmt.Errorf("-upstream: want the game's HOST:PORT, not %q", *upstream))
	}
	version := 0
	switch *proxy {
	case "":
	case "v1", "1":
		version = 1
	case "v2", "2":
		version = 2
	default:
		cli.Fatal("bridge", fmt.Errorf("-upstream-proxy: want v1 or v2, not %q", *proxy))
	}
	log, err := common.Logger()
	if err != nil {
		cli.Fatal("bridge", err)
	}
	cookie, err := common.Cookie()
	if err != nil {
		cli.Fatal("bridge", err)
	}

	switch *handover {
	case "":
		*handover = defaultHandover(common.EPMDPort, *name)
	case "none":
		*handover = ""
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b := &bridge.Bridge{
		Upstream:      *upstream,
		ProxyHeader:   version,
		MaxConnecting: *connecting,
		RetryMax:      *retryMax,
		Notice:        *notice,
		MSSPInterval:  *msspEvery,
		HandoverAddr:  *handover,
		Logger:        log,
	}
	cfg := backend.Config{Name: *name, ListenAddr: *listen, EPMD: common.EPMDAddr(), Cookie: cookie, Logger: log,
		OrphanTimeout: *orphan, KeptTimeout: *kept, Takeover: *take}
	l, err := backend.ListenRetrying(ctx, cfg)
	if errors.Is(err, epmd.ErrRefused) {
		cli.Fatal("bridge", fmt.Errorf("the name %q is taken: a backend is running under it; start this one with -takeover to take its players over", *name))
	}
	if err != nil {
		return // interrupted before the registry answered
	}
	if *take {
		// Before Ready: the gateway starts moving the players at Ready,
		// and each must find its connection to the game here.
		if err := b.TakeOver(ctx); err != nil {
			log.Warn("bridge: the players will get new connections to the game", zap.Error(err))
		}
	}
	if err := l.ReadyRetrying(ctx); err != nil {
		l.Close()
		if ctx.Err() != nil {
			return // interrupted before the registry answered
		}
		cli.Fatal("bridge", err)
	}
	log.Info("bridge: registered", zap.String("name", *name), zap.Stringer("addr", l.Addr()),
		zap.String("upstream", *upstream), zap.Bool("takeover", *take))
	if *take {
		readyAsSuccessor()
	} else {
		systemd.Ready()
	}
	reloadOnSignal(log, *take)

	served := cli.ShutdownOnSignal(ctx, log, "bridge", l)
	err = b.Serve(l)
	served() // handed over to a successor, or shut down: the players are not here
	// The listener has stopped: its sessions are detached or gone, and
	// each bridged session ends by itself and closes its connection to
	// the game.
	sctx, cancel := context.WithTimeout(context.Background(), cli.ShutdownTimeout)
	b.Shutdown(sctx)
	cancel()
	l.Close()
	if err != nil && !errors.Is(err, bridge.ErrServerClosed) {
		log.Info("bridge: stopped", zap.Error(err))
	}
}

// defaultHandover is the handover socket of the bridges registered as
// name on the registry at epmdPort by this user: abstract on Linux, so
// that nothing is left behind; a file in the temporary directory elsewhere.
func defaultHandover(epmdPort int, name string) string {
	base := fmt.Sprintf("holdfast-bridge-%d-%d-%s", os.Getuid(), epmdPort, name)
	if runtime.GOOS == "linux" {
		return "@" + base
	}
	return filepath.Join(os.TempDir(), base+".sock")
}

func init() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: bridge -upstream HOST:PORT [flags]\n\nCarries each player of a holdfast gateway to an existing telnet game.\n\n")
		flag.PrintDefaults()
	}
}
