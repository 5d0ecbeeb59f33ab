package test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// registryDeploy is a system whose registry is a standalone cmd/epmd,
// which the test kills and starts again.
type registryDeploy struct {
	*system
	reg  *proc
	port int
}

func startRegistryDeploy(t *testing.T) *registryDeploy {
	t.Helper()
	reg, port := startEPMD(t, ourEPMD)
	sys := startSystemOn(t, port, "-epmd-port", strconv.Itoa(port), "-embed-epmd=false")
	return &registryDeploy{system: sys, reg: reg, port: port}
}

// killRegistry kills the registry: every registration is forgotten.
func (r *registryDeploy) killRegistry() {
	r.t.Helper()
	r.reg.kill(syscall.SIGKILL)
	r.reg.wait()
}

// startRegistry starts the registry again on its port, empty.
func (r *registryDeploy) startRegistry() {
	r.t.Helper()
	r.reg = startPath(r.t, epmdPath(r.t, ourEPMD), nil, "-port", strconv.Itoa(r.port))
	waitEPMD(r.t, r.port)
}

// restartRegistry kills the registry and starts it again at once.
func (r *registryDeploy) restartRegistry() {
	r.t.Helper()
	r.killRegistry()
	r.startRegistry()
}

// deploy starts a successor; it is waited on with the system's backends.
func (r *registryDeploy) deploy() *proc {
	r.t.Helper()
	next := successor(r.t, r.system)
	r.backends = append(r.backends, next)
	return next
}

// holder returns the port the registry gives for name, 0 for none.
func (r *registryDeploy) holder(name string) int {
	n, err := epmdClient(r.port).Lookup(context.Background(), name)
	if err != nil {
		return 0
	}
	return int(n.Port)
}

// servesAll checks how a deploy, or its end, left the system: one backend,
// serving, linked by the gateway and holding the name alone; the other
// backend exited 0 if it was told to retire; every held player answers and
// every typed line was answered once and in order.
func (r *registryDeploy) servesAll(serving, gone *proc, goneRetired bool, held []*heldPlayer, ty *typers) {
	t := r.t
	t.Helper()
	if goneRetired {
		if code := exitCode(t, gone); code != 0 {
			t.Errorf("the old backend exited with status %d, want 0", code)
		}
	} else {
		select {
		case <-gone.exited:
		case <-time.After(waitFor):
			t.Fatalf("the successor killed did not exit")
		}
	}
	addr := serving.waitLog("backend: registered", 1)["addr"].(string)
	_, ps, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(ps)
	eventually(t, "the serving backend holds the name "+addr, func() bool { return r.holder("game") == port })
	eventually(t, "nobody holds the successor's name", func() bool { return r.holder("game~next") == 0 })
	eventually(t, "the gateway is linked to the serving backend "+addr, func() bool {
		return r.gw.lastField("gateway: backend linked", "addr") == addr
	})
	ty.waitAnswered(20)
	ty.finish()
	if lost := r.unanswered(held, "after"); len(lost) > 0 {
		t.Fatalf("%d of %d held players never answered; their sessions in the gateway:\n%s\n%s",
			len(lost), len(held), strings.Join(lost, "\n"), r.diagnosis())
	}
	select {
	case <-serving.exited:
		t.Fatalf("the backend that should serve exited\n%s", r.diagnosis())
	default:
	}
}

