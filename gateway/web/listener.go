// Package web lets browser players in: it serves the web client page and
// WebSocket connections (RFC 6455), and hands each WebSocket to the gateway
// as a net.Conn carrying telnet, so that a browser player is held like any
// other. A page that opts in gets a resume token, and a broken WebSocket
// comes back to the same session within the grace period.
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"holdfast/internal/netx"
)

// The WebSocket subprotocols, after mudstandards.org's proposal. A client
// that offers none gets the telnet stream.
const (
	// ProtoTelnet carries the whole telnet stream, both ways, in binary
	// messages: a telnet-capable client gets every option the gateway
	// speaks, GMCP included.
	ProtoTelnet = "telnet.mudstandards.org"
	// ProtoTerminal carries UTF-8 text with ANSI colour codes, both ways,
	// in binary messages; no telnet. Each message from the client is a
	// line (or lines).
	ProtoTerminal = "terminal.mudstandards.org"
	// ProtoText is ProtoTerminal in text messages, for the simplest
	// clients: every message is whole UTF-8.
	ProtoText = "text.holdfast"
)

var protocols = []string{ProtoTelnet, ProtoTerminal, ProtoText}

// ErrClosed is returned by Accept after Close.
var ErrClosed = errors.New("web: listener closed")

// Defaults for the Listener's zero fields.
const (
	defaultGrace            = 5 * time.Minute
	defaultHandshakeTimeout = 10 * time.Second
	defaultMaxMessage       = 64 << 10
	defaultMaxReplay        = 256 << 10
)

// Close codes the page acts on (RFC 6455 keeps 4000-4999 for applications).
const (
	closeUnknownToken = 4404 // nothing to resume: start again
	closeTooMany      = 4429 // too many failed resumes from this address
	closeReplaced     = 4409 // the same session was resumed elsewhere
)

// Listener serves the web client and WebSocket players on the listeners
// given to Serve, and is itself the net.Listener the gateway serves: each
// Accept returns one new player. The zero value is ready to use.
type Listener struct {
	// Origins lists the page origins allowed besides the gateway's own
	// host, as host patterns ("play.example.com", "*.example.com"), or
	// "scheme://host" patterns. Browsers send Origin; a WebSocket from
	// any other origin is refused with 403.
	Origins []string
	// LinkOrigins lists the origins ("https://wiki.example.com", see
	// ParseLinkOrigin) whose addresses the web client makes live links
	// of, where the game's output carries OSC 8 hyperlinks: each opens in
	// a new tab with rel=noopener, its address shown beside its text.
	// Empty, no link is live: its text is shown plain.
	LinkOrigins []string
	// Grace is how long a resumable session waits for its page after the
	// WebSocket breaks. Zero means 5 minutes; negative, not at all.
	Grace time.Duration
	// ForwardedFrom lists the proxies whose X-Forwarded-For is believed;
	// from anybody else it is ignored.
	ForwardedFrom []netip.Prefix
	// HandshakeTimeout bounds the HTTP request and, for a resumable page,
	// its first message. Zero means 10 s.
	HandshakeTimeout time.Duration
	// MaxMessage bounds one message from a client; a larger one closes the
	// WebSocket with 1009. Zero means 64 KiB.
	MaxMessage int64
	// MaxReplay bounds the output kept for a page that has not
	// acknowledged it, or is away. Zero means 256 KiB.
	MaxReplay int
	// Admission, if set, is asked before each cost a connection brings
	// (see Admitter and Gate): the gateway's limits apply before it is
	// paid. Nil admits every player here, and the gateway counts them
	// when it accepts them.
	Admission Admitter
	// Logger receives events. Tokens and player input are never logged.
	Logger *zap.Logger
	// Metrics, if set, has the listener's Prometheus metrics registered
	// in it at first use.
	Metrics prometheus.Registerer

	once    sync.Once
	ctx     context.Context
	cancel  context.CancelFunc
	accepts chan *Conn
	mu      sync.Mutex
	servers []*http.Server
	addr    net.Addr
	tokens  map[string]*Conn // by the token's hash
	// movedOut holds the token hashes of the pages whose sessions moved,
	// or are moving, to another process in an upgrade: one that comes back
	// here once its Conn has gone (the processes share the listening
	// socket until this one stops) is sent on to it.
	movedOut map[string]struct{}
	fails    map[netip.Addr]*failures
	// nextPurge is when the failures may next be swept for expired ones.
	nextPurge time.Time
	// arriving is set while sessions arrive from another process; arrival
	// is closed and replaced at each.
	arriving bool
	arrival  chan struct{}
	metrics  *metrics
	index    []byte // the page, with LinkOrigins
	// running counts the goroutines of connections: their closing
	// handshakes (a Conn has no reader of its own).
	running sync.WaitGroup
	waited  bool // Wait has begun: nothing more is counted
}

