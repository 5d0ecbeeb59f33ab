package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/internal/fdmsg"
)

// Defaults of the Upgrader's knobs.
const (
	DefaultReadyTimeout  = 30 * time.Second
	DefaultAnswerTimeout = 30 * time.Second
	DefaultExitWait      = 2 * time.Second
	DefaultMoveWait      = 2 * time.Minute
)

// ErrVersion is a new process that speaks a protocol version the old one
// does not.
var ErrVersion = errors.New("upgrade: a protocol version this gateway does not speak")

// Process is the new gateway process, as the old one sees it.
type Process interface {
	// Wait waits for the process to exit and says how: nil for status 0.
	Wait() error
	// Kill stops it at once.
	Kill() error
}

// Mover carries sessions to the new process, a batch at a time. It is
// gateway.Mover; the Upgrader gives one to Gateway.MoveOut.
type Mover interface {
	// Offer hands the new process a batch, and returns once it holds the
	// batch untouched: the sessions' state, and their sockets (or files
	// standing for them), which stay the caller's.
	Offer(state []byte, conns []syscall.Conn) error
	// Commit makes every batch offered the new process's own, and returns
	// once it has taken them; an error leaves them with this process.
	Commit() error
	// Abort takes back every batch offered: once it returns, the new
	// process has let go of them untouched, or is dead.
	Abort()
}

// Gateway is the old process's part in an upgrade.
type Gateway interface {
	// BeginMove takes the move token, waiting until ctx ends while another
	// move of sessions (a deploy) runs, and names the move it waited for.
	// The Upgrader gives the token back with release if the upgrade fails,
	// and keeps it if it succeeds: this process is leaving.
	BeginMove(ctx context.Context) (release func(), waited string, err error)
	// Sockets returns descriptors of the listening sockets the new process
	// inherits, from FirstFile on, and the environment variables that
	// describe them to it. The Upgrader closes the files once it has
	// started the new process.
	Sockets() (files []*os.File, env []string, err error)
	// Backend is the address of the backend this process is linked to,
	// where the sessions are held, for the new process to link to first;
	// "" if none.
	Backend() string
	// Pause stops accepting on the listening sockets, which stay open:
	// the new process accepts on them from now on. Requests under way
	// finish.
	Pause()
	// Resume accepts on the listening sockets again: the new process died
	// before it served, and this one serves on.
	Resume()
	// MoveOut moves every session through m, and returns how many moved
	// (gateway.Server.MoveOut): it offers them all, then commits. On an
	// error it aborts, and every session stays.
	MoveOut(ctx context.Context, m Mover) (int, error)
	// Registry returns what is handed over last, once every session has
	// moved: the registry's state and its registrations' connections,
	// which the Upgrader closes once sent. A nil state hands nothing over.
	Registry() (state []byte, files []*os.File, err error)
}

// Result is what an upgrade reports; `gateway upgrade` prints it.
type Result struct {
	PID      int           `json:"pid"`     // the new process's
	Version  string        `json:"version"` // the new process's
	Sessions int           `json:"sessions"`
	Took     time.Duration `json:"took_ns"`
	// WaitedFor names the move the upgrade waited for before it started
	// ("deploy"), if any.
	WaitedFor string `json:"waited_for,omitempty"`
}

// Upgrader runs upgrades of this process: the old side. Set Gateway, and
// Path or Start; the rest is optional. Only one upgrade runs at a time, and
// once one has succeeded this process is leaving and starts no other.
type Upgrader struct {
	// Path is the binary the new process runs, with Args (after its name)
	// and this process's environment, and the upgrade's own variables.
	Path string
	Args []string
	// Start, if set, starts the new process in place of running Path. It
	// is given the new process's end of the upgrade's socket (descriptor
	// 3), the files it inherits from FirstFile on, and the environment
	// variables to add; the Upgrader closes the files once it returns.
	Start func(conn *os.File, files []*os.File, env []string) (Process, error)
	// Gateway does the gateway's part.
	Gateway Gateway
	// ReadyTimeout bounds the wait for the new process to say Ready; zero
	// or negative means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// AnswerTimeout bounds each answer the new process owes once ready;
	// zero or negative means DefaultAnswerTimeout.
	AnswerTimeout time.Duration
	// ExitWait bounds the wait, when moving sessions fails, to learn
	// whether the new process died; zero or negative means
	// DefaultExitWait.
	ExitWait time.Duration
	// MoveWait bounds the wait for a move under way to finish before the
	// upgrade starts; zero or negative means DefaultMoveWait.
	MoveWait time.Duration
	// Logger records the upgrade's course; nil logs nothing.
	Logger *zap.Logger

	busy atomic.Bool
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (u *Upgrader) log() *zap.Logger {
	if u.Logger == nil {
		return zap.NewNop()
	}
	return u.Logger
}

// Upgrade starts a new process and hands it everything. It returns once
// the new process serves, or with the reason it does not: before Accept,
// nothing changed here; after, this process serves on with what it has.
// A second upgrade while one runs, or after one succeeded, is ErrUnderWay.
func (u *Upgrader) Upgrade() (Result, error) {
	if !u.busy.CompareAndSwap(false, true) {
		return Result{}, ErrUnderWay
	}
	start := time.Now()
	// One move at a time: a deploy under way finishes first, and none
	// starts until this upgrade is over. If it succeeds, this process is
	// leaving, and the new one takes any successor over.
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(u.MoveWait, DefaultMoveWait))
	release, waited, err := u.Gateway.BeginMove(ctx)
	cancel()
	if err != nil {
		u.busy.Store(false)
		return Result{WaitedFor: waited}, err
	}
	log := u.log()
	log.Info("gateway: upgrade starting", zap.String("binary", u.Path), zap.String("waited_for", waited))
	res, committed, err := u.run()
	res.Took, res.WaitedFor = time.Since(start), waited
	if err != nil {
		log.Error("gateway: upgrade failed", zap.Error(err), zap.Bool("new_process_serves", committed))
		if !committed {
			u.busy.Store(false)
		}
		release() // this process serves on, with what it has
		return res, err
	}
	log.Info("gateway: upgrade done; the new process serves", zap.Int("pid", res.PID),
		zap.String("version", res.Version), zap.Int("sessions", res.Sessions), zap.Duration("took", res.Took))
	return res, nil
}

