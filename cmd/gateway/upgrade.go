package main

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/gateway"
	"holdfast/internal/handover"
	"holdfast/internal/systemd"
)

// An upgrade replaces this gateway process with a new one, started from
// the binary at the path this one was started from, with the same command
// line and environment, its settings read anew. The two speak over a Unix
// socket (descriptor 3 in the new process, named by handoverEnv), the new
// one having inherited every listening socket:
//
//	new -> old  Failed  reason          (then it exits: nothing changed)
//	new -> old  Ready   pid, version    configured, linked to the backend
//	old -> new  Accept                  the new one serves the listeners, the old stops
//	old -> new  Batch   sessions + sockets      } a batch at a time
//	new -> old  Prepared / Refused reason       } (gateway.MoveOut)
//	old -> new  Commit                          }
//	new -> old  Committed                       }
//	old -> new  Registry  registrations + connections, limits
//	new -> old  Taken
//	old -> new  Done
//	new -> old  Serving                 then the old one exits
//
// Until Accept, a failure leaves the old process as it was, and the new
// one is stopped; the command reports why.
const (
	msgFailed    = 'F'
	msgReady     = 'R'
	msgAccept    = 'A'
	msgBatch     = 'B'
	msgPrepared  = 'P'
	msgRefused   = 'E'
	msgCommit    = 'C'
	msgCommitted = 'K'
	msgRegistry  = 'G'
	msgTaken     = 'g'
	msgDone      = 'D'
	msgServing   = 'S'
)

// handoverEnv tells a gateway that it is taking over, and where the
// handover socket is.
const handoverEnv = "GATEWAY_HANDOVER_FD"

// linkedEnv gives the new process the address of the backend this one is
// linked to: the sessions it takes are held there.
const linkedEnv = "GATEWAY_UPGRADE_BACKEND"

// exitWait bounds how long an upgrade that failed half-way waits to learn
// whether the new process died.
const exitWait = 2 * time.Second

// moveWait bounds how long an upgrade waits for a deploy under way.
const moveWait = 2 * time.Minute

var errUpgrading = errors.New("an upgrade is already under way")

// upgradeResult is what a successful upgrade reports.
type upgradeResult struct {
	PID      int           `json:"pid"`
	Version  string        `json:"version"`
	Sessions int           `json:"sessions"` // moved
	Took     time.Duration `json:"took_ns"`
	// WaitedFor names the move the upgrade waited for before it started
	// ("deploy"), if any.
	WaitedFor string `json:"waited_for,omitempty"`
}

// upgrader runs upgrades of this process.
type upgrader struct {
	log     *zap.Logger
	gw      *gateway.Server
	socks   *sockets
	reg     *registry
	timeout time.Duration
	servers []*http.Server // the operator's endpoints, which the successor takes over
	path    string         // the binary to start
	busy    atomic.Bool
	done    chan struct{} // closed once a successor serves: this process is to go
	leaving sync.Once
}

