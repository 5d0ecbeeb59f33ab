package epmd

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/netx"
)

const (
	defaultIdleTimeout  = 60 * time.Second
	defaultWriteTimeout = 10 * time.Second
	defaultMaxRemote    = 64
	defaultRemotePerIP  = 8
	defaultRemoteTime   = 5 * time.Second
	rememberedNames     = 1000
	errorCreation       = 99
)

// Server is an EPMD registry. The zero value is ready to Serve; it may serve
// several listeners at once and be embedded in another process.
type Server struct {
	// Logger receives connection-level events. Nil logs nothing.
	Logger *zap.Logger
	// Port is the port number reported in NAMES and DUMP answers. Zero means
	// the port of the listener the request arrived on.
	Port int
	// IdleTimeout bounds how long a connection may take to send its request.
	// Zero means 60 s, as Erlang's epmd; negative means no limit. It never
	// applies to a live registration.
	IdleTimeout time.Duration
	// MaxRemote bounds the connections open at once from other hosts
	// (peers that are not this host: they may only ask for names and
	// ports); past it a new one is closed at once, unanswered. Zero means
	// 64; negative, no bound. Connections from this host, registrations
	// among them, are never counted.
	MaxRemote int
	// MaxRemotePerIP bounds the connections open at once from one other
	// host, as MaxRemote does. Zero means 8; negative, no bound.
	MaxRemotePerIP int
	// RemoteTimeout bounds the whole life of a connection from another
	// host: its request and the answer. Zero means 5 s; negative, only
	// IdleTimeout applies.
	RemoteTimeout time.Duration
	// Relaxed allows STOP, and KILL with live nodes, as Erlang's
	// -relaxed_command_check.
	Relaxed bool
	// OnKill is called once the server has answered a KILL request with OK;
	// the daemon stops there. Nil refuses KILL with NO: a registry embedded
	// in another process is not for a client to stop.
	OnKill func()

	mu        sync.Mutex
	nodes     map[string]*registration
	seq       uint64
	known     map[string]*knownName
	order     []string // remembered names, oldest first
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	remote    map[net.Conn]string // the connections from other hosts, by peer address
	perRemote map[string]int
	changed   chan struct{}
	closing   bool
	exporting bool // the registrations are going to another process
	wg        sync.WaitGroup
}

type registration struct {
	node     Node
	conn     net.Conn
	fd       int
	creation uint32
	seq      uint64
}

// knownName is what the registry remembers of a name, registered or not.
type knownName struct {
	creation uint32
	port     uint16
	fd       int
}

func (s *Server) logger() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func (s *Server) maxRemote() int               { return orDefault(s.MaxRemote, defaultMaxRemote) }
func (s *Server) maxRemotePerIP() int          { return orDefault(s.MaxRemotePerIP, defaultRemotePerIP) }
func (s *Server) remoteTimeout() time.Duration { return orDefault(s.RemoteTimeout, defaultRemoteTime) }

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout == 0 {
		return defaultIdleTimeout
	}
	return s.IdleTimeout
}

// Serve accepts connections on ln until Close or Shutdown, and then returns
// ErrServerClosed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if netx.RetryableAccept(err) {
				delay = netx.Backoff(delay, 5*time.Millisecond, time.Second)
				time.Sleep(delay)
				continue
			}
			s.mu.Lock()
			delete(s.listeners, ln)
			s.mu.Unlock()
			return err
		}
		delay = 0
		switch s.track(c) {
		case trackClosing:
			c.Close()
			return ErrServerClosed
		case trackRefused:
			s.logger().Debug("epmd: too many connections from other hosts; refused", zap.Stringer("peer", c.RemoteAddr()))
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // nothing to say: no TIME_WAIT kept for it either
			}
			c.Close()
			continue
		}
		go s.handle(c)
	}
}

// What track made of a new connection.
const (
	trackServed  = iota
	trackClosing // the server is closing
	trackRefused // one more connection from other hosts than allowed
)

// track counts a new connection in, if the bounds on connections from
// other hosts allow it, and gives a remote one its whole time.
func (s *Server) track(c net.Conn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return trackClosing
	}
	if !isLocal(c) {
		peer := peerIP(c)
		if m := s.maxRemote(); m > 0 && len(s.remote) >= m {
			return trackRefused
		}
		if m := s.maxRemotePerIP(); m > 0 && s.perRemote[peer] >= m {
			return trackRefused
		}
		if s.remote == nil {
			s.remote = make(map[net.Conn]string)
			s.perRemote = make(map[string]int)
		}
		s.remote[c] = peer
		s.perRemote[peer]++
		if d := s.remoteTimeout(); d > 0 {
			c.SetDeadline(time.Now().Add(d))
		}
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return trackServed
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	if peer, ok := s.remote[c]; ok {
		delete(s.remote, c)
		if s.perRemote[peer]--; s.perRemote[peer] <= 0 {
			delete(s.perRemote, peer)
		}
	}
	s.mu.Unlock()
	s.wg.Done()
}