// start starts the new process.
func (u *Upgrader) start(conn *os.File, files []*os.File, env []string) (Process, error) {
	if u.Start != nil {
		return u.Start(conn, files, env)
	}
	if u.Path == "" {
		return nil, errors.New("the gateway's binary was not found at start")
	}
	cmd := exec.Command(u.Path, u.Args...)
	cmd.ExtraFiles = append([]*os.File{conn}, files...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", u.Path, err)
	}
	return command{cmd}, nil
}

// command is a new process started from a binary.
type command struct{ cmd *exec.Cmd }

func (c command) Wait() error { return c.cmd.Wait() }
func (c command) Kill() error { return c.cmd.Process.Kill() }

// run does the upgrade. committed reports whether the new process has
// taken over, so that a failure from then on cannot be undone.
func (u *Upgrader) run() (res Result, committed bool, err error) {
	conn, theirs, err := fdmsg.Pair()
	if err != nil {
		return res, false, err
	}
	files, env, err := u.Gateway.Sockets()
	if err != nil {
		conn.Close()
		theirs.Close()
		return res, false, err
	}
	env = append(env, connEnv+"=3", backendEnv+"="+u.Gateway.Backend())
	proc, err := u.start(theirs, files, env)
	theirs.Close()
	closeFiles(files)
	if err != nil {
		conn.Close()
		return res, false, err
	}
	ex := watch(proc)
	r := newReader(conn)
	defer r.close()

	// Until the new process says it is ready, nothing has changed here.
	stop := func(why error) (Result, bool, error) {
		proc.Kill()
		<-ex.done
		return res, false, why
	}
	hello, gone, err := u.awaitReady(r, ex)
	switch {
	case gone:
		return res, false, err
	case errors.Is(err, ErrVersion):
		// Refused, the new process exits by itself, saying why.
		t := time.NewTimer(orDefault(u.ExitWait, DefaultExitWait))
		defer t.Stop()
		select {
		case <-ex.done:
			return res, false, err
		case <-t.C:
			return stop(err)
		}
	case err != nil:
		return stop(err)
	}
	res.PID, res.Version = hello.PID, hello.Version

	// The switch: the new process accepts, this one stops accepting.
	conn.SetDeadline(time.Now().Add(orDefault(u.AnswerTimeout, DefaultAnswerTimeout)))
	if err := conn.Send(byte(Accept), nil, nil); err != nil {
		return stop(err)
	}
	conn.SetDeadline(time.Time{})
	u.Gateway.Pause()
	moved, err := u.Gateway.MoveOut(context.Background(), &mover{u, r, proc, ex})
	res.Sessions = moved
	if err != nil {
		t := time.NewTimer(orDefault(u.ExitWait, DefaultExitWait))
		defer t.Stop()
		select {
		case <-ex.done:
			// The new process died: this one is in charge again, of every
			// session, and of its sockets.
			u.Gateway.Resume()
			u.log().Warn("gateway: the new gateway died during the upgrade; this process serves again",
				zap.NamedError("exit", ex.err))
			return res, false, fmt.Errorf("the new gateway exited during the upgrade (%v): %w; this process serves on with every session", ex.err, err)
		case <-t.C:
			// It lives, and serves the players it accepted; the sessions
			// that did not move stay here until they end.
			return res, true, fmt.Errorf("moving sessions failed: %w; every session stays with this process, and the new one serves the players it accepted", err)
		}
	}
	// The registry goes last, so that the new process could find the
	// backend in this process's registry until now.
	if err := u.passRegistry(r); err != nil {
		return res, true, fmt.Errorf("handing the registry over: %w", err)
	}
	if err := u.send(r, Done, nil, nil, Serving); err != nil {
		return res, true, fmt.Errorf("finishing: %w", err)
	}
	go func() {
		// The new process runs on; this one does not wait for it.
		if <-ex.done; ex.err != nil {
			u.log().Info("gateway: the new gateway has exited", zap.Error(ex.err))
		}
	}()
	return res, true, nil
}

