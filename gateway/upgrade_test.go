package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"holdfast/backend"
	"holdfast/gateway"
	"holdfast/internal/netx"
)

// sameProcess moves sessions to another Server in this process, as the
// upgrade's socket does between two processes.
type sameProcess struct {
	to       *gateway.Server
	arrived  []*gateway.Arrivals
	failWith error // Commit fails with it, once
}

func (m *sameProcess) Offer(state []byte, conns []syscall.Conn) error {
	// The other process gets descriptors of its own, as a message's do.
	files := make([]*os.File, 0, len(conns))
	for _, c := range conns {
		f, err := netx.Dup(c)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return err
		}
		files = append(files, f)
	}
	a, err := m.to.Receive(state, files)
	if err == nil {
		m.arrived = append(m.arrived, a)
	}
	return err
}

func (m *sameProcess) Commit() error {
	if m.failWith != nil {
		err := m.failWith
		m.failWith = nil
		return err
	}
	for _, a := range m.arrived {
		a.Start()
	}
	m.arrived = nil
	return nil
}

func (m *sameProcess) Abort() {
	for _, a := range m.arrived {
		a.Discard()
	}
	m.arrived = nil
}

// secondGateway starts another gateway on e's registry and waits until it
// has linked to the backend.
func (e *env) secondGateway() *gateway.Server {
	e.t.Helper()
	gw := &gateway.Server{Cookie: e.cookie, EPMD: e.regAddr, Registry: e.reg, Logger: zaptest.NewLogger(e.t)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	e.t.Cleanup(func() { gw.Close(); <-served })
	deadline := time.Now().Add(waitFor)
	for !gw.Linked() {
		if time.Now().After(deadline) {
			e.t.Fatal("the second gateway did not link")
		}
		time.Sleep(time.Millisecond)
	}
	return gw
}

// talker answers each line with its number in the session and the line,
// and counts the sessions it was handed.
func talker(accepted *atomic.Int32, ended chan<- error) func(*backend.Session) {
	return func(s *backend.Session) {
		accepted.Add(1)
		n := 0
		for {
			l, err := s.ReadLine()
			if err != nil {
				ended <- err
				return
			}
			n++
			fmt.Fprintf(s, "%d: %s\n", n, l)
		}
	}
}

// twoGateways starts a gateway with the talker behind it and a player on
// it who has typed a line, and a second gateway linked to the same
// backend, to move the player to.
func twoGateways(t *testing.T) (e *env, p *player, gw2 *gateway.Server, accepted *atomic.Int32, ended chan error) {
	t.Helper()
	e = newEnv(t, nil)
	accepted = new(atomic.Int32)
	ended = make(chan error, 4)
	e.backend(talker(accepted, ended))
	p = e.dial()
	p.send("one\r\n")
	p.expect("1: one")
	return e, p, e.secondGateway(), accepted, ended
}

func TestMoveOut(t *testing.T) {
	e, p, gw2, accepted, ended := twoGateways(t)

	// The player types on while the session moves.
	typed := make(chan error, 1)
	go func() {
		for i := 2; i <= 40; i++ {
			p.conn.SetWriteDeadline(time.Now().Add(waitFor))
			if _, err := fmt.Fprintf(p.conn, "line %d\r\n", i); err != nil {
				typed <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
		typed <- nil
	}()
	m := &sameProcess{to: gw2}
	n, err := e.gw.MoveOut(context.Background(), m)
	if err != nil || n != 1 {
		t.Fatalf("MoveOut = %d, %v", n, err)
	}
	if err := <-typed; err != nil {
		t.Fatal(err)
	}
	// Every line answered once, in order, on the one connection.
	for i := 2; i <= 40; i++ {
		p.expect(fmt.Sprintf("%d: line %d", i, i))
	}
	if e.gw.SessionCount() != 0 || gw2.SessionCount() != 1 {
		t.Fatalf("sessions: %d in the old gateway, %d in the new", e.gw.SessionCount(), gw2.SessionCount())
	}
	info := gw2.Sessions()[0]
	if info.Resumed != 0 || !info.Attached {
		t.Errorf("moved session: %+v", info)
	}
	if accepted.Load() != 1 {
		t.Errorf("the game accepted %d sessions, want 1", accepted.Load())
	}
	select {
	case err := <-ended:
		t.Fatalf("the game's session ended: %v", err)
	default:
	}
	// The player leaves: the game hears it from the new gateway.
	p.conn.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, io.EOF) {
			t.Errorf("the game's read after the player left: %v, want io.EOF", err)
		}
	case <-time.After(waitFor):
		t.Fatal("the game did not hear the player leave")
	}
}

// TestCloseMoved: the old process keeps its descriptors of the moved
// sockets until CloseMoved, and the player is hung up on once both
// processes have let go.
func TestCloseMoved(t *testing.T) {
	e, p, gw2, _, _ := twoGateways(t)
	if n, err := e.gw.MoveOut(context.Background(), &sameProcess{to: gw2}); err != nil || n != 1 {
		t.Fatalf("MoveOut = %d, %v", n, err)
	}
	p.send("two\r\n")
	p.expect("2: two")
	gw2.Close() // the new process lets go of its own
	p.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if b, err := p.r.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v while the old process holds the socket; want nothing", b, err)
	}
	e.gw.CloseMoved()
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	if rest, err := io.ReadAll(p.r); err != nil {
		t.Fatalf("after CloseMoved: %q, %v; want the connection closed", rest, err)
	}
}

