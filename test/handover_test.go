package test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// typers are players logged in to the demo and typing numbered lines at
// random intervals, checked as the chaos soak checks them.
type typers struct {
	t       *testing.T
	players []*soakPlayer
	stop    chan struct{}
	typing  sync.WaitGroup
}

func startTypers(t *testing.T, addr string, n int) *typers {
	t.Helper()
	ty := &typers{t: t, stop: make(chan struct{})}
	for i := range n {
		p := &soakPlayer{name: "h" + strconv.Itoa(i), seen: map[int64]bool{}, next: 1, done: make(chan struct{})}
		c := dial(t, addr, p.name)
		c.login()
		c.conn.SetReadDeadline(time.Time{})
		p.conn = c.conn
		go p.read(c.r)
		ty.players = append(ty.players, p)
		ty.typing.Add(1)
		go func() {
			defer ty.typing.Done()
			for {
				select {
				case <-ty.stop:
					return
				case <-time.After(time.Duration(5+i%20) * time.Millisecond):
				}
				k := p.sent.Load() + 1
				p.conn.SetWriteDeadline(time.Now().Add(waitFor))
				if _, err := fmt.Fprintf(p.conn, "echo %s-%d\r\n", p.name, k); err != nil {
					return
				}
				p.sent.Store(k)
			}
		}()
	}
	return ty
}

// answered is how many lines have been answered, all players together.
func (ty *typers) answered() int64 {
	var n int64
	for _, p := range ty.players {
		p.mu.Lock()
		n += p.next - 1
		p.mu.Unlock()
	}
	return n
}

// waitAnswered waits until n more lines have been answered.
func (ty *typers) waitAnswered(n int64) {
	ty.t.Helper()
	want := ty.answered() + n
	eventually(ty.t, fmt.Sprintf("%d more lines answered", n), func() bool { return ty.answered() >= want })
}

