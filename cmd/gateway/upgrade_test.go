package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"holdfast/gateway"
	"holdfast/internal/upgrade"
)

// The gateway's parts fit the upgrade's, and the upgrade's mover is the
// gateway's.
var (
	_ upgrade.Gateway  = (*gatewayParts)(nil)
	_ upgrade.Receiver = (*gatewayParts)(nil)
	_ gateway.Mover    = upgrade.Mover(nil)
)

// stubGateway is an old gateway with no sessions, whose move token is
// taken once a deploy is over, or never.
type stubGateway struct {
	waited string
	block  chan struct{} // if set, BeginMove waits for it and fails
	begun  chan struct{}
}

func (g *stubGateway) BeginMove(ctx context.Context) (func(), string, error) {
	if g.block != nil {
		close(g.begun)
		<-g.block
		return nil, "", errors.New("gateway: upgrade: the deploy under way did not finish")
	}
	return func() {}, g.waited, nil
}
func (g *stubGateway) Sockets() ([]*os.File, []string, error) { return nil, nil, nil }
func (g *stubGateway) Backend() string                        { return "" }
func (g *stubGateway) Pause()                                 {}
func (g *stubGateway) Resume()                                {}
func (g *stubGateway) Registry() ([]byte, []*os.File, error)  { return nil, nil, nil }
func (g *stubGateway) MoveOut(context.Context, upgrade.Mover) (int, error) {
	return 0, nil
}

// inProcess is a new gateway process played by a goroutine.
type inProcess struct {
	pred *upgrade.Predecessor
	done chan struct{}
	err  error
}

func (p *inProcess) Wait() error { <-p.done; return p.err }
func (p *inProcess) Kill() error { return p.pred.Close() }

type noArrivals struct{}

func (noArrivals) Receive([]byte, []*os.File) (upgrade.Arrivals, error) {
	return nil, errors.New("no sessions expected")
}
func (noArrivals) TakeRegistry([]byte, []*os.File) error { return nil }

// TestUpgradeCommand: `gateway upgrade` asks on the control socket and
// prints the outcome: the new process, and the move it waited for; a
// second one while one runs says why it was refused.
func TestUpgradeCommand(t *testing.T) {
	stub := &stubGateway{waited: "deploy"}
	procs := make(chan *inProcess, 2)
	u := &upgrader{done: make(chan struct{})}
	u.Gateway, u.Logger = stub, zaptest.NewLogger(t)
	u.Start = func(conn *os.File, _ []*os.File, _ []string) (upgrade.Process, error) {
		pred, err := upgrade.FromFile(conn, "")
		if err != nil {
			return nil, err
		}
		p := &inProcess{pred: pred, done: make(chan struct{})}
		go func() {
			defer close(p.done)
			if p.err = pred.Ready(upgrade.Hello{PID: 42, Version: "v2"}); p.err == nil {
				_, p.err = pred.Receive(noArrivals{})
			}
		}()
		procs <- p
		return p, nil
	}
	path := filepath.Join(t.TempDir(), "control")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctl := serveControl(zaptest.NewLogger(t), ln, nil, http.NotFoundHandler(), u)
	defer ctl.Close()

	var out bytes.Buffer
	if err := runUpgrade([]string{"-control", path}, &out); err != nil {
		t.Fatal(err)
	}
	if err := (<-procs).Wait(); err != nil {
		t.Errorf("the new process: %v", err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) != 3 || lines[0] != "waited for the deploy under way to finish first" ||
		!strings.HasPrefix(lines[1], "upgraded: pid 42, version v2, 0 sessions moved in ") {
		t.Errorf("gateway upgrade printed:\n%s", out.String())
	}
	select {
	case <-u.done:
	default:
		t.Error("the upgraded process was not told to go")
	}

	// A new upgrader, its move token held by a deploy.
	stub = &stubGateway{block: make(chan struct{}), begun: make(chan struct{})}
	u2 := &upgrader{done: make(chan struct{})}
	u2.Gateway = stub
	ln2, err := net.Listen("unix", path+"2")
	if err != nil {
		t.Fatal(err)
	}
	ctl2 := serveControl(zaptest.NewLogger(t), ln2, nil, http.NotFoundHandler(), u2)
	defer ctl2.Close()
	first := make(chan error, 1)
	go func() { first <- runUpgrade([]string{"-control", path + "2"}, &bytes.Buffer{}) }()
	<-stub.begun
	err = runUpgrade([]string{"-control", path + "2"}, &out)
	if err == nil || !strings.Contains(err.Error(), "409 Conflict: an upgrade is already under way") {
		t.Errorf("a second upgrade at once: %v", err)
	}
	close(stub.block)
	if err := <-first; err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("the upgrade that waited: %v", err)
	}
}
