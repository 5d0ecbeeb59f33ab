package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"holdfast/gateway"
	"holdfast/gateway/web"
	"holdfast/internal/cli"
)

// defaultAdmin is where metrics and health are served unless -metrics
// says otherwise: loopback, so that only the operator's own tools reach
// them.
const defaultAdmin = "127.0.0.1:9464"

// maxDrainMessage bounds -drain-message: a notice, read in a player's
// window.
const maxDrainMessage = 1024

// config is everything the gateway is told at start.
type config struct {
	common     cli.Common
	configFile string

	listen, backend string
	embed, mccp     bool
	epmdAddress     string
	debug, metrics  string
	control         string

	maxSessions, maxPerIP, connBurst int
	connRate                         float64
	handshakeTimeout, idleTimeout    time.Duration
	holdIdle                         time.Duration
	shutdownTimeout                  time.Duration
	upgradeTimeout                   time.Duration
	drainTimeout                     time.Duration
	drainMessage                     string

	tlsListen, tlsCert, tlsKey string
	proxyProtocol              string
	proxyFrom                  []string // -proxy-protocol, split and checked

	wsListen, wssListen string
	wsOrigins           string
	wsLinkOrigins       string
	wsForwardedFor      string
	reconnectGrace      time.Duration
	origins             []string       // -ws-origins, split
	linkOrigins         []string       // -ws-link-origins, split and checked
	forwardedFrom       []netip.Prefix // -ws-forwarded-for, split and checked
}

func (c *config) register(fs *flag.FlagSet) {
	c.common.Register(fs)
	fs.StringVar(&c.configFile, "config", "", "file of settings, one \"name = value\" per line (flag names without the dash)")
	fs.StringVar(&c.listen, "listen", ":4000", "telnet address for players")
	fs.StringVar(&c.backend, "backend", "game", "backend name in epmd; NAME@HOST asks the epmd on HOST")
	fs.BoolVar(&c.embed, "embed-epmd", true, "serve the registry on -epmd-port unless an epmd already answers there")
	fs.StringVar(&c.epmdAddress, "epmd-address", os.Getenv("ERL_EPMD_ADDRESS"),
		"comma-separated addresses the embedded registry listens on besides loopback (default from ERL_EPMD_ADDRESS; empty: loopback only)")
	fs.BoolVar(&c.mccp, "mccp", true, "offer MCCP2 output compression to clients")
	fs.StringVar(&c.debug, "debug-addr", "", "serve Go's /debug/pprof on this address (keep it on loopback); empty: off")
	fs.StringVar(&c.metrics, "metrics", defaultAdmin, "address for /metrics and /healthz; empty: off")
	fs.StringVar(&c.control, "control", defaultControl(), "Unix socket for the operator's commands (sessions, log-level, upgrade, drain); empty: off")
	fs.IntVar(&c.maxSessions, "max-sessions", 0, "most sessions held at once; 0: as many as the open-file limit allows")
	fs.IntVar(&c.maxPerIP, "max-per-ip", 64, "most sessions from one client address (an IPv6 one counts as its /64); 0: no limit")
	fs.Float64Var(&c.connRate, "conn-rate", 5, "new connections per second allowed from one client address; 0: no limit")
	fs.IntVar(&c.connBurst, "conn-burst", 20, "connections one client address may open at once before -conn-rate applies")
	fs.DurationVar(&c.handshakeTimeout, "handshake-timeout", 10*time.Second, "time a new connection has for its PROXY header and TLS handshake")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 0, "disconnect a player who types nothing for this long; 0: never")
	fs.DurationVar(&c.holdIdle, "hold-idle", 10*time.Second, "after a player has been this long idle, the backend holds their session without a stream on the link; 0: never")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "time given to telling players and the backend on SIGTERM")
	fs.StringVar(&c.drainMessage, "drain-message", gateway.DefaultDrainMessage, "what 'gateway drain' tells the telnet players, once as it begins and again as it disconnects those left")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 10*time.Minute, "how long 'gateway drain' lets telnet players stay before disconnecting them; 0: at once")
	fs.DurationVar(&c.upgradeTimeout, "upgrade-timeout", 30*time.Second, "time a new gateway binary has to become ready in an upgrade before it is stopped")
	fs.StringVar(&c.tlsListen, "tls-listen", "", "telnet-over-TLS address for players; needs -tls-cert and -tls-key")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate chain for -tls-listen, reloaded on SIGHUP")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key for -tls-listen, reloaded on SIGHUP")
	fs.StringVar(&c.proxyProtocol, "proxy-protocol", "", "comma-separated addresses or CIDRs whose connections start with a PROXY header (v1 or v2)")
	fs.StringVar(&c.wsListen, "ws-listen", "", "HTTP address for browser players: the web client at /, WebSocket at /ws; empty: off")
	fs.StringVar(&c.wssListen, "wss-listen", "", "HTTPS address for browser players (the web client and WebSocket over TLS); needs -tls-cert and -tls-key")
	fs.StringVar(&c.wsOrigins, "ws-origins", "", "comma-separated page origins allowed to open WebSockets besides the gateway's own host (host patterns: play.example.com, *.example.com)")
	fs.StringVar(&c.wsLinkOrigins, "ws-link-origins", "", "comma-separated origins (https://wiki.example.com) that links in the game's output may go to in the web client, shown with their address; empty: no link is live")
	fs.StringVar(&c.wsForwardedFor, "ws-forwarded-for", "", "comma-separated addresses or CIDRs of HTTP proxies whose X-Forwarded-For header names the player")
	fs.DurationVar(&c.reconnectGrace, "reconnect-grace", 5*time.Minute, "how long a browser player's session waits for the page to reconnect after its connection breaks; 0: not at all")
}