// finish stops typing, waits for every line's answer and checks that none
// was lost, repeated or answered out of order, on connections that never
// dropped.
func (ty *typers) finish() {
	ty.t.Helper()
	close(ty.stop)
	ty.typing.Wait()
	for _, p := range ty.players {
		fmt.Fprintf(p.conn, "echo %s-end\r\n", p.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	for _, p := range ty.players {
		select {
		case <-p.done:
		case <-ctx.Done():
			ty.t.Errorf("%s: the last line was never answered", p.name)
			continue
		}
		p.mu.Lock()
		if p.disconnected != nil || p.duplicates != 0 || p.outOfOrder != 0 {
			ty.t.Errorf("%s: disconnected %v, %d repeated, %d out of order", p.name, p.disconnected, p.duplicates, p.outOfOrder)
		}
		p.mu.Unlock()
		if n := p.lost(); n != 0 {
			ty.t.Errorf("%s: %d lines lost", p.name, n)
		}
	}
}

// exitCode waits for a process to exit and returns its status.
func exitCode(t *testing.T, p *proc) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(waitFor):
		// Its goroutines, in its log, say what it waits for.
		p.kill(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		t.Fatalf("%s did not exit", p.name)
	}
	return p.cmd.ProcessState.ExitCode()
}

func successor(t *testing.T, sys *system, args ...string) *proc {
	t.Helper()
	return start(t, "backend", sys.env(), append([]string{"-cookie-file", sys.cookie, "-takeover"}, args...)...)
}

// TestBackendHandover deploys a new backend while players type: the
// successor takes every player over, logged in, with nothing typed lost,
// repeated or out of order, and nobody told anything; the old backend
// exits 0 by itself and the successor holds the name.
func TestBackendHandover(t *testing.T) {
	sys := startSystem(t)
	old := sys.startBackend()
	ty := startTypers(t, sys.telnet, 6)
	watcher := dial(t, sys.telnet, "Watcher")
	watcher.login()
	before := watcher.facts()
	ty.waitAnswered(30)

	next := successor(t, sys)
	if code := exitCode(t, old); code != 0 {
		t.Errorf("the old backend exited with status %d, want 0", code)
	}
	ty.waitAnswered(60)
	ty.finish()

	after := watcher.facts()
	if after["id"] != before["id"] || after["handover"] != "yes" || after["resumed"] != "1" {
		t.Errorf("session after the handover: %v (before: %v)", after, before)
	}
	watcher.who("Watcher, h0, h1, h2, h3, h4, h5")
	if n := next.count("talker: player handed over"); n != 7 {
		t.Errorf("the successor took %d players over, want 7", n)
	}
	if n := next.count("talker: new player"); n != 0 {
		t.Errorf("the successor met %d new players: their login was lost", n)
	}
	sys.gw.waitLog("gateway: players handed to the backend's successor", 1)
	next.waitLog("backend: took the name over", 1)
	if n := sys.gw.count("gateway: handing the players to the backend's successor"); n != 1 {
		t.Errorf("the gateway handed the players over %d times", n)
	}
	// A new player goes to the successor.
	late := dial(t, sys.telnet, "Late")
	late.login()
	next.waitLogged("talker: new player", "session", late.facts()["id"])
}

// TestSuccessorGetsReady: a successor that takes 2 s to get ready (a game
// loading its world) leaves the players on the old backend meanwhile.
func TestSuccessorGetsReady(t *testing.T) {
	sys := startSystem(t)
	old := sys.startBackend()
	ty := startTypers(t, sys.telnet, 3)
	next := successor(t, sys, "-ready-delay", "2s")
	next.waitLog("backend: getting ready", 1)
	ty.waitAnswered(30) // answered by the old backend, which still runs
	select {
	case <-old.exited:
		t.Fatal("the old backend went before its successor was ready")
	default:
	}
	if code := exitCode(t, old); code != 0 {
		t.Errorf("the old backend exited with status %d", code)
	}
	ty.waitAnswered(30)
	ty.finish()
}

// TestHandoverFailures kills one backend or the other as the handover
// starts, with enough players that it takes more than one batch: the
// players end up on the one that lives, nobody is disconnected and nothing
// typed is lost. A kill that comes after the handover has finished leaves
// no backend (the old one had retired): then a new one is started, as an
// operator would, and the players carry on there.
func TestHandoverFailures(t *testing.T) {
	for _, kill := range []string{"successor", "old"} {
		t.Run(kill, func(t *testing.T) {
			sys := startSystem(t)
			old := sys.startBackend()
			ty := startTypers(t, sys.telnet, 10)
			sys.hold(2 * 200) // idle: enough for more than one batch
			ty.waitAnswered(20)
			next := successor(t, sys)
			sys.gw.waitLog("gateway: handing the players to the backend's successor", 1)
			victim, survivor := next, old
			if kill == "old" {
				victim, survivor = old, next
			}
			victim.kill(syscall.SIGKILL)
			victim.wait()
			select {
			case <-survivor.exited:
				t.Logf("the kill came after the handover; starting a new backend")
				sys.startBackend()
			case <-time.After(500 * time.Millisecond):
				if kill == "successor" && sys.gw.count("gateway: the backend's successor failed; the backend keeps the players") == 0 &&
					sys.gw.count("gateway: players handed to the backend's successor") == 0 {
					t.Errorf("the gateway did not notice the successor fail")
				}
			}
			ty.waitAnswered(100)
			ty.finish()
		})
	}
}

// TestSecondSuccessorRefused: while one successor waits to take over,
// another is refused with a clear message; and a backend started without
// -takeover under a taken name says so.
func TestSecondSuccessorRefused(t *testing.T) {
	// A gateway for another game: nobody hands the players over, so the
	// first successor waits.
	sys := startSystem(t, "-backend", "other")
	start(t, "backend", sys.env(), "-cookie-file", sys.cookie).waitLog("backend: registered", 1)
	waiting := successor(t, sys)
	waiting.waitLog("backend: ready to take over", 1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-takeover"}, "another successor is already taking over"},
		{nil, `the name "game" is taken: a backend is running under it; start this one with -takeover`},
	} {
		cmd := exec.Command(filepath.Join(binDir, "backend"), append([]string{"-cookie-file", sys.cookie}, tc.args...)...)
		cmd.Env = append(cmd.Environ(), sys.env()...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("backend %v: %v\n%s\nwant it refused: %q", tc.args, err, out, tc.want)
		}
	}
}
