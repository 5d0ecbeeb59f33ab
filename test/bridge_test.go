package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/gateway/telnet"
)

// tinyMUX is a TinyMUX game of the test's own, made with Debian's
// tinymux-install on a free port.
type tinyMUX struct {
	t      *testing.T
	dir    string // the game directory, holding Startmux and netmux.conf
	addr   string
	groups []int // the process group of each start: netmux and its helpers
}

// startTinyMUX installs a TinyMUX game in a directory of the test's and
// starts it.
func startTinyMUX(t *testing.T) *tinyMUX {
	t.Helper()
	install, err := exec.LookPath("tinymux-install")
	if err != nil {
		install = "/usr/games/tinymux-install" // Debian puts it outside root's PATH
		if _, serr := os.Stat(install); serr != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("tinymux-install is not installed; .ci/run must install tinymux")
			}
			t.Skip("tinymux is not installed")
		}
	}
	top := t.TempDir()
	cmd := exec.Command(install)
	cmd.Dir = top
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tinymux-install: %v\n%s", err, out)
	}
	m := &tinyMUX{t: t, dir: filepath.Join(top, "tinymux", "game")}
	conf := filepath.Join(m.dir, "netmux.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	m.addr = "127.0.0.1:" + strconv.Itoa(port)
	b = regexp.MustCompile(`(?m)^port \d+$`).ReplaceAll(b, []byte("port "+strconv.Itoa(port)))
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.kill()
		// netmux's helpers (stubslave, slave) outlive it: end them too.
		for _, g := range m.groups {
			syscall.Kill(-g, syscall.SIGKILL)
		}
	})
	m.start()
	return m
}

// start runs Startmux and waits until the game accepts connections.
func (m *tinyMUX) start() {
	m.t.Helper()
	os.Remove(filepath.Join(m.dir, "netmux.pid")) // Startmux refuses to start over one
	cmd := exec.Command("./Startmux")
	cmd.Dir = m.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	if cmd.Process != nil {
		m.groups = append(m.groups, cmd.Process.Pid)
	}
	if err != nil {
		m.t.Fatalf("Startmux: %v\n%s", err, out)
	}
	deadline := time.Now().Add(waitFor)
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("TinyMUX does not accept on %s: %v", m.addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port that is not open yet
	}
}

