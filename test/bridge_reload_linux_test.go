package test

import (
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/gateway/telnet"
)

// TestBridgeReload reloads the bridge as systemctl reload does (SIGUSR2):
// it starts its own binary again as its successor, which takes the players
// and their connections to TinyMUX over and tells systemd it is the main
// process; the old bridge exits 0. The player stays logged in on the one
// connection TinyMUX had, and sees neither the welcome nor the notice.
func TestBridgeReload(t *testing.T) {
	mux := startTinyMUX(t)
	sys := startSystem(t)
	notify := filepath.Join(t.TempDir(), "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	told := func() string {
		t.Helper()
		buf := make([]byte, 512)
		nc.SetReadDeadline(time.Now().Add(waitFor))
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("systemd was not told: %v", err)
		}
		return string(buf[:n])
	}
	linked := sys.gw.count("gateway: backend linked")
	old := start(t, "bridge", append(sys.env(), "NOTIFY_SOCKET="+notify), "-cookie-file", sys.cookie, "-upstream", mux.addr)
	sys.gw.waitLog("gateway: backend linked", linked+1)
	if got := told(); got != "READY=1" {
		t.Fatalf("systemd was told %q, want READY=1", got)
	}

	m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptSGA, telnet.OptEOR)
	m.expect("Welcome to TinyMUX")
	m.line("connect wizard potrzebie")
	m.expect("Last connect")
	since := len(m.text)

	old.kill(syscall.SIGUSR2)
	said := told()
	match := regexp.MustCompile(`^MAINPID=(\d+)\nREADY=1$`).FindStringSubmatch(said)
	if match == nil {
		t.Fatalf("systemd was told %q, want the successor's MAINPID and READY=1", said)
	}
	pid, _ := strconv.Atoi(match[1])
	// The successor is the old bridge's child, not the test's: it goes
	// before the old bridge's cleanup waits for its output to end.
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if pid == old.cmd.Process.Pid {
		t.Fatalf("the old bridge said it was the main process again")
	}
	select {
	case <-old.exited:
	case <-time.After(waitFor):
		t.Fatalf("the old bridge did not exit within %v of the reload", waitFor)
	}
	if code := old.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the old bridge exited with status %d, want 0", code)
	}
	old.waitLog("bridge: taking the game's connections over", 1) // the successor's log, on the same output
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the successor, pid %d, is not running: %v", pid, err)
	}
	if got := m.think("N", "name(me)"); got != "Wizard" {
		t.Errorf("name(me) = %q after the reload, want Wizard", got)
	}
	if got := m.think("C", "words(lwho())"); got != "1" {
		t.Errorf("TinyMUX has %s players connected after the reload, want 1 (the same connection)", got)
	}
	if after := string(m.text[since:]); strings.Contains(after, "Welcome to TinyMUX") || strings.Contains(after, bridgeNotice) {
		t.Errorf("the player saw the game's welcome or the notice again: %q", after)
	}
}