// locate finds the binary this process was started from, by the path it
// was started as: the file there may since have been replaced, which is
// the point.
func (u *upgrader) locate() error {
	p := os.Args[0]
	if filepath.Base(p) == p {
		lp, err := exec.LookPath(p)
		if err != nil {
			return err
		}
		p = lp
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	u.path = abs
	return nil
}

// upgrade starts a successor and hands it everything. Only one runs at a
// time; after one has succeeded, this process is leaving and starts no
// other.
func (u *upgrader) upgrade() (upgradeResult, error) {
	if !u.busy.CompareAndSwap(false, true) {
		return upgradeResult{}, errUpgrading
	}
	start := time.Now()
	// One move at a time: a deploy under way finishes first, and none
	// starts here until this upgrade is over. If it succeeds, this process
	// is leaving, and the new one takes any successor over.
	ctx, cancel := context.WithTimeout(context.Background(), moveWait)
	release, waited, err := u.gw.BeginMove(ctx, "upgrade")
	cancel()
	if err != nil {
		u.busy.Store(false)
		return upgradeResult{WaitedFor: waited}, err
	}
	u.log.Info("gateway: upgrade starting", zap.String("binary", u.path), zap.String("waited_for", waited))
	res, committed, err := u.run()
	res.Took, res.WaitedFor = time.Since(start), waited
	if err != nil {
		u.log.Error("gateway: upgrade failed", zap.Error(err), zap.Bool("successor_serves", committed))
		if !committed {
			u.busy.Store(false)
		}
		release() // this process serves on, with what it has
		return res, err
	}
	u.log.Info("gateway: upgrade done; the new process serves", zap.Int("pid", res.PID),
		zap.String("version", res.Version), zap.Int("sessions", res.Sessions), zap.Duration("took", res.Took))
	return res, nil
}

// leave tells this process to go, once whoever asked for the upgrade has
// the answer.
func (u *upgrader) leave() { u.leaving.Do(func() { close(u.done) }) }

// run does the upgrade. committed reports whether the successor has taken
// over, so that a failure from then on cannot be undone.
func (u *upgrader) run() (res upgradeResult, committed bool, err error) {
	if u.path == "" {
		return res, false, errors.New("the gateway's binary was not found at start")
	}
	conn, theirs, err := handover.Pair()
	if err != nil {
		return res, false, err
	}
	defer conn.Close()
	files, desc, err := u.socks.pass(4)
	if err != nil {
		theirs.Close()
		return res, false, err
	}
	cmd := exec.Command(u.path, os.Args[1:]...)
	cmd.ExtraFiles = append([]*os.File{theirs}, files...)
	cmd.Env = append(os.Environ(), handoverEnv+"=3", upgradeEnv+"="+desc, linkedEnv+"="+u.gw.LinkedAddr())
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Start()
	theirs.Close()
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		return res, false, fmt.Errorf("starting %s: %w", u.path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	msgs := receive(conn)

	// Until the successor says it is ready, nothing has changed here.
	stop := func(why error) (upgradeResult, bool, error) {
		cmd.Process.Kill()
		<-exited
		return res, false, why
	}
	timer := time.NewTimer(u.timeout)
	defer timer.Stop()
	select {
	case m := <-msgs:
		switch {
		case m.err != nil:
			// The socket closed: the successor exited, and says how.
			err := <-exited
			return res, false, fmt.Errorf("the new gateway exited before it was ready: %v", err)
		case m.kind == msgFailed:
			<-exited
			return res, false, fmt.Errorf("the new gateway refused to start: %s", m.payload)
		case m.kind != msgReady:
			return stop(fmt.Errorf("the new gateway said %q before it was ready", m.kind))
		}
		if err := json.Unmarshal(m.payload, &res); err != nil {
			return stop(fmt.Errorf("the new gateway's ready message: %w", err))
		}
	case err := <-exited:
		return res, false, fmt.Errorf("the new gateway exited before it was ready: %v", err)
	case <-timer.C:
		return stop(fmt.Errorf("the new gateway was not ready within %v", u.timeout))
	}

	// The switch: the successor accepts, this process stops accepting.
	if err := conn.Send(msgAccept, nil, nil); err != nil {
		return stop(err)
	}
	u.socks.keepPaths()
	// Requests under way, this upgrade's own among them, finish; the
	// registry serves until its registrations go over, last.
	u.socks.pauseAllBut("epmd")
	mover := &socketMover{conn: conn, msgs: msgs}
	moved, err := u.gw.MoveOut(context.Background(), mover)
	res.Sessions = moved
	if err != nil {
		select {
		case werr := <-exited:
			// The new process died: this one is in charge again, of
			// every session that had not moved, and of its sockets.
			u.socks.resumeAll()
			u.log.Warn("gateway: the new gateway died during the upgrade; this process serves again",
				zap.Int("moved", moved), zap.NamedError("exit", werr))
			return res, false, fmt.Errorf("the new gateway exited during the upgrade (%v) after taking %d sessions: %w; this process serves on with the rest", werr, moved, err)
		case <-time.After(exitWait):
			// It lives, and serves: the sessions that did not move stay
			// here until they end.
			return res, true, fmt.Errorf("moving sessions stopped after %d: %w (the rest stay with this process)", moved, err)
		}
	}
	if u.reg != nil {
		if err := u.passRegistry(conn, msgs); err != nil {
			return res, true, fmt.Errorf("handing the registry over: %w", err)
		}
	}
	if err := conn.Send(msgDone, nil, nil); err != nil {
		return res, true, fmt.Errorf("finishing: %w", err)
	}
	if err := expect(msgs, msgServing); err != nil {
		return res, true, fmt.Errorf("finishing: %w", err)
	}
	go func() {
		// The successor runs on; this process does not wait for it.
		if err := <-exited; err != nil {
			u.log.Info("gateway: the new gateway has exited", zap.Error(err))
		}
	}()
	return res, true, nil
}

// registryState is what the registry and the limits carry over.
type registryState struct {
	Registry epmd.State
	Limits   []byte
}

// passRegistry hands the registrations over, last, so that the successor
// could find the backend in this process's registry until now.
func (u *upgrader) passRegistry(conn *handover.Conn, msgs <-chan message) error {
	st, files, err := u.reg.srv.Export()
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(registryState{Registry: st, Limits: u.gw.ExportLimits()}); err != nil {
		return err
	}
	if err := conn.Send(msgRegistry, buf.Bytes(), files); err != nil {
		return err
	}
	return expect(msgs, msgTaken)
}

// retire lets this process go once its successor serves: it waits for the
// players it relays for the successor (TLS, WebSockets that cannot
// resume), and stops.
func (u *upgrader) retire() {
	for _, srv := range u.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(ctx) // the answer to the upgrade goes out
		cancel()
	}
	if n := u.gw.Relays(); n > 0 {
		u.log.Info("gateway: relaying players for the new gateway until they leave", zap.Int("players", n))
		u.gw.WaitRelays()
	}
	u.gw.Close()
}

// message is one message from the other process, or the error that ended
// them.
type message struct {
	kind    byte
	payload []byte
	files   []*os.File
	err     error
}

// receive reads messages until the connection ends.
func receive(conn *handover.Conn) <-chan message {
	c := make(chan message, 1)
	go func() {
		defer close(c)
		for {
			kind, payload, files, err := conn.Recv()
			c <- message{kind, payload, files, err}
			if err != nil {
				return
			}
		}
	}()
	return c
}

// handoverWait bounds each answer the other process owes once it is up.
const handoverWait = 30 * time.Second

// expect waits for a message of kind.
func expect(msgs <-chan message, kind byte) error {
	t := time.NewTimer(handoverWait)
	defer t.Stop()
	select {
	case m, ok := <-msgs:
		switch {
		case !ok:
			return errors.New("the other gateway went away")
		case m.err != nil:
			return fmt.Errorf("the other gateway went away: %w", m.err)
		case m.kind == msgRefused:
			return fmt.Errorf("the other gateway refused: %s", m.payload)
		case m.kind != kind:
			for _, f := range m.files {
				f.Close()
			}
			return fmt.Errorf("the other gateway said %q, not %q", m.kind, kind)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("no answer from the other gateway within %v", handoverWait)
	}
}

// socketMover is gateway.Mover over the handover socket.
type socketMover struct {
	conn *handover.Conn
	msgs <-chan message
}

func (m *socketMover) Offer(state []byte, conns []*os.File) error {
	if err := m.conn.Send(msgBatch, state, conns); err != nil {
		return err
	}
	return expect(m.msgs, msgPrepared)
}

func (m *socketMover) Commit() error {
	if err := m.conn.Send(msgCommit, nil, nil); err != nil {
		return err
	}
	return expect(m.msgs, msgCommitted)
}

// predecessorLink is a successor's side of an upgrade.
type predecessorLink struct {
	conn    *handover.Conn
	once    sync.Once
	release func() // gives the move token back
	linked  string // the address of the backend the old process is linked to
	// arrived, if set, is called once no more sessions will arrive.
	arrived func()
}

// predecessor returns the link to the gateway this process takes over
// from, or nil if it was started otherwise.
func predecessor() (*predecessorLink, error) {
	v := os.Getenv(handoverEnv)
	if v == "" {
		return nil, nil
	}
	os.Unsetenv(handoverEnv)
	linked := os.Getenv(linkedEnv)
	os.Unsetenv(linkedEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q", handoverEnv, v)
	}
	syscall.CloseOnExec(fd)
	conn, err := handover.FromFile(os.NewFile(uintptr(fd), "handover"))
	if err != nil {
		return nil, err
	}
	return &predecessorLink{conn: conn, linked: linked}, nil
}

// failed tells the predecessor why this process will not take over.
func (p *predecessorLink) failed(err error) {
	p.once.Do(func() {
		p.conn.SetDeadline(time.Now().Add(time.Second))
		p.conn.Send(msgFailed, []byte(err.Error()), nil)
		p.conn.Close()
	})
}

// readyWait bounds how long a successor waits to link to the backend
// before it says it is ready: the sessions it takes carry on sooner when
// it has, but a backend that is away must not hold the upgrade up.
const readyWait = 3 * time.Second

// takeOver is the successor's side of the upgrade: it says it is ready,
// starts serving when told, takes the sessions and the registry, and
// tells systemd it is the service's main process now.
func (p *predecessorLink) takeOver(log *zap.Logger, gw *gateway.Server, reg *registry, startServing func()) error {
	// No deploy starts here until every session has come: one that did
	// would leave the later ones on the backend they left.
	release, _, err := gw.BeginMove(context.Background(), "upgrade")
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	p.release = release
	gw.Start()
	deadline := time.Now().Add(readyWait)
	for !gw.Linked() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // linking is a few round trips; nothing to wait on
	}
	ready, _ := json.Marshal(upgradeResult{PID: os.Getpid(), Version: version})
	if err := p.conn.Send(msgReady, ready, nil); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	msgs := receive(p.conn)
	m := <-msgs
	if m.err != nil || m.kind != msgAccept {
		return fmt.Errorf("upgrade: the old gateway did not go on: %v", m.err)
	}
	startServing()
	log.Info("gateway: taking over", zap.Int("pid", os.Getpid()), zap.String("version", version))
	go p.receiveAll(log, gw, reg, msgs)
	return nil
}

// receiveAll takes the sessions and the registry until Done.
func (p *predecessorLink) receiveAll(log *zap.Logger, gw *gateway.Server, reg *registry, msgs <-chan message) {
	defer p.conn.Close()
	defer p.release()
	if p.arrived != nil {
		defer p.arrived()
	}
	var arrived *gateway.Arrivals
	sessions := 0
	for m := range msgs {
		if m.err != nil {
			if arrived != nil {
				arrived.Discard() // never committed: the old gateway keeps them
			}
			log.Warn("gateway: the old gateway went away during the upgrade", zap.Error(m.err))
			return
		}
		switch m.kind {
		case msgBatch:
			a, err := gw.Receive(m.payload, m.files)
			if err != nil {
				p.conn.Send(msgRefused, []byte(err.Error()), nil)
				continue
			}
			arrived = a
			p.conn.Send(msgPrepared, nil, nil)
		case msgCommit:
			if arrived == nil {
				p.conn.Send(msgRefused, []byte("nothing to commit"), nil)
				continue
			}
			// Said before the sessions start: if the old gateway does not
			// hear it, it must be that this process died first.
			if err := p.conn.Send(msgCommitted, nil, nil); err != nil {
				arrived.Discard()
				arrived = nil
				continue
			}
			sessions += arrived.Len()
			arrived.Start()
			arrived = nil
		case msgRegistry:
			if err := p.takeRegistry(log, gw, reg, m); err != nil {
				p.conn.Send(msgRefused, []byte(err.Error()), nil)
				continue
			}
			p.conn.Send(msgTaken, nil, nil)
		case msgDone:
			p.conn.Send(msgServing, nil, nil)
			systemd.Notify(fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
			log.Info("gateway: took over", zap.Int("sessions", sessions))
			return
		default:
			for _, f := range m.files {
				f.Close()
			}
		}
	}
}

// takeRegistry takes the predecessor's registrations and serves the
// registry.
func (p *predecessorLink) takeRegistry(log *zap.Logger, gw *gateway.Server, reg *registry, m message) error {
	var st registryState
	if err := gob.NewDecoder(bytes.NewReader(m.payload)).Decode(&st); err != nil {
		for _, f := range m.files {
			f.Close()
		}
		return err
	}
	gw.ImportLimits(st.Limits)
	if reg == nil {
		for _, f := range m.files {
			f.Close()
		}
		return nil
	}
	if err := reg.srv.Import(st.Registry, m.files); err != nil {
		return err
	}
	reg.serve(log)
	return nil
}

// runUpgrade is `gateway upgrade`: it asks the running gateway to upgrade
// itself and waits for the outcome.
func runUpgrade(args []string, out io.Writer) error {
	fs, path := controlFlags("upgrade")
	fs.Parse(args)
	if fs.NArg() > 0 {
		fs.Usage()
		return errors.New("no arguments")
	}
	body, err := askFor(http.MethodPost, *path, "/upgrade", "", 10*time.Minute)
	if err != nil {
		return err
	}
	var res upgradeResult
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if res.WaitedFor != "" {
		fmt.Fprintf(out, "waited for the %s under way to finish first\n", res.WaitedFor)
	}
	fmt.Fprintf(out, "upgraded: pid %d, version %s, %d sessions moved in %v\n", res.PID, res.Version, res.Sessions, res.Took.Round(time.Millisecond))
	return nil
}