func (l *Listener) init() {
	l.once.Do(func() {
		l.ctx, l.cancel = context.WithCancel(context.Background())
		l.accepts = make(chan *Conn)
		l.tokens = make(map[string]*Conn)
		l.fails = make(map[netip.Addr]*failures)
		l.metrics = newMetrics()
		var origins []string
		for _, o := range l.LinkOrigins {
			if o, err := ParseLinkOrigin(o); err == nil {
				origins = append(origins, o)
			} else {
				l.log().Error("web: link origin ignored", zap.Error(err))
			}
		}
		l.index = indexPage(origins)
		if l.Metrics != nil {
			for _, c := range l.metrics.collectors() {
				if err := l.Metrics.Register(c); err != nil {
					l.log().Error("web: metrics not registered", zap.Error(err))
				}
			}
		}
	})
}

func (l *Listener) log() *zap.Logger {
	if l.Logger == nil {
		return zap.NewNop()
	}
	return l.Logger
}

func (l *Listener) grace() time.Duration {
	if l.Grace == 0 {
		return defaultGrace
	}
	return l.Grace
}

func (l *Listener) handshakeTimeout() time.Duration {
	if l.HandshakeTimeout <= 0 {
		return defaultHandshakeTimeout
	}
	return l.HandshakeTimeout
}

func (l *Listener) maxMessage() int64 {
	if l.MaxMessage <= 0 {
		return defaultMaxMessage
	}
	return l.MaxMessage
}

func (l *Listener) maxReplay() int {
	if l.MaxReplay <= 0 {
		return defaultMaxReplay
	}
	return l.MaxReplay
}

// Serve serves HTTP on ln until Close. It may be called for several
// listeners (plain and TLS); it closes ln.
func (l *Listener) Serve(ln net.Listener) error {
	l.init()
	srv := &http.Server{
		Handler:           l,
		ReadHeaderTimeout: l.handshakeTimeout(),
		ReadTimeout:       l.handshakeTimeout(),
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          zap.NewStdLog(l.log()),
		ConnContext:       connContext,
		ConnState:         connState,
	}
	l.mu.Lock()
	if l.ctx.Err() != nil {
		l.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	l.servers = append(l.servers, srv)
	if l.addr == nil {
		l.addr = ln.Addr()
	}
	l.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrClosed
	}
	return err
}

// Accept waits for the next browser player.
func (l *Listener) Accept() (net.Conn, error) {
	l.init()
	select {
	case c := <-l.accepts:
		c.mu.Lock()
		c.accepted = true
		c.mu.Unlock()
		return c, nil
	case <-l.ctx.Done():
		return nil, ErrClosed
	}
}

// Close stops serving pages and accepting players. Players already
// accepted stay: their connections are the gateway's to close.
func (l *Listener) Close() error {
	l.init()
	l.mu.Lock()
	l.cancel()
	servers := l.servers
	l.servers = nil
	l.mu.Unlock()
	for _, srv := range servers {
		srv.Close() // hijacked WebSockets are not closed by it
	}
	return nil
}

// spawn runs f on a goroutine that Wait waits for, unless Wait has begun.
func (l *Listener) spawn(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waited {
		go f() // a connection that came as the gateway closed: it ends with it
		return
	}
	l.running.Go(f)
}

// Wait waits, after Close and after the gateway has closed its players'
// connections, for the goroutines those connections still run: each
// closing handshake ends within closeWait.
func (l *Listener) Wait() {
	l.init()
	l.mu.Lock()
	l.waited = true
	l.mu.Unlock()
	l.running.Wait()
}

// Addr is the first address served, once Serve has started.
func (l *Listener) Addr() net.Addr {
	l.init()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addr == nil {
		return netx.Addr("web")
	}
	return l.addr
}

// ServeHTTP serves the page at / and WebSockets at /ws.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.init()
	if r.URL.Path == "/ws" {
		l.serveWebSocket(w, r)
		return
	}
	l.servePage(w, r)
}

