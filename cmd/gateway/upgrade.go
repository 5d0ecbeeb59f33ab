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
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"holdfast/epmd"
	"holdfast/gateway"
	"holdfast/internal/systemd"
	"holdfast/internal/upgrade"
)

// An upgrade replaces this gateway process with a new one, started from
// the binary at the path this one was started from, with the same command
// line and environment, its settings read anew. Package upgrade holds the
// choreography; this file gives it the gateway's part.

// upgrader runs upgrades of this process, and lets it go once one has
// succeeded.
type upgrader struct {
	upgrade.Upgrader
	gw      *gateway.Server
	servers []*http.Server // the operator's endpoints, which the new process takes over
	done    chan struct{}  // closed once the new process serves: this process is to go
	leaving sync.Once
}

func newUpgrader(log *zap.Logger, parts *gatewayParts, timeout time.Duration) *upgrader {
	u := &upgrader{gw: parts.gw, done: make(chan struct{})}
	u.Gateway, u.Logger, u.ReadyTimeout = parts, log, timeout
	if err := u.locate(); err != nil {
		log.Warn("gateway: upgrades will not work", zap.Error(err))
	}
	return u
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
	u.Path, u.Args = abs, os.Args[1:]
	return nil
}

// errUpgrading is an upgrade asked for while one runs.
var errUpgrading = upgrade.ErrUnderWay

// upgrade runs an upgrade; see upgrade.Upgrader.Upgrade. One that
// failed after the new process took the sessions leaves this process
// serving on: its copies of their sockets are closed at once. After one
// that succeeded, leave closes them, once the answer has gone.
func (u *upgrader) upgrade() (upgrade.Result, error) {
	res, err := u.Upgrade()
	if err != nil && !errors.Is(err, errUpgrading) && u.gw != nil {
		u.gw.CloseMoved()
	}
	return res, err
}

// leave tells this process to go, once whoever asked for the upgrade has
// the answer. Its copies of the moved sockets are closed first, so that
// a player who leaves the new process is hung up on at once, whatever
// this process's other requests keep it for.
func (u *upgrader) leave() {
	u.leaving.Do(func() {
		if u.gw != nil {
			u.gw.CloseMoved()
		}
		close(u.done)
	})
}

// retire lets this process go once the new one serves: it waits for the
// players it relays for the new process (TLS, WebSockets that cannot
// resume), and stops.
func (u *upgrader) retire() {
	for _, srv := range u.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(ctx) // the answer to the upgrade goes out
		cancel()
	}
	if n := u.gw.Relays(); n > 0 {
		u.Logger.Info("gateway: relaying players for the new gateway until they leave", zap.Int("players", n))
		u.gw.WaitRelays()
	}
	u.gw.Close()
}

// gatewayParts is the gateway's part in an upgrade, on either side:
// upgrade.Gateway in the old process, upgrade.Receiver in the new.
type gatewayParts struct {
	log   *zap.Logger
	gw    *gateway.Server
	socks *sockets
	reg   *registry // nil without an embedded registry
}

func (g *gatewayParts) BeginMove(ctx context.Context) (func(), string, error) {
	return g.gw.BeginMove(ctx, "upgrade")
}

func (g *gatewayParts) Sockets() ([]*os.File, []string, error) {
	files, desc, err := g.socks.pass(upgrade.FirstFile)
	if err != nil {
		return nil, nil, err
	}
	return files, []string{upgradeEnv + "=" + desc}, nil
}

func (g *gatewayParts) Backend() string { return g.gw.LinkedAddr() }

func (g *gatewayParts) Pause() {
	g.socks.keepPaths()
	// Requests under way, the upgrade's own among them, finish; the
	// registry serves until its registrations go over, last.
	g.socks.pauseAllBut("epmd")
}

func (g *gatewayParts) Resume() { g.socks.resumeAll() }

func (g *gatewayParts) MoveOut(ctx context.Context, m upgrade.Mover) (int, error) {
	return g.gw.MoveOut(ctx, m)
}

// registryState is what the registry and the limits carry over.
type registryState struct {
	Registry epmd.State
	Limits   []byte
}

