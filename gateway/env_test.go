package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"holdfast/backend"
	"holdfast/epmd"
	"holdfast/gateway"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = gateway.WaitFor

var eventually = gateway.Eventually

// env is a registry, a gateway and the backends a test starts, in process.
type env struct {
	t       *testing.T
	reg     *epmd.Server
	regAddr string
	gw      *gateway.Server
	addr    string
	cookie  []byte
	logs    *observer.ObservedLogs
}

// waitLog waits until the gateway has logged msg.
func (e *env) waitLog(msg string) {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for e.logs.FilterMessage(msg).Len() == 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("the gateway did not log %q", msg)
		}
		time.Sleep(5 * time.Millisecond) // polling the log: there is no event to wait on
	}
}

func newEnv(t *testing.T, gw *gateway.Server) *env {
	t.Helper()
	e := &env{t: t, cookie: []byte("test-cookie")}
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.reg = &epmd.Server{}
	e.regAddr = rl.Addr().String()
	regDone := make(chan struct{})
	go func() { e.reg.Serve(rl); close(regDone) }()

	if gw == nil {
		gw = &gateway.Server{}
	}
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	gw.Cookie, gw.EPMD, gw.Registry, gw.Logger = e.cookie, e.regAddr, e.reg, log
	e.gw = gw
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	t.Cleanup(func() {
		gw.Close()
		if err := <-served; !errors.Is(err, gateway.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		e.reg.Close()
		<-regDone
	})
	return e
}

// backend starts a backend that runs handle for every session.
func (e *env) backend(handle func(*backend.Session)) *backend.Listener {
	e.t.Helper()
	l, err := backend.Listen(context.Background(), backend.Config{EPMD: e.regAddr, Cookie: e.cookie, Logger: zaptest.NewLogger(e.t)})
	if err != nil {
		e.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			s, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer s.Close()
				handle(s)
			}()
		}
	}()
	e.t.Cleanup(func() { l.Close(); wg.Wait() })
	return l
}

type player struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (e *env) dial() *player {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &player{t: e.t, conn: c, r: bufio.NewReader(c)}
}

func (p *player) send(s string) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := io.WriteString(p.conn, s); err != nil {
		p.t.Fatal(err)
	}
}

// expect reads lines until one contains want.
func (p *player) expect(want string) {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	for {
		l, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("waiting for %q: %v", want, err)
		}
		if strings.Contains(l, want) {
			return
		}
	}
}

// lines is a handler that hands every line it reads to a channel.
func lines(ch chan<- string) func(*backend.Session) {
	return func(s *backend.Session) {
		for {
			l, err := s.ReadLine()
			if err != nil {
				return
			}
			ch <- l
		}
	}
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(waitFor):
		t.Fatal("no line arrived")
		return ""
	}
}