// validate checks the settings together, and fills in what depends on
// the machine.
func (c *config) validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("-%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	addr := func(flag, v string, optional bool) {
		if v == "" {
			if !optional {
				bad(flag, "an address is required")
			}
			return
		}
		if _, port, err := net.SplitHostPort(v); err != nil {
			bad(flag, "want host:port, got %q", v)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(flag, "bad port in %q", v)
		}
	}
	addr("listen", c.listen, false)
	addr("tls-listen", c.tlsListen, true)
	addr("ws-listen", c.wsListen, true)
	addr("wss-listen", c.wssListen, true)
	addr("metrics", c.metrics, true)
	addr("debug-addr", c.debug, true)
	if c.common.EPMDPort < 0 || c.common.EPMDPort > 65535 {
		bad("epmd-port", "want 0 to 65535, got %d", c.common.EPMDPort)
	}
	for _, a := range strings.FieldsFunc(c.epmdAddress, func(r rune) bool { return r == ',' || r == ' ' }) {
		if _, err := netip.ParseAddr(a); err != nil {
			bad("epmd-address", "%q is not an IP address", a)
		}
	}
	if c.backend == "" || strings.Count(c.backend, "@") > 1 {
		bad("backend", "want NAME or NAME@HOST, got %q", c.backend)
	}
	for _, n := range []struct {
		flag string
		v    int
	}{{"max-sessions", c.maxSessions}, {"max-per-ip", c.maxPerIP}} {
		if n.v < 0 {
			bad(n.flag, "must not be negative, got %d", n.v)
		}
	}
	if c.connRate < 0 {
		bad("conn-rate", "must not be negative, got %v", c.connRate)
	}
	if c.connBurst < 1 {
		bad("conn-burst", "must be at least 1, got %d", c.connBurst)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"handshake-timeout", c.handshakeTimeout}, {"idle-timeout", c.idleTimeout}, {"hold-idle", c.holdIdle}, {"shutdown-timeout", c.shutdownTimeout}, {"upgrade-timeout", c.upgradeTimeout}, {"reconnect-grace", c.reconnectGrace}, {"drain-timeout", c.drainTimeout}} {
		if d.v < 0 {
			bad(d.flag, "must not be negative, got %v", d.v)
		}
	}
	if c.handshakeTimeout == 0 {
		bad("handshake-timeout", "must be more than zero")
	}
	if c.upgradeTimeout == 0 {
		bad("upgrade-timeout", "must be more than zero")
	}
	switch msg := strings.TrimSpace(c.drainMessage); {
	case msg == "":
		bad("drain-message", "must not be empty")
	case len(msg) > maxDrainMessage:
		bad("drain-message", "at most %d bytes, got %d", maxDrainMessage, len(msg))
	case strings.ContainsFunc(msg, unicode.IsControl):
		bad("drain-message", "one line of text, without control characters")
	}
	secure := c.tlsListen != "" || c.wssListen != ""
	switch {
	case c.tlsListen != "" && (c.tlsCert == "" || c.tlsKey == ""):
		bad("tls-listen", "needs -tls-cert and -tls-key")
	case c.wssListen != "" && (c.tlsCert == "" || c.tlsKey == ""):
		bad("wss-listen", "needs -tls-cert and -tls-key")
	case !secure && (c.tlsCert != "" || c.tlsKey != ""):
		bad("tls-cert", "given without -tls-listen or -wss-listen")
	case secure:
		if _, err := loadCert(c.tlsCert, c.tlsKey); err != nil {
			bad("tls-cert", "%v", err)
		}
	}
	c.proxyFrom = nil
	for _, r := range strings.Split(c.proxyProtocol, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if _, err := netip.ParsePrefix(r); err != nil {
			if _, err := netip.ParseAddr(r); err != nil {
				bad("proxy-protocol", "%q is neither an address nor a CIDR", r)
				continue
			}
		}
		c.proxyFrom = append(c.proxyFrom, r)
	}
	if strings.TrimSpace(strings.ReplaceAll(c.proxyProtocol, ",", "")) == "" && c.proxyProtocol != "" {
		bad("proxy-protocol", "no address or CIDR in %q", c.proxyProtocol)
	}
	c.origins = nil
	for _, o := range strings.Split(c.wsOrigins, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if _, err := path.Match(o, ""); err != nil {
			bad("ws-origins", "bad pattern %q", o)
			continue
		}
		c.origins = append(c.origins, o)
	}
	c.linkOrigins = nil
	for _, o := range strings.Split(c.wsLinkOrigins, ",") {
		if strings.TrimSpace(o) == "" {
			continue
		}
		lo, err := web.ParseLinkOrigin(o)
		if err != nil {
			bad("ws-link-origins", "%v", err)
			continue
		}
		c.linkOrigins = append(c.linkOrigins, lo)
	}
	c.forwardedFrom = nil
	for _, r := range strings.Split(c.wsForwardedFor, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		p, err := netip.ParsePrefix(r)
		if err != nil {
			a, aerr := netip.ParseAddr(r)
			if aerr != nil {
				bad("ws-forwarded-for", "%q is neither an address nor a CIDR", r)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.forwardedFrom = append(c.forwardedFrom, p.Masked())
	}
	if c.maxSessions == 0 {
		c.maxSessions = sessionsForFiles()
	}
	return errors.Join(errs...)
}

// sessionsForFiles is how many sessions the open-file limit leaves room
// for: each takes one descriptor, and the gateway keeps some for its
// listeners, the registry, the backend link and the admin server. Past
// it, players would be refused by accept failing, without a word.
func sessionsForFiles() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 0
	}
	return max(1, int(lim.Cur)-64)
}
