package epmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/netx"
)

const (
	defaultClientTimeout = 5 * time.Second
	maxNamesReply        = 1 << 20
	maxPort2Reply        = 16 + maxNameLen + maxExtraLen
)

// Client talks to one registry. The zero value asks 127.0.0.1 on the port in
// ERL_EPMD_PORT (default 4369).
type Client struct {
	// Addr is the registry's host:port. Empty means 127.0.0.1:PortFromEnv().
	Addr string
	// Timeout bounds each request, dial included. Zero means 5 s; negative
	// means only ctx bounds it.
	Timeout time.Duration
}

func (c *Client) addr() string {
	if c.Addr == "" {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(PortFromEnv()))
	}
	return c.Addr
}

// HostAddr returns the registry address for host on the port from the
// environment, for looking up "name@host".
func HostAddr(host string) string {
	return net.JoinHostPort(host, strconv.Itoa(PortFromEnv()))
}

func (c *Client) timeout() time.Duration {
	if c.Timeout == 0 {
		return defaultClientTimeout
	}
	return c.Timeout
}

// request sends one request and returns the connection, with a deadline
// set from ctx and the timeout.
func (c *Client) request(ctx context.Context, body []byte) (net.Conn, error) {
	if t := c.timeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	// Requests are short and registrations local: TCP keepalive would only
	// cost setsockopt calls.
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", c.addr())
	if err != nil {
		return nil, fmt.Errorf("epmd: dial %s: %w", c.addr(), err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(appendRequest(nil, body)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("epmd: send to %s: %w", c.addr(), err)
	}
	return conn, nil
}

// Lookup asks the registry for name (PORT_PLEASE2). It returns ErrNotFound
// when the name is not registered.
func (c *Client) Lookup(ctx context.Context, name string) (Node, error) {
	conn, err := c.request(ctx, append([]byte{tagPortPlease2}, name...))
	if err != nil {
		return Node{}, err
	}
	defer conn.Close()
	b, err := io.ReadAll(io.LimitReader(conn, maxPort2Reply))
	if err != nil {
		return Node{}, fmt.Errorf("epmd: lookup %q: %w", name, err)
	}
	n, err := parsePort2Resp(b)
	if err != nil {
		return Node{}, fmt.Errorf("epmd: lookup %q: %w", name, err)
	}
	return n, nil
}

// Names lists the registered nodes (NAMES), newest first as the registry
// sends them, and the port the registry says it serves.
func (c *Client) Names(ctx context.Context) (int, []NameEntry, error) {
	conn, err := c.request(ctx, []byte{tagNamesReq})
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	b, err := io.ReadAll(io.LimitReader(conn, maxNamesReply))
	if err != nil {
		return 0, nil, fmt.Errorf("epmd: names: %w", err)
	}
	return parseNames(b)
}

// Dump asks for the registry's full table (DUMP, local only) and returns
// the port it reports and its text, NUL bytes included.
func (c *Client) Dump(ctx context.Context) (int, []byte, error) {
	b, err := c.command(ctx, []byte{tagDumpReq}, maxNamesReply)
	if err != nil {
		return 0, nil, err
	}
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("%w: short DUMP reply", ErrMalformed)
	}
	return int(binary.BigEndian.Uint32(b)), b[4:], nil
}

// Kill asks the registry to exit (KILL, local only). It returns its answer:
// "OK", or "NO" when it refuses.
func (c *Client) Kill(ctx context.Context) (string, error) {
	b, err := c.command(ctx, []byte{tagKillReq}, 2)
	return string(b), err
}

// Stop asks the registry to drop name's registration (STOP, local and
// relaxed only). It returns its answer: "STOPPED", "NOEXIST", or "" when the
// registry closed without one.
func (c *Client) Stop(ctx context.Context, name string) (string, error) {
	b, err := c.command(ctx, append([]byte{tagStopReq}, name...), 7)
	return string(b), err
}

// command sends a request and reads the answer until the registry closes,
// at most limit bytes.
func (c *Client) command(ctx context.Context, body []byte, limit int64) ([]byte, error) {
	conn, err := c.request(ctx, body)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	b, err := io.ReadAll(io.LimitReader(conn, limit))
	if err != nil {
		return b, fmt.Errorf("epmd: %w", err)
	}
	return b, nil
}

func parseNames(b []byte) (int, []NameEntry, error) {
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("%w: short NAMES reply", ErrMalformed)
	}
	port := int(binary.BigEndian.Uint32(b))
	var out []NameEntry
	sc := bufio.NewScanner(bytes.NewReader(b[4:]))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "name ")
		i := strings.LastIndex(rest, " at port ")
		if !ok || i < 0 {
			return port, out, fmt.Errorf("%w: NAMES line %q", ErrMalformed, line)
		}
		p, err := strconv.Atoi(rest[i+len(" at port "):])
		if err != nil {
			return port, out, fmt.Errorf("%w: NAMES line %q", ErrMalformed, line)
		}
		out = append(out, NameEntry{Name: rest[:i], Port: p})
	}
	return port, out, nil
}