// diedAfterReceive is a new process that died after receiving a batch's
// sockets and before making its own copies: it had made them blocking (as
// an older gateway's fdmsg did), and the flag is each socket's, shared
// with this process.
type diedAfterReceive struct{}

func (diedAfterReceive) Offer(state []byte, conns []syscall.Conn) error {
	for _, c := range conns {
		f, err := netx.Dup(c)
		if err != nil {
			return err
		}
		err = syscall.SetNonblock(int(f.Fd()), false)
		f.Close()
		if err != nil {
			return err
		}
	}
	return errors.New("the new process died")
}

func (diedAfterReceive) Commit() error { return errors.New("the new process died") }
func (diedAfterReceive) Abort()        {}

// TestMoveOutAfterReceiverDied: the sessions stay, their sockets
// non-blocking again, so that the next move can stop their readers (a
// reader in a blocking read cannot be stopped by a deadline).
func TestMoveOutAfterReceiverDied(t *testing.T) {
	e, p, gw2, _, _ := twoGateways(t)
	// First: a read stuck on a blocking socket (the failure) ends only
	// when the player hangs up.
	t.Cleanup(func() { p.conn.Close() })
	if n, err := e.gw.MoveOut(context.Background(), diedAfterReceive{}); err == nil || n != 0 {
		t.Fatalf("MoveOut = %d, %v; want the failure", n, err)
	}
	p.send("two\r\n")
	p.expect("2: two")
	type result struct {
		n   int
		err error
	}
	moved := make(chan result, 1)
	go func() {
		n, err := e.gw.MoveOut(context.Background(), &sameProcess{to: gw2})
		moved <- result{n, err}
	}()
	select {
	case r := <-moved:
		if r.err != nil || r.n != 1 {
			t.Fatalf("the next MoveOut = %d, %v; want the session moved", r.n, r.err)
		}
	case <-time.After(waitFor):
		t.Fatal("the next MoveOut is stuck on a blocking socket")
	}
	p.send("three\r\n")
	p.expect("3: three")
}

func TestMoveOutFailsSafe(t *testing.T) {
	e, p, gw2, accepted, _ := twoGateways(t)
	m := &sameProcess{to: gw2, failWith: errors.New("the new process went away")}
	if n, err := e.gw.MoveOut(context.Background(), m); err == nil || n != 0 {
		t.Fatalf("MoveOut = %d, %v; want the failure", n, err)
	}
	p.send("two\r\n")
	p.expect("2: two")
	if e.gw.SessionCount() != 1 || gw2.SessionCount() != 0 {
		t.Fatalf("sessions: %d in the old gateway, %d in the new", e.gw.SessionCount(), gw2.SessionCount())
	}
	if accepted.Load() != 1 || e.gw.Sessions()[0].Resumed != 0 {
		t.Errorf("after the failed move: %d sessions accepted, %+v", accepted.Load(), e.gw.Sessions())
	}
}