func (g *gatewayParts) Registry() ([]byte, []*os.File, error) {
	if g.reg == nil {
		return nil, nil, nil
	}
	st, files, err := g.reg.srv.Export()
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(registryState{Registry: st, Limits: g.gw.ExportLimits()}); err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, err
	}
	return buf.Bytes(), files, nil
}

func (g *gatewayParts) Receive(state []byte, conns []*os.File) (upgrade.Arrivals, error) {
	a, err := g.gw.Receive(state, conns)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// TakeRegistry takes the old process's registrations and serves the
// registry.
func (g *gatewayParts) TakeRegistry(state []byte, files []*os.File) error {
	var st registryState
	if err := gob.NewDecoder(bytes.NewReader(state)).Decode(&st); err != nil {
		for _, f := range files {
			f.Close()
		}
		return err
	}
	g.gw.ImportLimits(st.Limits)
	if g.reg == nil {
		for _, f := range files {
			f.Close()
		}
		return nil
	}
	if err := g.reg.srv.Import(st.Registry, files); err != nil {
		return err
	}
	g.reg.serve(g.log)
	return nil
}

// readyWait bounds how long a new process waits to link to the backend
// before it says it is ready: the sessions it takes carry on sooner when
// it has, but a backend that is away must not hold the upgrade up.
const readyWait = 3 * time.Second

// takeOverGC is the collector's target (GOGC) while the sessions come.
const takeOverGC = 400

// takeOver is the new process's side of the upgrade: it says it is ready,
// starts serving when told, takes the sessions and the registry, and tells
// systemd it is the service's main process now. arrived, if set, is
// called once no more sessions will come.
func takeOver(pred *upgrade.Predecessor, parts *gatewayParts, startServing, arrived func()) error {
	log, gw := parts.log, parts.gw
	// No deploy starts here until every session has come: one that did
	// would leave the later ones on the backend they left.
	release, _, err := gw.BeginMove(context.Background(), "upgrade")
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	gw.Start()
	ctx, cancel := context.WithTimeout(context.Background(), readyWait)
	gw.WaitLinked(ctx)
	cancel()
	if err := pred.Ready(upgrade.Hello{PID: os.Getpid(), Version: version}); err != nil {
		release()
		return err
	}
	startServing()
	stop := stopAsked() // before the line a test may kill this process at
	log.Info("gateway: taking over", zap.Int("pid", os.Getpid()), zap.String("version", version))
	if stop {
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	}
	go func() {
		defer release()
		if arrived != nil {
			defer arrived()
		}
		// The heap grows from nothing to every session's within a second:
		// collected at each doubling on the way, it would be scanned again
		// and again while it holds little garbage.
		if gc := debug.SetGCPercent(takeOverGC); gc < 0 || gc > takeOverGC {
			debug.SetGCPercent(gc)
		} else {
			defer debug.SetGCPercent(gc)
		}
		sessions, err := pred.Receive(parts)
		if err != nil {
			// What it had offered was started: nobody else will serve it.
			log.Warn("gateway: the old gateway went away during the upgrade", zap.Int("sessions", sessions), zap.Error(err))
			return
		}
		systemd.Notify(fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
		log.Info("gateway: took over", zap.Int("sessions", sessions))
	}()
	return nil
}

// stopFileEnv names a file whose presence stops a new process where it
// has said it is taking over and has not yet taken a session: the one
// point at which a test can have an upgrade's new process die before its
// move commits, however fast the machine. The file is removed first, so
// that the next upgrade goes through even if this process is killed as
// soon as it says so.
const stopFileEnv = "GATEWAY_TEST_STOP_TAKEOVER"

// stopAsked reports whether the file stopFileEnv names was there, and
// removes it.
func stopAsked() bool {
	path := os.Getenv(stopFileEnv)
	return path != "" && os.Remove(path) == nil
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
	var res upgrade.Result
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if res.WaitedFor != "" {
		fmt.Fprintf(out, "waited for the %s under way to finish first\n", res.WaitedFor)
	}
	fmt.Fprintf(out, "upgraded: pid %d, version %s, %d sessions moved in %v\n", res.PID, res.Version, res.Sessions, res.Took.Round(time.Millisecond))
	return nil
}