// register performs one ALIVE2 exchange and returns the open connection.
func (c *Client) register(ctx context.Context, n *Node) (net.Conn, uint32, error) {
	conn, err := c.request(ctx, appendAlive2Req(nil, n))
	if err != nil {
		return nil, 0, err
	}
	var b [6]byte
	if _, err := io.ReadFull(conn, b[:1]); err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("epmd: register %q: %w", n.Name, err)
	}
	size, err := alive2RespLen(b[0])
	if err == nil {
		_, err = io.ReadFull(conn, b[1:size])
	}
	if err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("epmd: register %q: %w", n.Name, err)
	}
	result, creation := parseAlive2Resp(b[:size])
	if result != 0 {
		conn.Close()
		return nil, 0, fmt.Errorf("%w: %q (result %d)", ErrRefused, n.Name, result)
	}
	conn.SetDeadline(time.Time{})
	return conn, creation, nil
}

// Register registers n and keeps the registration: when the registry goes
// away, it registers again by itself, with backoff, until Close. The first
// attempt's failure is returned.
func (c *Client) Register(ctx context.Context, n Node, log *zap.Logger) (*Registration, error) {
	if n.NodeType == 0 {
		n.NodeType = NodeTypeHidden
	}
	if n.HighVersion == 0 {
		n.HighVersion, n.LowVersion = 6, 5
	}
	if log == nil {
		log = zap.NewNop()
	}
	conn, creation, err := c.register(ctx, &n)
	if err != nil {
		return nil, err
	}
	r := &Registration{c: c, node: n, log: log, conn: conn, creation: creation}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.keep()
	return r, nil
}

// Registration is a live registration kept by a Client.
type Registration struct {
	c    *Client
	node Node
	log  *zap.Logger

	mu       sync.Mutex
	conn     net.Conn
	creation uint32
	closed   bool
	ctx      context.Context // done at Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Creation returns the creation number of the current registration.
func (r *Registration) Creation() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.creation
}

// Close unregisters and stops re-registering. It is safe to call twice.
func (r *Registration) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.cancel()
		if r.conn != nil {
			r.conn.Close()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *Registration) keep() {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		conn := r.conn
		r.mu.Unlock()
		var b [1]byte
		conn.Read(b[:]) // returns when the registry closes or Close does
		conn.Close()
		if r.ctx.Err() != nil {
			return
		}
		r.log.Warn("epmd: registration lost; registering again", zap.String("name", r.node.Name))
		var delay time.Duration
		taken := false
		for {
			delay = netx.Backoff(delay, 50*time.Millisecond, 2*time.Second)
			t := time.NewTimer(delay)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			conn, creation, err := r.c.register(r.ctx, &r.node)
			if errors.Is(err, ErrRefused) && !taken {
				// A registry that restarted forgot this registration, and
				// another process registered the name first. Which of the
				// two may serve is not the registry's to say: this one
				// keeps trying until the name is free or Close.
				r.log.Info("epmd: the name is registered by another process now; registering again once it is free",
					zap.String("name", r.node.Name))
				taken = true
				continue
			}
			if err != nil {
				r.log.Debug("epmd: register again failed", zap.String("name", r.node.Name), zap.Error(err))
				continue
			}
			r.mu.Lock()
			if r.closed {
				r.mu.Unlock()
				conn.Close()
				return
			}
			r.conn, r.creation = conn, creation
			r.mu.Unlock()
			r.log.Info("epmd: registered again", zap.String("name", r.node.Name), zap.Uint32("creation", creation))
			break
		}
	}
}