// pid returns the game's process id, from its pid file.
func (m *tinyMUX) pid() int {
	b, err := os.ReadFile(filepath.Join(m.dir, "netmux.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// kill ends the game with SIGKILL and waits until it is gone.
func (m *tinyMUX) kill() {
	pid := m.pid()
	if pid <= 1 {
		return
	}
	syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(waitFor)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); bytes.Contains(b, []byte(") Z ")) {
			break // a zombie whose parent (nohup's shell) is gone: reaped by init
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startBridge starts the bridge to upstream, with extra flags, and waits
// until the gateway has linked to it.
func (s *system) startBridge(upstream string, flags ...string) *proc {
	s.t.Helper()
	n := s.gw.count("gateway: backend linked")
	args := append([]string{"-cookie-file", s.cookie, "-upstream", upstream}, flags...)
	b := start(s.t, "bridge", s.env(), args...)
	s.backends = append(s.backends, b)
	s.gw.waitLog("gateway: backend linked", n+1)
	return b
}

// think has the game evaluate expr for the player, and returns the answer.
func (m *mudClient) think(tag, expr string) string {
	m.t.Helper()
	start := len(m.text)
	m.line("think " + tag + "=<[" + expr + "]>")
	m.until(tag+" answer", func() bool {
		return bytes.Contains(m.text[start:], []byte(tag+"=<")) && bytes.Contains(m.text[start:], []byte(">\n"))
	})
	re := regexp.MustCompile(regexp.QuoteMeta(tag) + `=<([^>]*)>`)
	got := re.FindSubmatch(m.text[start:])
	if got == nil {
		m.t.Fatalf("no %s answer in %q", tag, m.text[start:])
	}
	return string(got[1])
}

// thinkUntil asks until the answer is want: a fact the client has just
// changed reaches the game a moment later.
func (m *mudClient) thinkUntil(tag, expr, want string) {
	m.t.Helper()
	deadline := time.Now().Add(waitFor)
	for i := 0; ; i++ {
		got := m.think(tag+strconv.Itoa(i), expr)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("%s: the game says %q, want %q", expr, got, want)
		}
	}
}

// TestBridgeLateAnswers: a client whose machine runs its answers to the
// offers 40 ms late is greeted by TinyMUX before the gateway has them
// (it said nothing for a few round trips), and TinyMUX asks the bridge
// for the terminal type and character set at once: the bridge answers
// once the client's answers come, not "UNKNOWN" before, and the game
// knows the client as it knows a prompt one.
func TestBridgeLateAnswers(t *testing.T) {
	mux := startTinyMUX(t)
	sys := startSystem(t)
	sys.startBridge(mux.addr)
	m := dialQuietMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptSGA, telnet.OptEOR,
		telnet.OptEcho, telnet.OptNewEnviron, telnet.OptCharset)
	m.width, m.height = 132, 50
	time.Sleep(40 * time.Millisecond) // the client's machine is busy: it reads the offers after this
	m.expect("Welcome to TinyMUX")
	m.line("connect wizard potrzebie")
	m.expect("Last connect")
	if term := m.think("T", "terminfo(me)"); !strings.HasPrefix(term, "TESTCLIENT ") || !strings.Contains(term, "unicode") {
		t.Errorf("terminfo(me) = %q, want the client's name and UTF-8 (CHARSET)", term)
	}
	m.thinkUntil("W", "width(me)", "132")
}

// TestBridgeTinyMUX puts Debian's TinyMUX behind gateway and bridge: a MUD
// client logs in, and the game knows its window size and terminal type
// from the bridge; a resize reaches it; the game is killed and started
// again while the player stays connected, is told once, sees the welcome
// again, and what the player typed meanwhile arrives after it; QUIT ends
// the player's connection.
func TestBridgeTinyMUX(t *testing.T) {
	t.Parallel() // with TestBridgeTinyMUXRestart, which waits for TinyMUX
	mux := startTinyMUX(t)
	sys := startSystem(t)
	br := sys.startBridge(mux.addr)

	m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptSGA, telnet.OptEOR,
		telnet.OptEcho, telnet.OptGMCP, telnet.OptNewEnviron, telnet.OptCharset)
	m.width, m.height = 132, 50
	m.expect("Welcome to TinyMUX")
	m.line("connect wizard potrzebie")
	m.expect("Last connect")
	if got := m.think("W", "width(me)"); got != "132" {
		t.Errorf("width(me) = %q, want 132 (the client's NAWS)", got)
	}
	if got := m.think("H", "height(me)"); got != "50" {
		t.Errorf("height(me) = %q, want 50", got)
	}
	term := m.think("T", "terminfo(me)")
	if !strings.HasPrefix(term, "TESTCLIENT ") || !strings.Contains(term, "unicode") {
		t.Errorf("terminfo(me) = %q, want the client's name and UTF-8 (CHARSET)", term)
	}
	m.naws(100, 40)
	m.thinkUntil("R", "width(me)", "100")

	// The game dies: the player stays, is told, and types meanwhile.
	mux.kill()
	m.expect(bridgeNotice)
	m.line("connect wizard potrzebie")
	m.line("think AFTER=<[width(me)] [terminfo(me)]>")
	mux.start()
	start := len(m.text)
	m.expect("Welcome to TinyMUX")
	m.until("the line typed while the game was down", func() bool { return bytes.Contains(m.text[start:], []byte("AFTER=<")) })
	after := regexp.MustCompile(`AFTER=<([^>]*)>`).FindSubmatch(m.text[start:])
	if after == nil || string(after[1]) != "100 "+term {
		t.Errorf("after the restart the game says %q, want %q", after, "100 "+term)
	}
	if n := bytes.Count(m.text, []byte(bridgeNotice)); n != 1 {
		t.Errorf("the player was told %d times that the game is restarting, want once", n)
	}
	br.waitLog("bridge: the game is back", 1)

	if n := br.count("bridge: the game went away; holding the players"); n != 1 {
		t.Errorf("the bridge saw the game go away %d times, want once", n)
	}

	// The game ends the player's connection: the gateway closes the player's.
	m.line("QUIT")
	err := m.read("the gateway to close the connection", func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("after QUIT: %v, want the connection closed", err)
	}
}

// TestBridgeTakeover deploys a new bridge while a player types: the
// connection to TinyMUX moves with the player, so the game sees no
// disconnect (the player is still logged in, on the one connection it
// had), and every line typed is answered once, in order. Then the bridge
// is killed: the player stays, and finds the game's welcome again on the
// next bridge.
func TestBridgeTakeover(t *testing.T) {
	mux := startTinyMUX(t)
	sys := startSystem(t)
	old := sys.startBridge(mux.addr)

	m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptSGA, telnet.OptEOR,
		telnet.OptEcho, telnet.OptGMCP, telnet.OptNewEnviron, telnet.OptCharset)
	m.width, m.height = 132, 50
	m.expect("Welcome to TinyMUX")
	m.line("connect wizard potrzebie")
	m.expect("Last connect")
	if got := m.think("N", "words(lwho())"); got != "1" {
		t.Fatalf("TinyMUX has %s players connected, want 1", got)
	}
	since := len(m.text)

	next := start(t, "bridge", sys.env(), "-cookie-file", sys.cookie, "-upstream", mux.addr, "-takeover")
	deadline := time.Now().Add(waitFor)
	lines := 0
	for ; ; lines++ {
		if got := m.think(fmt.Sprintf("L%03d", lines), "name(me)"); got != "Wizard" {
			t.Fatalf("line %d: name(me) = %q, want Wizard", lines, got)
		}
		exited := false
		select {
		case <-old.exited:
			exited = true
		default:
		}
		if exited && lines >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old bridge did not exit within %v", waitFor)
		}
	}
	if code := old.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the old bridge exited with status %d, want 0", code)
	}
	next.waitLog("bridge: taking the game's connections over", 1)
	after := string(m.text[since:])
	for i := 0; i <= lines; i++ {
		if n := strings.Count(after, fmt.Sprintf("L%03d=<", i)); n != 1 {
			t.Errorf("line %d answered %d times, want once", i, n)
		}
	}
	if strings.Contains(after, "Welcome to TinyMUX") || strings.Contains(after, bridgeNotice) {
		t.Errorf("the player saw the game's welcome or the notice again: %q", after)
	}
	if got := m.think("N2", "words(lwho())"); got != "1" {
		t.Errorf("TinyMUX has %s players connected after the deploy, want 1 (the same connection)", got)
	}
	if got := m.think("W2", "width(me)"); got != "132" {
		t.Errorf("width(me) = %q after the deploy, want 132", got)
	}

	// A bridge killed loses the connections to the game, not the player:
	// the next bridge opens a new one, and the player finds the welcome.
	next.kill(syscall.SIGKILL)
	next.wait()
	since = len(m.text)
	sys.startBridge(mux.addr)
	m.expect("Welcome to TinyMUX")
	m.line("connect wizard potrzebie")
	m.expect("Last connect")
	if got := m.think("W3", "width(me)"); got != "132" {
		t.Errorf("width(me) = %q on the next bridge, want 132", got)
	}
	if strings.Contains(string(m.text[since:]), bridgeNotice) {
		t.Errorf("the bridge told the player the game is restarting; it was the bridge that restarted")
	}
}

