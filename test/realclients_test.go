package test

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// terminal is a program running in a tmux pane of its own tmux server.
type terminal struct {
	t      *testing.T
	tmux   string
	socket string
}

func startTerminal(t *testing.T, width, height int, command ...string) *terminal {
	t.Helper()
	tm := &terminal{t: t, tmux: needTool(t, "tmux"), socket: "holdfast-" + strconv.Itoa(os.Getpid()) + "-" + t.Name()}
	args := append([]string{"new-session", "-d", "-s", "main", "-x", strconv.Itoa(width), "-y", strconv.Itoa(height)}, command...)
	tm.run(args...)
	t.Cleanup(func() { exec.Command(tm.tmux, "-L", tm.socket, "kill-server").Run() })
	return tm
}

func (tm *terminal) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command(tm.tmux, append([]string{"-L", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen returns the pane with its scrollback.
func (tm *terminal) screen() string {
	return tm.run("capture-pane", "-p", "-J", "-t", "main", "-S", "-500")
}

// keys types text literally; enter presses Enter.
func (tm *terminal) keys(text string) { tm.run("send-keys", "-t", "main", "-l", text) }
func (tm *terminal) enter()           { tm.run("send-keys", "-t", "main", "Enter") }

// waitFor waits until the screen shows want count times.
func (tm *terminal) waitFor(want string, count int) {
	tm.t.Helper()
	eventually(tm.t, "the terminal shows "+strconv.Quote(want), func() bool {
		return strings.Count(tm.screen(), want) >= count
	})
}

// fact returns the last value of "key: value" on the screen.
func (tm *terminal) fact(key string) string {
	m := regexp.MustCompile(`(?m)^`+key+`: (.*)$`).FindAllStringSubmatch(tm.screen(), -1)
	if len(m) == 0 {
		return ""
	}
	return strings.TrimSpace(m[len(m)-1][1])
}

// TestTelnetPasswordEcho types a password into Debian's telnet: the
// terminal does not show it, and shows what is typed after it again.
func TestTelnetPasswordEcho(t *testing.T) {
	telnet := needTool(t, "telnet")
	sys := startSystem(t)
	sys.startBackend()
	host, port, _ := strings.Cut(sys.telnet, ":")
	tm := startTerminal(t, 100, 30, telnet, host, port)
	tm.waitFor("What is your name?", 1)
	tm.keys("Tess")
	tm.enter()
	tm.waitFor("Welcome, Tess.", 1)
	tm.keys("password")
	tm.enter()
	tm.waitFor("Password:", 1)
	tm.keys("hunter2")
	tm.enter()
	tm.waitFor("Password of 7 characters noted.", 1)
	if strings.Contains(tm.screen(), "hunter2") {
		t.Fatalf("the password was echoed:\n%s", tm.screen())
	}
	tm.keys("echo seen again")
	tm.waitFor("echo seen again", 1) // typed, echoed locally before Enter
	tm.enter()
	tm.waitFor("echo: seen again", 1)
}

// TestTinTinFacts logs in with TinTin++: the session shows the terminal
// type, MTTS flags and window size the client really sent, the size follows
// a resize, and the facts are still there after a backend restart.
func TestTinTinFacts(t *testing.T) {
	tt := "/usr/games/tt++"
	if _, err := os.Stat(tt); err != nil {
		tt = needTool(t, "tt++")
	}
	sys := startSystem(t)
	be := sys.startBackend()
	host, port, _ := strings.Cut(sys.telnet, ":")
	tm := startTerminal(t, 120, 40, "env", "TERM=xterm-256color", tt, "-e", "#session holdfast "+host+" "+port)
	tm.waitFor("What is your name?", 1)
	tm.keys("Tina")
	tm.enter()
	tm.waitFor("Welcome, Tina.", 1)

	session := func(n int) map[string]string {
		t.Helper()
		tm.keys("session")
		tm.enter()
		tm.waitFor("client_ip:", n)
		f := map[string]string{}
		for _, k := range []string{"resumed", "client", "terminal", "mtts", "width", "height", "charset"} {
			f[k] = tm.fact(k)
		}
		return f
	}
	// The facts reach the game in its Open, or in an update just after
	// where TinTin++, on this loaded machine, answered after the gateway
	// stopped waiting for it.
	var f map[string]string
	eventually(t, "TinTin++'s facts reach the game", func() bool {
		f = session(strings.Count(tm.screen(), "client_ip:") + 1)
		return strings.HasPrefix(f["client"], "TinTin++") && f["terminal"] != "" && f["mtts"] != "0" && f["charset"] == "UTF-8"
	})
	if f["width"] != "120" || f["height"] != "40" {
		t.Errorf("window %sx%s, want the pane's 120x40", f["width"], f["height"])
	}
	first := f

	tm.run("resize-window", "-t", "main", "-x", "100", "-y", "30")
	eventually(t, "the new size reaches the game", func() bool {
		f = session(strings.Count(tm.screen(), "client_ip:") + 1)
		return f["width"] == "100" && f["height"] == "30"
	})

	be.kill(syscall.SIGKILL)
	be.wait()
	tm.waitFor("The game is restarting.", 1)
	sys.startBackend()
	tm.waitFor("The game is back.", 1)
	f = session(strings.Count(tm.screen(), "client_ip:") + 1)
	if f["resumed"] != "1" || f["terminal"] != first["terminal"] || f["mtts"] != first["mtts"] ||
		f["client"] != first["client"] || f["width"] != "100" || f["height"] != "30" {
		t.Errorf("after the restart: %v, before: %v", f, first)
	}
}