// exit is the new process's exit: done is closed once it has exited, and
// err says how.
type exit struct {
	done chan struct{}
	err  error
}

func watch(p Process) *exit {
	ex := &exit{done: make(chan struct{})}
	go func() {
		ex.err = p.Wait()
		close(ex.done)
	}()
	return ex
}

// awaitReady waits for the new process's Ready, and checks that it speaks
// this process's protocol. gone reports that the new process has exited
// already.
func (u *Upgrader) awaitReady(r *reader, ex *exit) (hello Hello, gone bool, err error) {
	timeout := orDefault(u.ReadyTimeout, DefaultReadyTimeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var m message
	select {
	case m = <-r.msgs:
	case <-ex.done:
		// What it said before it exited is still to be read.
		select {
		case m = <-r.msgs:
			closeFiles(m.files)
			if m.err == nil && m.kind == Failed {
				return hello, true, fmt.Errorf("the new gateway refused to start: %s", m.payload)
			}
		case <-timer.C:
		}
		return hello, true, fmt.Errorf("the new gateway exited before it was ready: %v", ex.err)
	case <-timer.C:
		return hello, false, fmt.Errorf("the new gateway was not ready within %v", timeout)
	}
	closeFiles(m.files)
	switch {
	case m.err != nil:
		// The socket closed: the new process exited, and says how.
		select {
		case <-ex.done:
			return hello, true, fmt.Errorf("the new gateway exited before it was ready: %v", ex.err)
		case <-timer.C:
			return hello, false, fmt.Errorf("the new gateway closed the upgrade's socket: %v", m.err)
		}
	case m.kind == Failed:
		<-ex.done
		return hello, true, fmt.Errorf("the new gateway refused to start: %s", m.payload)
	case m.kind != Ready:
		return hello, false, fmt.Errorf("%w: the new gateway said %v before it was ready", ErrProtocol, m.kind)
	}
	if err := json.Unmarshal(m.payload, &hello); err != nil {
		return hello, false, fmt.Errorf("the new gateway's ready message: %w", err)
	}
	v := hello.Protocol
	if v == 0 {
		v = 1 // a gateway from before versions
	}
	if !speaks(v) {
		err := fmt.Errorf("%w: the new gateway speaks %d, this one %d", ErrVersion, v, Version)
		// Said so that the new process exits saying why.
		r.conn.SetDeadline(time.Now().Add(time.Second))
		r.conn.Send(byte(Refused), []byte(err.Error()), nil)
		return hello, false, err
	}
	return hello, false, nil
}

// passRegistry hands the registry over, if the gateway has one.
func (u *Upgrader) passRegistry(r *reader) error {
	state, files, err := u.Gateway.Registry()
	if err != nil {
		return err
	}
	defer closeFiles(files)
	if state == nil {
		return nil
	}
	conns := make([]syscall.Conn, len(files))
	for i, f := range files {
		conns[i] = f
	}
	return u.send(r, Registry, state, conns, Taken)
}

// send sends a message and waits for the answer of kind want.
func (u *Upgrader) send(r *reader, kind Kind, payload []byte, files []syscall.Conn, want Kind) error {
	timeout := orDefault(u.AnswerTimeout, DefaultAnswerTimeout)
	r.conn.SetDeadline(time.Now().Add(timeout))
	err := r.conn.Send(byte(kind), payload, files)
	r.conn.SetDeadline(time.Time{})
	if err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m, ok := <-r.msgs:
		closeFiles(m.files) // answers carry none
		switch {
		case !ok:
			return errors.New("the other gateway went away")
		case m.err != nil:
			return fmt.Errorf("the other gateway went away: %w", m.err)
		case m.kind == Refused:
			return fmt.Errorf("%w: %s", errRefused, m.payload)
		case m.kind != want:
			return fmt.Errorf("%w: the other gateway said %v, not %v", ErrProtocol, m.kind, want)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("no answer from the other gateway within %v", timeout)
	}
}

// mover is Mover over the upgrade's socket.
type mover struct {
	u    *Upgrader
	r    *reader
	proc Process
	ex   *exit
}

func (m *mover) Offer(state []byte, conns []syscall.Conn) error {
	return m.u.send(m.r, Batch, state, conns, Prepared)
}

func (m *mover) Commit() error {
	err := m.u.send(m.r, Commit, nil, nil, Committed)
	if err != nil && !errors.Is(err, errRefused) {
		// No answer: whatever the new process did, it is stopped, so that
		// it cannot serve a session this one takes back.
		m.kill()
	}
	return err
}

func (m *mover) Abort() {
	select {
	case <-m.ex.done:
		return // dead: it has let go of everything
	default:
	}
	if err := m.u.send(m.r, Abort, nil, nil, Aborted); err != nil {
		m.u.log().Warn("gateway: the new gateway did not give the sessions back; stopping it", zap.Error(err))
		m.kill()
	}
}

func (m *mover) kill() {
	m.proc.Kill()
	<-m.ex.done
}