// unanswered has every held player ask for an echo and returns, for each
// that gets none, how the gateway sees its session.
func (r *registryDeploy) unanswered(held []*heldPlayer, tag string) []string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lost []*heldPlayer
	sem := make(chan struct{}, 100)
	for _, p := range held {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			io.WriteString(p.c, "echo "+p.name+" "+tag+"\r\n")
			if p.await("echo: "+p.name+" "+tag) != nil {
				mu.Lock()
				lost = append(lost, p)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(lost) == 0 {
		return nil
	}
	var sessions []map[string]any
	path := r.gw.waitLog("gateway: control listening", 1)["path"].(string)
	json.Unmarshal([]byte(runTool(r.t, "gateway", "sessions", "-json", "-control", path)), &sessions)
	byClient := map[string]map[string]any{}
	for _, ss := range sessions {
		c, _ := ss["client"].(string)
		byClient[c] = ss
	}
	var out []string
	for _, p := range lost {
		b, _ := json.Marshal(byClient[p.c.LocalAddr().String()])
		out = append(out, p.name+": "+string(b))
	}
	return out
}

// TestRegistryDeploy kills the standalone registry, and starts it again
// empty, at each point of a deploy: before the successor registers, as it
// registers, while the players move, and after. Whichever of the old
// backend and the successor registers first, the successor's name or the
// backend's own, the players move to the successor, which started later,
// and never back: every held player answers, the old backend exits 0, and
// the successor alone serves and holds the name.
func TestRegistryDeploy(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run overlaps the deploy with the registry's restart and returns
		// the successor.
		run func(r *registryDeploy, old *proc) *proc
	}{
		{"registry down as the successor starts", func(r *registryDeploy, old *proc) *proc {
			r.killRegistry()
			next := r.deploy()
			next.waitLog("backend: cannot register yet; retrying", 1)
			r.startRegistry()
			return next
		}},
		{"successor registers first after the restart", func(r *registryDeploy, old *proc) *proc {
			// The old backend is held still across the restart, so that
			// the successor finds the name free and takes it as its own.
			old.kill(syscall.SIGSTOP)
			r.restartRegistry()
			next := r.deploy()
			next.waitLog("backend: the name was free; took it", 1)
			old.kill(syscall.SIGCONT)
			old.waitLog("epmd: registration lost; registering again", 1)
			return next
		}},
		{"old backend registers first after the restart", func(r *registryDeploy, old *proc) *proc {
			r.restartRegistry()
			old.waitLog("epmd: registered again", 1)
			next := r.deploy()
			next.waitLog("backend: ready to take over", 1)
			return next
		}},
		{"restart as the successor registers", func(r *registryDeploy, old *proc) *proc {
			next := r.deploy()
			next.waitLog("backend: ready to take over", 1)
			r.restartRegistry()
			return next
		}},
		{"restart while the players move", func(r *registryDeploy, old *proc) *proc {
			next := r.deploy()
			r.gw.waitLog("gateway: handing the players to the backend's successor", 1)
			time.Sleep(20 * time.Millisecond) // how far into the move: the overlap under test
			r.restartRegistry()
			return next
		}},
		{"restart after the deploy", func(r *registryDeploy, old *proc) *proc {
			next := r.deploy()
			r.gw.waitLog("gateway: players handed to the backend's successor", 1)
			r.restartRegistry()
			return next
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRegistryDeploy(t)
			old := r.startBackend()
			held := r.hold(*overlapHeld)
			ty := startTypers(t, r.telnet, 3)
			ty.waitAnswered(10)
			next := tc.run(r, old)
			r.servesAll(next, old, true, held, ty)
			if next.count("backend: the name was free; took it") > 0 {
				t.Log("the successor found the name free and took it; the gateway moved the players to it all the same")
			}
		})
	}
}

// TestRegistryDeploySuccessorDies: the registry restarts while the
// players move and the successor dies then: the old backend keeps, or takes
// back, every player, and holds its name again.
func TestRegistryDeploySuccessorDies(t *testing.T) {
	r := startRegistryDeploy(t)
	old := r.startBackend()
	held := r.hold(*overlapHeld)
	ty := startTypers(t, r.telnet, 3)
	ty.waitAnswered(10)
	next := r.deploy()
	r.gw.waitLog("gateway: handing the players to the backend's successor", 1)
	r.killRegistry()
	next.kill(syscall.SIGKILL)
	r.startRegistry()
	r.servesAll(old, next, false, held, ty)
}