// peerIP is the address a remote connection is counted by.
func peerIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// Close stops the server at once: listeners and every connection, live
// registrations included, are closed. It waits for all goroutines it started.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Shutdown stops accepting, lets requests in progress finish until ctx is
// done, then closes everything like Close. Registrations end with it: a
// registry that is going away can no longer vouch for them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		pending := len(s.conns) - len(s.nodes)
		s.mu.Unlock()
		if pending <= 0 {
			return s.Close()
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Lookup returns the live registration of name.
func (s *Server) Lookup(name string) (Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.nodes[name]
	if !ok {
		return Node{}, false
	}
	return r.node, true
}

// Changed returns a channel that is closed at the next registration or
// unregistration, so an embedding process can react without polling.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

func (s *Server) notifyLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

func (s *Server) port(c net.Conn) int {
	if s.Port != 0 {
		return s.Port
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

func (s *Server) handle(c net.Conn) {
	defer s.untrack(c)
	if d := s.idleTimeout(); d > 0 && (isLocal(c) || s.remoteTimeout() <= 0 || d < s.remoteTimeout()) {
		c.SetReadDeadline(time.Now().Add(d))
	}
	body, err := readRequest(c)
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			s.logger().Debug("epmd: bad request", zap.Stringer("peer", c.RemoteAddr()), zap.Error(err))
		}
		return
	}
	if isLocal(c) || s.remoteTimeout() <= 0 {
		c.SetWriteDeadline(time.Now().Add(defaultWriteTimeout))
	}
	switch body[0] {
	case tagAlive2Req:
		s.alive2(c, body)
	case tagPortPlease2:
		s.portPlease2(c, body)
	case tagNamesReq:
		s.names(c)
	case tagDumpReq, tagKillReq, tagStopReq:
		if !isLocal(c) {
			s.logger().Warn("epmd: local-only request from another host refused",
				zap.Stringer("peer", c.RemoteAddr()), zap.Uint8("tag", body[0]))
			return
		}
		switch body[0] {
		case tagDumpReq:
			s.dump(c)
		case tagKillReq:
			s.kill(c)
		case tagStopReq:
			s.stop(c, body)
		}
	default:
		s.logger().Debug("epmd: unknown request", zap.Stringer("peer", c.RemoteAddr()), zap.Uint8("tag", body[0]))
	}
}

// isLocal reports whether the peer is this host: loopback, or the address
// the connection arrived on.
func isLocal(c net.Conn) bool {
	ra, ok1 := c.RemoteAddr().(*net.TCPAddr)
	la, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return false
	}
	return ra.IP.IsLoopback() || ra.IP.Equal(la.IP)
}

func (s *Server) alive2(c net.Conn, body []byte) {
	if !isLocal(c) {
		s.logger().Warn("epmd: ALIVE2 from non-local address refused", zap.Stringer("peer", c.RemoteAddr()))
		return
	}
	node, err := parseAlive2Req(body)
	if errors.Is(err, ErrMalformed) {
		s.logger().Debug("epmd: bad ALIVE2", zap.Stringer("peer", c.RemoteAddr()), zap.Error(err))
		return
	}
	if err != nil {
		c.Write(appendAlive2Resp(nil, node.HighVersion, 1, errorCreation))
		return
	}
	r := s.register(node, c)
	if r == nil {
		s.logger().Info("epmd: duplicate name refused", zap.String("name", node.Name))
		c.Write(appendAlive2Resp(nil, node.HighVersion, 1, errorCreation))
		return
	}
	creation := r.creation
	if node.HighVersion < 6 {
		creation = creation%3 + 1
	}
	if _, err := c.Write(appendAlive2Resp(nil, node.HighVersion, 0, creation)); err != nil {
		s.unregister(r)
		return
	}
	s.logger().Info("epmd: registered", zap.String("name", node.Name), zap.Uint16("port", node.Port))
	s.hold(r)
}

// hold keeps a registration for as long as its connection lives; any byte
// ends it. A registration being handed to another process (Export) is
// left alone.
func (s *Server) hold(r *registration) {
	c := r.conn
	c.SetReadDeadline(time.Time{})
	var b [1]byte
	c.Read(b[:])
	s.mu.Lock()
	exporting := s.exporting
	s.mu.Unlock()
	if exporting {
		return
	}
	s.unregister(r)
	s.logger().Info("epmd: unregistered", zap.String("name", r.node.Name))
}