// TestBridgeTinyMUXRestart: TinyMUX's own @restart keeps its connections;
// the bridge passes it through and does not take it for an outage.
func TestBridgeTinyMUXRestart(t *testing.T) {
	t.Parallel() // TinyMUX refuses @restart for its first seconds
	mux := startTinyMUX(t)
	sys := startSystem(t)
	br := sys.startBridge(mux.addr)
	m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptSGA, telnet.OptEOR)
	m.expect("Welcome to TinyMUX")
	m.line("connect wizard potrzebie")
	m.expect("Last connect")
	m.atRestart()
	if got := m.think("SAME", "name(me)"); got != "Wizard" {
		t.Errorf("after @restart name(me) = %q, want Wizard (still logged in)", got)
	}
	if n := br.count("bridge: the game went away; holding the players"); n != 0 {
		t.Errorf("the bridge saw the game go away %d times during @restart", n)
	}
}

// TestBridgeTinyMUXTelnet logs in to TinyMUX through gateway and bridge
// with Debian's telnet in a terminal: TinyMUX learns the terminal's width
// and type from the bridge, as the telnet client told the gateway.
func TestBridgeTinyMUXTelnet(t *testing.T) {
	telnetPath := needTool(t, "telnet")
	mux := startTinyMUX(t)
	sys := startSystem(t)
	sys.startBridge(mux.addr)
	host, port, _ := net.SplitHostPort(sys.telnet)
	tm := startTerminal(t, 100, 30, "env", "TERM=xterm-256color", telnetPath, host, port)
	tm.waitFor("Welcome to TinyMUX", 1)
	tm.keys("connect wizard potrzebie")
	tm.enter()
	tm.waitFor("Last connect", 1)
	tm.keys("think W=[width(me)] T=[terminfo(me)]")
	tm.enter()
	tm.waitFor("W=100 T=", 1)
	got := regexp.MustCompile(`W=100 T=(.*)`).FindStringSubmatch(tm.screen())
	if got == nil || !strings.HasPrefix(strings.ToUpper(got[1]), "XTERM-256COLOR ") {
		t.Errorf("terminfo(me) = %q, want the terminal type telnet sent (TERM=xterm-256color)", got)
	}
}