// clientAddr is the player's address: the peer's, or, from a trusted
// proxy, the last address X-Forwarded-For names that is not another
// trusted proxy.
func (l *Listener) clientAddr(r *http.Request) net.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netx.Addr(r.RemoteAddr)
	}
	if !l.trusted(peer.Addr()) {
		return net.TCPAddrFromAddrPort(peer)
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a garbled header: believe the proxy itself
		}
		a = a.Unmap().WithZone("") // a zone names an interface here, not the player's
		if !l.trusted(a) {
			return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
		}
	}
	return net.TCPAddrFromAddrPort(peer)
}

func (l *Listener) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l.ForwardedFrom {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hello is a resumable page's first message: a new session, or the token
// of the one to resume and how much of its output the page has had.
type hello struct {
	Resume string `json:"resume"`
	Got    uint64 `json:"got"`
	// Session, In and Out, from a page that may have been on another
	// gateway: its session's id, where the typing it kept starts, and how
	// much of the game's output it has (counted as the game writes it:
	// the gateway encodes each byte as one unit for such a page).
	Session string `json:"session"`
	In      uint64 `json:"in"`
	Out     uint64 `json:"out"`
}

// control is what the gateway tells a resumable page, in text messages.
type control struct {
	Token   string `json:"token"`
	Resumed bool   `json:"resumed,omitempty"`
	Missed  uint64 `json:"missed,omitempty"` // output lost to the replay bound
	// Received, on a resume, counts the bytes of the page's input messages
	// the session has: the page sends the messages after them again.
	Received uint64 `json:"received"`
	// Elsewhere, on a resume, says that the session was claimed from
	// another gateway: a new connection to it, whose telnet starts again,
	// and the page sends what it typed after In again.
	Elsewhere bool `json:"elsewhere,omitempty"`
	// Session names the page's session, In the input the game has.
	Session string `json:"session,omitempty"`
	In      uint64 `json:"in,omitempty"`
}

// maxControl bounds a control message from the page.
const maxControl = 512

func (l *Listener) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	remote := l.clientAddr(r)
	q := r.URL.Query()
	// A page that says it comes back to its session (resume) has its
	// place already; any other takes one now, before the upgrade.
	resume := q.Has("hold") && q.Has("resume") && l.grace() > 0
	var adm Admission
	if resume {
		if !l.mayTry(addrOf(remote), time.Now()) {
			l.metrics.refused.WithLabelValues("rate_limited").Inc()
			http.Error(w, "too many attempts; wait a minute", http.StatusTooManyRequests)
			return
		}
	} else if l.Admission != nil {
		a, err := l.Admission.AdmitSession(remote, paidConn(r))
		if err != nil {
			w.Header().Set("Retry-After", "5")
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		adm = a
	}
	release := func() {
		if adm != nil {
			adm.Release()
		}
	}
	ws, proto, err := upgrade(w, r, protocols, l.Origins, l.maxMessage())
	if err != nil {
		release()
		l.log().Info("web: WebSocket refused", zap.Stringer("client", remote), zap.Error(err))
		return
	}
	if proto == "" {
		proto = ProtoTelnet
	}
	c := &Conn{
		l:         l,
		proto:     proto,
		resumable: q.Has("hold") && proto != ProtoText && l.grace() > 0,
		local:     localAddr(r),
		remote:    remote,
		tls:       r.TLS != nil,
		adm:       adm,
	}
	if resume && !c.resumable {
		// Admitted as a returning page, it could not be one: on the text
		// protocol no session is resumed.
		l.closeWS(ws, statusPolicy, "resume needs ?hold on a binary protocol")
		return
	}
	if proto != ProtoTelnet {
		c.term = &terminal{client: clientName(q.Get("client")), text: proto == ProtoText}
		c.term.width, c.term.height = size(q.Get("cols")), size(q.Get("rows"))
		if c.term.width == 0 || c.term.height == 0 {
			c.term.width, c.term.height = 0, 0
		}
	}
	if c.resumable {
		h, err := readHello(ws, time.Now().Add(l.handshakeTimeout()))
		if err != nil {
			release()
			l.log().Info("web: no hello from a resumable page", zap.Stringer("client", remote), zap.Error(err))
			l.closeWS(ws, statusPolicy, "expected a hello")
			return
		}
		if h.Resume != "" {
			release() // its session has its place
			if l.resume(ws, remote, h) {
				return
			}
			// Its session is on another gateway, or was: claimed from the
			// backend, which checks the token, it takes a place here.
			if adm, err = l.admitClaim(remote, r); err != nil {
				l.closeWS(ws, statusTryAgain, err.Error())
				return
			}
			c.adm = adm
			c.claim = &claim{session: h.Session, token: h.Resume, in: h.In, out: h.Out}
		} else if resume {
			l.closeWS(ws, statusPolicy, "expected a resume")
			return
		}
	}
	c.ws = ws
	if c.resumable {
		tok := l.issue(c)
		m := control{Token: tok}
		if c.claim != nil {
			m.Resumed, m.Elsewhere, m.In = true, true, c.claim.in
			l.metrics.resumed.Inc()
			l.log().Info("web: a page back from another gateway claims its session", zap.Stringer("client", remote))
		}
		if err := writeControl(ws, m); err != nil {
			c.Close() // and its place given back
			return
		}
	}
	// The gateway takes the Conn next, and its place within the limits
	// with it (without an Admission, the limits apply there); a gateway
	// that is not accepting (closing) leaves the page to try again.
	t := time.NewTimer(l.handshakeTimeout())
	defer t.Stop()
	select {
	case l.accepts <- c:
	case <-l.ctx.Done():
		c.abandon(statusGoingAway, "the gateway is going away")
	case <-t.C:
		c.abandon(statusTryAgain, "the gateway is busy")
	}
	// The gateway's reader reads the WebSocket from here on, in Read.
}

// closeWS closes a WebSocket that has no Conn, with its closing handshake
// on a goroutine of its own.
func (l *Listener) closeWS(ws *wsConn, code statusCode, why string) {
	l.spawn(func() { ws.closeWith(code, why) })
}

// abandon drops a Conn the gateway never took.
func (c *Conn) abandon(code statusCode, why string) {
	c.mu.Lock()
	ws := c.ws
	c.ws = nil
	c.mu.Unlock()
	c.Close()
	if ws != nil {
		c.l.closeWS(ws, code, why)
	}
}

func readHello(ws *wsConn, deadline time.Time) (hello, error) {
	typ, msg, err := ws.readMessage(deadline)
	if err != nil {
		return hello{}, err
	}
	if typ != opText {
		return hello{}, errors.New("the hello is not a text message")
	}
	return parseHello(msg)
}

func parseHello(msg []byte) (hello, error) {
	var h hello
	if len(msg) > maxControl || !utf8.Valid(msg) {
		return h, errors.New("the hello is not short UTF-8 text")
	}
	err := json.Unmarshal(msg, &h)
	return h, err
}

func writeControl(ws *wsConn, m control) error {
	b, _ := json.Marshal(m)
	return ws.write(opText, b, time.Now().Add(10*time.Second))
}

// control handles a resumable page's message on WebSocket generation gen:
// an acknowledgement of output, or of the token this WebSocket brought.
func (c *Conn) control(gen uint64, msg []byte) {
	var m struct {
		Ack       uint64 `json:"ack"`
		KeptToken bool   `json:"kept_token"`
	}
	if len(msg) > maxControl || json.Unmarshal(msg, &m) != nil {
		return
	}
	if m.Ack > 0 {
		c.ack(m.Ack)
	}
	if m.KeptToken {
		c.keptToken(gen)
	}
}

// keptToken is the page's word that it has the token WebSocket gen
// brought: the one it had before is spent.
func (c *Conn) keptToken(gen uint64) {
	c.mu.Lock()
	if gen != c.gen || c.fresh == "" {
		c.mu.Unlock()
		return
	}
	c.l.forget(c.token)
	c.token, c.fresh = c.fresh, ""
	c.mu.Unlock()
	c.tokensMoved()
}

// resume gives a returning page its session back, or refuses it. It
// reports false, having done nothing, for a page whose token it does not
// know and that names its session: that page claims it from the backend.
func (l *Listener) resume(ws *wsConn, remote net.Addr, h hello) bool {
	ip := addrOf(remote)
	if !l.mayTry(ip, time.Now()) {
		l.metrics.refused.WithLabelValues("rate_limited").Inc()
		l.log().Warn("web: too many failed resumes", zap.Stringer("client", remote))
		l.closeWS(ws, closeTooMany, "too many attempts; wait a minute")
		return true
	}
	c, th := l.lookup(h.Resume)
	// Before a claim: a page whose session this process moved out is sent
	// to where it went, not claimed back into a process that is leaving.
	if c == nil && l.movedAway(h.Resume) {
		l.closeWS(ws, statusRestart, "the gateway is restarting: reconnect")
		return true
	}
	if c == nil && validSessionID(h.Session) {
		return false
	}
	if c == nil {
		l.failed(ip, time.Now())
		l.metrics.refused.WithLabelValues("unknown_token").Inc()
		l.log().Info("web: resume refused: unknown or expired token", zap.Stringer("client", remote))
		l.closeWS(ws, closeUnknownToken, "no such session: it ended, or the token was used")
		return true
	}
	if err := c.attach(ws, th, h.Got); errors.Is(err, errMoving) {
		l.closeWS(ws, statusRestart, "the gateway is restarting: reconnect")
		return true
	} else if err != nil {
		l.closeWS(ws, closeUnknownToken, "no such session: it ended")
		return true
	}
	l.metrics.resumed.Inc()
	l.log().Info("web: player's connection resumed", zap.Stringer("client", remote), zap.Stringer("was", c.remote))
	return true
}

// maxSessionID bounds the session id a page names.
const maxSessionID = 64

// validSessionID reports whether a page names a session id as gateways make
// them (letters, digits and '-'): it goes into the logs and the operator's
// list of sessions as it is.
func validSessionID(id string) bool {
	if id == "" || len(id) > maxSessionID {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// admitClaim takes a place within the limits for a page that claims its
// session from another gateway: here it is a new player.
func (l *Listener) admitClaim(remote net.Addr, r *http.Request) (Admission, error) {
	if l.Admission == nil {
		return nil, nil
	}
	return l.Admission.AdmitSession(remote, paidConn(r))
}

// errMoving is attach's answer while the Conn's session is moving between
// processes: exported here and not thawed (frozen, gone), or restored here
// and not arrived. A new token given then would be one that the process
// the session ends in may never learn. The page is sent on (1012), its
// token unspent, and finds its session wherever the move leaves it.
var errMoving = errors.New("web: the session is moving")

// movingLocked reports whether the Conn's session is moving (errMoving).
func (c *Conn) movingLocked() bool { return c.frozen || c.gone || c.arriving }

// attach makes ws the Conn's WebSocket, for a page that came with the
// token of hash th: the output the page has not had is sent again, with a
// new token. Of the Conn's tokens, th stays good until the page has
// acknowledged the new one, and the other is spent.
func (c *Conn) attach(ws *wsConn, th string, got uint64) error {
	c.mu.Lock()
	if c.movingLocked() {
		if c.arriving && c.ws == nil && !c.closed {
			// The page is there: its grace starts again. (While frozen
			// it waits for the move, and Thaw starts it.)
			c.holdLocked(c.gen)
		}
		c.mu.Unlock()
		return errMoving
	}
	old := c.ws
	c.ws = nil
	c.gen++
	gen := c.gen
	if c.away != nil {
		c.away.Stop()
		c.away = nil
	}
	c.mu.Unlock()
	if old != nil {
		// A connection the page gave up on without the gateway knowing;
		// closing it also frees a writer stuck on it.
		c.l.closeWS(old, closeReplaced, "resumed on another connection")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.movingLocked() && gen == c.gen {
		// Exported since the check above (and maybe moved and closed
		// since): the page waits for its session as after a broken
		// connection, and comes back for it.
		if !c.closed && !c.frozen {
			c.holdLocked(gen)
		}
		c.mu.Unlock()
		return errMoving
	}
	if c.closed || c.ended != nil || gen != c.gen {
		c.mu.Unlock()
		return errors.New("web: the session has ended")
	}
	switch th {
	case c.fresh: // the page had the last one given
		c.l.forget(c.token)
		c.token, c.fresh = th, ""
	case c.token: // the page never had it
		c.l.forget(c.fresh)
		c.fresh = ""
	default: // spent by another resume meanwhile
		c.mu.Unlock()
		return errors.New("web: the token was spent")
	}
	base := c.sent - uint64(len(c.replay))
	from := min(max(got, base), c.sent)
	missed := from - min(got, from)
	data := append([]byte(nil), c.replay[from-base:]...)
	notices := c.notices
	c.notices = nil
	c.replay = c.replay[from-base:]
	c.acked = from
	tok := c.l.issueLocked(c)
	c.ws = ws
	ws.nc.SetReadDeadline(c.rdl)
	c.broadcastLocked()
	wake := c.unparkLocked() // the reader reads the new WebSocket
	typ := c.msgType()
	received := c.received
	session, in := c.session, c.inAcked
	c.mu.Unlock()
	call(wake)
	c.tokensMoved()
	err := writeControl(ws, control{Token: tok, Resumed: true, Missed: missed, Received: received, Session: session, In: in})
	if err == nil && len(data) > 0 {
		err = ws.write(typ, data, time.Now().Add(10*time.Second))
	}
	for err == nil && len(notices) > 0 {
		b, _ := json.Marshal(noticeMsg{Notice: notices[0]})
		if err = ws.write(opText, b, time.Now().Add(10*time.Second)); err == nil {
			notices = notices[1:]
		}
	}
	if err != nil {
		c.mu.Lock()
		for _, n := range notices {
			c.keepNoticeLocked(n) // for the next return
		}
		c.mu.Unlock()
		c.lost(gen, err)
		return nil // held again; the page will try once more
	}
	return nil
}

// issue gives c a new token, to be acknowledged by the page: until then
// the token it had before still resumes it, and any other given before is
// forgotten.
func (l *Listener) issue(c *Conn) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.issueLocked(c)
}

func (l *Listener) issueLocked(c *Conn) string {
	var b [32]byte
	rand.Read(b[:])
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	h := tokenHash(tok)
	l.mu.Lock()
	if c.fresh != "" {
		delete(l.tokens, c.fresh)
	}
	l.tokens[h] = c
	l.mu.Unlock()
	c.fresh = h
	return tok
}

// lookup finds the Conn a token resumes, and the token's hash; the Conn's
// attach decides what the token is still good for. While sessions arrive
// from another process, an unknown token waits for them, within the
// handshake timeout.
func (l *Listener) lookup(tok string) (*Conn, string) {
	h := tokenHash(tok)
	deadline := time.NewTimer(l.handshakeTimeout())
	defer deadline.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if c := l.tokens[h]; c != nil {
			return c, h
		}
		if !l.arriving {
			return nil, ""
		}
		if l.arrival == nil {
			l.arrival = make(chan struct{})
		}
		wait := l.arrival
		l.mu.Unlock()
		select {
		case <-wait:
		case <-deadline.C:
			l.mu.Lock()
			return nil, ""
		}
		l.mu.Lock()
	}
}

// markMoving records, or forgets, the token hashes of a page whose
// session is moving to another process (Export, Thaw).
func (l *Listener) markMoving(moving bool, hashes ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.movedOut == nil {
		l.movedOut = make(map[string]struct{})
	}
	for _, h := range hashes {
		switch {
		case h == "":
		case moving:
			l.movedOut[h] = struct{}{}
		default:
			delete(l.movedOut, h)
		}
	}
}

// movedAway reports whether tok resumed a page whose session moved to
// another process.
func (l *Listener) movedAway(tok string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.movedOut[tokenHash(tok)]
	return ok
}

func (l *Listener) forget(h string) {
	if h == "" {
		return
	}
	l.mu.Lock()
	delete(l.tokens, h)
	l.mu.Unlock()
}

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return string(sum[:])
}

// Failed resumes allowed from one address a minute: a real page fails
// once when its session has ended; a guesser fails forever.
const (
	maxFailures   = 10
	failureWindow = time.Minute
	maxFailTrack  = 10000
)

type failures struct {
	n     int
	since time.Time
}

func (l *Listener) mayTry(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[ip]
	return f == nil || now.Sub(f.since) > failureWindow || f.n < maxFailures
}

func (l *Listener) failed(ip netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[ip]
	if f == nil || now.Sub(f.since) > failureWindow {
		if len(l.fails) >= maxFailTrack && now.After(l.nextPurge) {
			// At most now and then: under a flood of guessers it would
			// otherwise go through every entry at every guess.
			l.nextPurge = now.Add(failureWindow / 10)
			for k, v := range l.fails {
				if now.Sub(v.since) > failureWindow {
					delete(l.fails, k)
				}
			}
		}
		for k := range l.fails {
			if len(l.fails) < maxFailTrack {
				break
			}
			delete(l.fails, k) // many guessers at once: the bound holds, some are forgotten early
		}
		f = &failures{since: now}
		l.fails[ip] = f
	}
	f.n++
}

// addrOf is what the failed resumes are counted by: the address, or an
// IPv6 client's /64, which one client has whole, as the gateway's limits
// count it.
func addrOf(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip, _ := netip.AddrFromSlice(ta.IP)
	if ip = ip.Unmap(); ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

func localAddr(r *http.Request) net.Addr {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a
	}
	return netx.Addr("")
}

// clientName keeps a page's client name printable and short.
func clientName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r > 0x7e {
			return -1
		}
		return r
	}, s)
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" {
		return "WebSocket"
	}
	return s
}

// size reads a window dimension the page gave; anything odd is none.
func size(s string) uint16 {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0
	}
	return uint16(n)
}