// register records node unless its name is held by a live registration.
func (s *Server) register(node Node, c net.Conn) *registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes == nil {
		s.nodes = make(map[string]*registration)
		s.known = make(map[string]*knownName)
	}
	if old, ok := s.nodes[node.Name]; ok {
		// A node that restarts faster than its old socket's FIN is noticed
		// is no duplicate: look at the old socket before refusing.
		if connAlive(old.conn) {
			return nil
		}
		old.conn.Close()
		delete(s.nodes, node.Name)
	}
	s.seq++
	r := &registration{node: node, conn: c, fd: connFD(c), creation: s.nextCreationLocked(node.Name), seq: s.seq}
	k := s.known[node.Name]
	k.port, k.fd = node.Port, r.fd
	s.nodes[node.Name] = r
	s.notifyLocked()
	return r
}

// nextCreationLocked returns the creation for a new registration of name:
// seeded from the clock for a name never seen, one more for a remembered
// one, never 0.
func (s *Server) nextCreationLocked(name string) uint32 {
	k, ok := s.known[name]
	if ok {
		k.creation++
	} else {
		k = &knownName{creation: uint32(time.Now().Unix())}
		s.known[name] = k
		s.order = append(s.order, name)
		if len(s.order) > rememberedNames {
			for i, n := range s.order {
				if _, live := s.nodes[n]; !live {
					delete(s.known, n)
					s.order = append(s.order[:i], s.order[i+1:]...)
					break
				}
			}
		}
	}
	if k.creation == 0 {
		k.creation = 1
	}
	return k.creation
}

func (s *Server) unregister(r *registration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes[r.node.Name] == r {
		delete(s.nodes, r.node.Name)
		s.notifyLocked()
	}
}

func (s *Server) portPlease2(c net.Conn, body []byte) {
	name, err := parsePortPlease2(body)
	if err != nil {
		return
	}
	n, ok := s.Lookup(name)
	if !ok {
		c.Write([]byte{tagPort2Resp, 1})
		return
	}
	c.Write(appendPort2Resp(nil, &n))
}

// live returns the registrations, newest first, as Erlang's epmd lists them.
func (s *Server) live() []*registration {
	s.mu.Lock()
	regs := make([]*registration, 0, len(s.nodes))
	for _, r := range s.nodes {
		regs = append(regs, r)
	}
	s.mu.Unlock()
	sort.Slice(regs, func(i, j int) bool { return regs[i].seq > regs[j].seq })
	return regs
}

func (s *Server) names(c net.Conn) {
	// The port and the lines go in one write: Erlang's client expects the
	// header in the first segment.
	b := binary.BigEndian.AppendUint32(nil, uint32(s.port(c)))
	for _, r := range s.live() {
		b = appendNamesLine(b, r.node.Name, r.node.Port)
	}
	c.Write(b)
}

func (s *Server) dump(c net.Conn) {
	b := binary.BigEndian.AppendUint32(nil, uint32(s.port(c)))
	for _, r := range s.live() {
		b = appendDumpActive(b, r.node.Name, r.node.Port, r.fd)
	}
	s.mu.Lock()
	for i := len(s.order) - 1; i >= 0; i-- {
		name := s.order[i]
		if _, live := s.nodes[name]; !live {
			k := s.known[name]
			b = appendDumpOld(b, name, k.port, k.fd)
		}
	}
	s.mu.Unlock()
	c.Write(b)
}

func (s *Server) kill(c net.Conn) {
	s.mu.Lock()
	refuse := s.OnKill == nil || len(s.nodes) > 0 && !s.Relaxed
	s.mu.Unlock()
	if refuse {
		c.Write([]byte("NO"))
		return
	}
	c.Write([]byte("OK"))
	s.logger().Info("epmd: killed by request", zap.Stringer("peer", c.RemoteAddr()))
	go s.OnKill()
}

func (s *Server) stop(c net.Conn, body []byte) {
	if !s.Relaxed {
		return
	}
	name := string(body[1:])
	s.mu.Lock()
	r, ok := s.nodes[name]
	if ok {
		delete(s.nodes, name)
		s.notifyLocked()
	}
	s.mu.Unlock()
	if !ok {
		c.Write([]byte("NOEXIST"))
		return
	}
	r.conn.Close()
	s.logger().Info("epmd: unregistered by request", zap.String("name", name))
	c.Write([]byte("STOPPED"))
}
