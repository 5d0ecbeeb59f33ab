package test

import (
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpgradeHoldsQuietPlayers: after an upgrade the new gateway process
// has the backend hold the players who were quiet, without a stream each
// (holdfast_streams{state="held"}), and they lose nothing by it: a line
// said to everyone reaches each of them without a stream opened, what
// each types is answered (on a stream opened at the backend's Wake), a
// player who leaves while held leaves the game too, a second upgrade
// holds them again, an upgrade whose new process dies as it starts leaves
// them held here, a deploy hands them to the successor, which holds them
// too, held players whose backend is killed are resumed on the next one,
// and quiet players whose backend is killed are opened held on the next.
func TestUpgradeHoldsQuietPlayers(t *testing.T) {
	const n = 20
	u := startUpgradable(t, nil, "-hold-idle", "0") // parked streams stay parked: TestIdleStowed has them stowed
	be := u.startBackend()
	held := u.hold(n)
	waitMetric(t, u.admin, `holdfast_streams{state="parked"}`, n)

	upgrade := func(times int) {
		t.Helper()
		pid, _ := u.health()
		syscall.Kill(pid, syscall.SIGUSR2)
		next := u.gw.waitLog("gateway: upgrade done; the new process serves", times)["pid"]
		killOnCleanup(t, int(next.(float64)))
	}
	upgrade(1)
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)

	// The backend has output for every held player: each gets it on the
	// control stream (HeldFrames), and stays held, without a stream.
	talker := dial(t, u.telnet, "Talker")
	talker.login()
	talker.send("say to everyone")
	for _, p := range held {
		if err := p.await("Talker says: to everyone"); err != nil {
			t.Fatal(err)
		}
	}
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)

	// Moved again: held again, and the talker with them.
	waitMetric(t, u.admin, `holdfast_streams{state="parked"}`, 1)
	upgrade(2)
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n+1)

	// One leaves while held: the game hears it (Drop), and the others
	// see them gone.
	gone := held[0]
	gone.c.Close()
	talker.whoUntil(gone.name+" gone, "+held[n-1].name+" there", func(online string) bool {
		return !strings.Contains(online, gone.name) && strings.Contains(online, held[n-1].name)
	})
	// What the held players type opens them, and is answered.
	allAnswer(t, held[1:], "after")
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, 0)

	// Held a third time, and a deploy: the old backend lets each go
	// without a stream, and the successor has them, handed over.
	waitMetric(t, u.admin, `holdfast_streams{state="parked"}`, n)
	upgrade(3)
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)

	// An upgrade whose new process dies as it starts: the held sessions
	// stay with this process, still held, and go on below.
	pid, _ := u.health()
	syscall.Kill(u.upgradeStopped(pid, 4), syscall.SIGKILL)
	u.gw.waitLog("gateway: the new gateway died during the upgrade; this process serves again", 1)
	if now, _ := u.health(); now != pid {
		t.Fatalf("/healthz answers from pid %d, want %d", now, pid)
	}
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)

	// The successor has them held too (OpenHeld), handed over.
	next := successor(t, u.system)
	next.waitLog("backend: took the name over", 1)
	if code := exitCode(t, be); code != 0 {
		t.Errorf("the old backend exited with status %d, want 0", code)
	}
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	for _, p := range held[1:] {
		io.WriteString(p.c, "session\r\n")
		if err := p.await("handover: yes"); err != nil {
			t.Fatal(err)
		}
	}

	// Held a fourth time (the talker, who said nothing, is held still),
	// and the backend dies: the next one resumes them.
	waitMetric(t, u.admin, `holdfast_streams{state="parked"}`, n-1)
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, 1)
	upgrade(4)
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	next.kill(syscall.SIGKILL)
	next.wait()
	waitMetric(t, u.admin, `holdfast_sessions{state="waiting"}`, n)
	be = u.startBackend()
	allAnswer(t, held[1:], "resumed")

	// Quiet, and the backend dies again: the next one opens them all
	// held (no stream each), and each still answers.
	waitMetric(t, u.admin, `holdfast_streams{state="parked"}`, n-1)
	be.kill(syscall.SIGKILL)
	be.wait()
	u.startBackend()
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	allAnswer(t, held[1:], "opened held")
}