// TestBridgeGatewayUpgrade upgrades the gateway under a player bridged to
// TinyMUX: the session moves to the new gateway process, and the bridge's
// connection to the game with it untouched: still logged in, on the one
// connection TinyMUX had, no welcome screen again.
func TestBridgeGatewayUpgrade(t *testing.T) {
	mux := startTinyMUX(t)
	sys := startSystem(t)
	br := sys.startBridge(mux.addr)
	m := dialMUD(t, sys.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptSGA, telnet.OptEOR)
	m.expect("Welcome to TinyMUX")
	m.line("connect wizard potrzebie")
	m.expect("Last connect")
	since := len(m.text)

	sys.gw.kill(syscall.SIGUSR2)
	sys.gw.waitLog("gateway: took over", 1)
	var h struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(get(t, sys.admin, "/healthz")), &h); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, h.PID)
	if got := m.think("N", "name(me)"); got != "Wizard" {
		t.Errorf("after the upgrade name(me) = %q, want Wizard", got)
	}
	if got := m.think("C", "words(lwho())"); got != "1" {
		t.Errorf("TinyMUX has %s players connected after the upgrade, want 1", got)
	}
	if after := string(m.text[since:]); strings.Contains(after, "Welcome to TinyMUX") {
		t.Errorf("the player saw the welcome again: %q", after)
	}
	if n := br.count("bridge: the game went away; holding the players"); n != 0 {
		t.Errorf("the bridge saw the game go away %d times", n)
	}
}

// TestBridgeFlags: a bridge told nothing sensible says what is wrong and
// exits 1 at once.
func TestBridgeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-upstream: want the game's HOST:PORT"},
		{[]string{"-upstream", "localhost"}, "-upstream: want the game's HOST:PORT"},
		{[]string{"-upstream", "localhost:4201", "-upstream-proxy", "v3"}, "-upstream-proxy: want v1 or v2"},
		{[]string{"-upstream", "localhost:4201", "extra"}, "unexpected arguments"},
	} {
		out, err := exec.Command(filepath.Join(binDir, "bridge"), tc.args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("bridge %q: %v, %q; want exit 1 saying %q", tc.args, err, out, tc.want)
		}
	}
}

// atRestart runs TinyMUX's @restart, which it refuses for a few seconds
// after it has started, and waits for it to finish.
func (m *mudClient) atRestart() {
	m.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		start := len(m.text)
		m.line("@restart")
		m.until("@restart's answer", func() bool {
			return bytes.Contains(m.text[start:], []byte("Restart finished.")) || bytes.Contains(m.text[start:], []byte("try again"))
		})
		if bytes.Contains(m.text[start:], []byte("Restart finished.")) {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("TinyMUX refused @restart for %v", waitFor)
		}
		time.Sleep(250 * time.Millisecond) // TinyMUX says when to ask again: "in a few seconds"
	}
}

// bridgeNotice is what the bridge tells a player when the game is down,
// in words of its own: the gateway's notice when the bridge itself is
// away begins the same.
const bridgeNotice = "The game is restarting. Stay connected: you will be back in a moment."