// TestTypedWhileAwayAnsweredHeld: players who type while the game is down
// are opened held on the next backend with what they typed, told that the
// game is back and answered on the control stream (HeldFrames): no stream
// opens for any of them.
// Their input is acknowledged there too, so that the backend after a
// further crash does not answer it again; and what they type next opens
// a stream, at the backend's Wake, and is answered.
func TestTypedWhileAwayAnsweredHeld(t *testing.T) {
	const n = 20
	u := startUpgradable(t, nil, "-hold-idle", "0")
	be := u.startBackend()
	held := u.hold(n)
	waitMetric(t, u.admin, `holdfast_streams{state="parked"}`, n)
	crash := func() {
		t.Helper()
		be.kill(syscall.SIGKILL)
		be.wait()
		waitMetric(t, u.admin, `holdfast_sessions{state="waiting"}`, n)
	}
	crash()
	for _, p := range held {
		io.WriteString(p.c, "echo "+p.name+" away\r\n")
	}
	be = u.startBackend()
	for _, p := range held {
		// Told that the game is back (with the answer, in one write, if
		// it comes soon enough), and answered.
		if err := p.await("[holdfast] The game is back."); err != nil {
			t.Fatal(err)
		}
		if err := p.await("echo: " + p.name + " away"); err != nil {
			t.Fatal(err)
		}
	}
	if got := scrape(t, u.admin)[`holdfast_streams{state="held"}`]; got != n {
		t.Fatalf("%v sessions held after their answers, want %d: a stream opened", got, n)
	}

	crash()
	be = u.startBackend()
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	for _, p := range held {
		io.WriteString(p.c, "echo "+p.name+" again\r\n")
		p.c.SetReadDeadline(time.Now().Add(2 * waitFor))
		for {
			l, err := p.r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			if strings.HasPrefix(l, "echo: "+p.name+" away") {
				t.Fatalf("%s: the line typed while away was answered twice", p.name)
			}
			if strings.HasPrefix(l, "echo: "+p.name+" again") {
				break
			}
		}
		p.c.SetReadDeadline(time.Time{})
	}
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, 0)
}

// TestIdleStowed: players idle for -hold-idle are held by the backend
// without a stream each (Stow), and lose nothing by it: a line said to
// everyone reaches them held, what each types is answered, one who leaves
// leaves the game; stowed, they go through an upgrade, a deploy and a
// backend crash, and answer after each.
func TestIdleStowed(t *testing.T) {
	const n = 20
	u := startUpgradable(t, nil, "-hold-idle", "1s")
	be := u.startBackend()
	held := u.hold(n)
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	waitMetric(t, u.admin, `holdfast_streams{state="parked"}`, 0)
	if got := scrape(t, u.admin)["holdfast_stowed_total"]; got != n {
		t.Fatalf("holdfast_stowed_total %v, want %d", got, n)
	}

	talker := dial(t, u.telnet, "Talker")
	talker.login()
	talker.send("say to everyone")
	for _, p := range held {
		if err := p.await("Talker says: to everyone"); err != nil {
			t.Fatal(err)
		}
	}
	gone := held[0]
	gone.c.Close()
	talker.whoUntil(gone.name+" gone, "+held[n-1].name+" there", func(online string) bool {
		return !strings.Contains(online, gone.name) && strings.Contains(online, held[n-1].name)
	})
	held = held[1:]
	allAnswer(t, held, "typed")

	// Stowed again, with the talker: an upgrade, and the new process
	// holds them.
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	pid, _ := u.health()
	syscall.Kill(pid, syscall.SIGUSR2)
	next := u.gw.waitLog("gateway: upgrade done; the new process serves", 1)["pid"]
	killOnCleanup(t, int(next.(float64)))
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	allAnswer(t, held, "upgraded")

	// Stowed again: a deploy hands them to the successor.
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	succ := successor(t, u.system)
	succ.waitLog("backend: took the name over", 1)
	if code := exitCode(t, be); code != 0 {
		t.Errorf("the old backend exited with status %d, want 0", code)
	}
	for _, p := range held {
		io.WriteString(p.c, "session\r\n")
		if err := p.await("handover: yes"); err != nil {
			t.Fatal(err)
		}
	}

	// Stowed again on the successor, which dies: the next one resumes them.
	waitMetric(t, u.admin, `holdfast_streams{state="held"}`, n)
	succ.kill(syscall.SIGKILL)
	succ.wait()
	waitMetric(t, u.admin, `holdfast_sessions{state="waiting"}`, n)
	u.startBackend()
	allAnswer(t, held, "resumed")
}
