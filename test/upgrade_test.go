package test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"holdfast/gateway/telnet"
)

// The gateway binary of another version, built once, for upgrades.
var (
	nextOnce    sync.Once
	nextGateway string
	nextErr     error
)

const nextVersion = "v2-test"

func nextBuild(t *testing.T) string {
	t.Helper()
	nextOnce.Do(func() {
		nextGateway = filepath.Join(binDir, "gateway-"+nextVersion)
		args := []string{"build", "-ldflags", "-X main.version=" + nextVersion, "-o", nextGateway}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "holdfast/cmd/gateway")...).CombinedOutput()
		if err != nil {
			nextErr = fmt.Errorf("building the next gateway: %v\n%s", err, out)
		}
	})
	if nextErr != nil {
		t.Fatal(nextErr)
	}
	return nextGateway
}

// upgradable is a system whose gateway runs from a copy of its binary that
// the test may replace.
type upgradable struct {
	*system
	path     string // the gateway's binary
	stopFile string // GATEWAY_TEST_STOP_TAKEOVER: see upgradeStopped
}

// upgradeStopped upgrades the gateway process pid, whose new process
// stops itself where it says "gateway: taking over" (the n-th such line),
// before it takes any session, so that a test can kill it there however
// fast the move would have been. It returns the new process's pid.
func (u *upgradable) upgradeStopped(pid, n int) int {
	u.t.Helper()
	if err := os.WriteFile(u.stopFile, nil, 0o600); err != nil {
		u.t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGUSR2)
	return int(u.gw.waitLog("gateway: taking over", n)["pid"].(float64))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".new", b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".new", to); err != nil {
		t.Fatal(err)
	}
}

// startUpgradable starts a gateway from its own copy of the binary, with
// the flags start gives every gateway and extra ones.
func startUpgradable(t *testing.T, env []string, flags ...string) *upgradable {
	t.Helper()
	dir := t.TempDir()
	u := &upgradable{system: &system{t: t, cookie: writeCookie(t, "test-cookie")},
		path: filepath.Join(dir, "gateway"), stopFile: filepath.Join(dir, "stop-takeover")}
	copyFile(t, filepath.Join(binDir, "gateway"), u.path)
	env = append(env[:len(env):len(env)], "GATEWAY_TEST_STOP_TAKEOVER="+u.stopFile)
	args := append([]string{"-metrics", "127.0.0.1:0", "-control", filepath.Join(dir, "gateway.sock"),
		"-max-per-ip", "0", "-conn-rate", "0",
		"-listen", "127.0.0.1:0", "-epmd-port", "0", "-cookie-file", u.cookie}, flags...)
	u.gw = startPath(t, u.path, env, args...)
	reg := u.gw.waitLog("gateway: registry listening", 1)
	u.epmdPort = int(reg["port"].(float64))
	u.admin = u.gw.waitLog("gateway: admin listening", 1)["addr"].(string)
	u.control = u.gw.waitLog("gateway: control listening", 1)["path"].(string)
	u.telnet = u.gw.waitLog("gateway: telnet listening", 1)["addr"].(string)
	return u
}

// health returns the serving gateway's /healthz.
func (u *upgradable) health() (pid int, version string) {
	u.t.Helper()
	var h struct {
		PID     int    `json:"pid"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal([]byte(get(u.t, u.admin, "/healthz")), &h); err != nil {
		u.t.Fatal(err)
	}
	return h.PID, h.Version
}

// killOnCleanup makes sure a gateway that took over is stopped with the
// test.
func killOnCleanup(t *testing.T, pid int) {
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
}

// typist types numbered echo lines, each after the answer to the one
// before, and checks that every answer comes once and in order, with
// nothing from the gateway in between.
type typist struct {
	name     string
	send     func(string) error
	next     func() (string, error)
	answered atomic.Int64 // lines answered so far
	problem  string       // read once run has returned
}

func (ty *typist) run(stop <-chan struct{}, done chan<- *typist) {
	defer func() { done <- ty }()
	for i := 1; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		want := fmt.Sprintf("echo: %s %d", ty.name, i)
		if err := ty.send(fmt.Sprintf("echo %s %d", ty.name, i)); err != nil {
			ty.problem = fmt.Sprintf("sending line %d: %v", i, err)
			return
		}
		for {
			l, err := ty.next()
			if err != nil {
				ty.problem = fmt.Sprintf("waiting for %q: %v", want, err)
				return
			}
			if strings.HasPrefix(l, "[holdfast]") {
				ty.problem = fmt.Sprintf("the gateway told the player %q", l)
				return
			}
			if !strings.HasPrefix(l, "echo: ") {
				continue // the game's arrivals, and the like
			}
			if l != want {
				ty.problem = fmt.Sprintf("answer %q, want %q: repeated or out of order", l, want)
				return
			}
			ty.answered.Store(int64(i))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lineTypist types on a connection read line by line.
func lineTypist(name string, c net.Conn, r *bufio.Reader) *typist {
	return &typist{
		name: name,
		send: func(l string) error {
			c.SetWriteDeadline(time.Now().Add(waitFor))
			_, err := io.WriteString(c, l+"\r\n")
			return err
		},
		next: func() (string, error) {
			c.SetReadDeadline(time.Now().Add(waitFor))
			l, err := r.ReadString('\n')
			return strings.TrimRight(l, "\r\n"), err
		},
	}
}

// mudTypist types with the scripted MUD client, which decompresses MCCP2
// and answers negotiation as it reads.
func mudTypist(name string, m *mudClient) *typist {
	read := len(m.text)
	return &typist{
		name: name,
		send: func(l string) error { return m.write([]byte(l + "\r\n")) },
		next: func() (string, error) {
			err := m.read("a line", func() bool { return strings.Contains(string(m.text[read:]), "\n") })
			if err != nil {
				return "", err
			}
			i := strings.IndexByte(string(m.text[read:]), '\n')
			l := string(m.text[read : read+i])
			read += i + 1
			return strings.TrimRight(l, "\r"), nil
		},
	}
}

// telnetPlayer is Debian's telnet client on pipes.
type telnetPlayer struct {
	cmd   *exec.Cmd
	in    io.Writer
	lines chan string
}

func startTelnet(t *testing.T, addr string) *telnetPlayer {
	t.Helper()
	bin := needTool(t, "telnet")
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(bin, host, port)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	tp := &telnetPlayer{cmd: cmd, in: in, lines: make(chan string, 1000)}
	go func() {
		defer close(tp.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			tp.lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	return tp
}

func (tp *telnetPlayer) next() (string, error) {
	select {
	case l, ok := <-tp.lines:
		if !ok {
			return "", io.EOF
		}
		return l, nil
	case <-time.After(waitFor):
		return "", fmt.Errorf("no line within %v", waitFor)
	}
}

func (tp *telnetPlayer) typist(name string) *typist {
	return &typist{name: name, next: tp.next, send: func(l string) error {
		_, err := io.WriteString(tp.in, l+"\n")
		return err
	}}
}

// factsVia runs `session` through a typist and returns the facts.
func factsVia(t *testing.T, ty *typist) map[string]string {
	t.Helper()
	if err := ty.send("session"); err != nil {
		t.Fatal(err)
	}
	f := map[string]string{}
	for {
		l, err := ty.next()
		if err != nil {
			t.Fatalf("%s: session: %v", ty.name, err)
		}
		if k, v, ok := strings.Cut(l, ": "); ok {
			f[k] = v
		}
		if strings.HasPrefix(l, "client_ip:") {
			return f
		}
	}
}

// loginVia logs a typist in to the demo game.
func loginVia(t *testing.T, ty *typist) {
	t.Helper()
	for {
		l, err := ty.next()
		if err != nil {
			t.Fatalf("%s: %v", ty.name, err)
		}
		if strings.Contains(l, "What is your name?") {
			break
		}
	}
	ty.send(ty.name)
	for {
		l, err := ty.next()
		if err != nil {
			t.Fatalf("%s: %v", ty.name, err)
		}
		if strings.HasPrefix(l, "Welcome, "+ty.name) {
			return
		}
	}
}

func negotiations(events []string) int {
	n := 0
	for _, e := range events {
		for _, v := range []string{"WILL ", "WONT ", "DO ", "DONT "} {
			if strings.HasPrefix(e, v) {
				n++
			}
		}
	}
	return n
}

// TestUpgrade upgrades the gateway to a binary of another version while
// four players type: a MUD client with NAWS, MTTS, GMCP and MCCP2, Debian's
// telnet, a player over TLS and a raw socket. Nobody is disconnected or
// told anything, every line is answered once and in order, the client
// sees no negotiation and its compressed stream goes on, the sessions keep
// their ids and resume counts, and the game sees no one leave or arrive.
func TestUpgrade(t *testing.T) {
	next := nextBuild(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeCert(t, certFile, keyFile, 1)
	// systemd's side of it: readiness, and the main process changing.
	notify := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	u := startUpgradable(t, []string{"NOTIFY_SOCKET=" + notify}, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	tlsAddr := u.gw.waitLog("gateway: telnet over TLS listening", 1)["addr"].(string)
	be := u.startBackend()
	oldPID, oldVersion := u.health()
	if oldVersion != "dev" {
		t.Fatalf("the first gateway says version %q", oldVersion)
	}

	m := dialMUD(t, u.telnet, telnet.OptTTYPE, telnet.OptNAWS, telnet.OptGMCP, telnet.OptMCCP2, telnet.OptEOR)
	m.send([]byte("\xff\xfa\xc9Core.Hello {\"client\":\"test\",\"version\":\"1\"}\xff\xf0"))
	mud := mudTypist("Mud", m)
	tel := startTelnet(t, u.telnet).typist("Tess")
	tc, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	tl := lineTypist("Tls", tc, bufio.NewReader(telnet.Strip(tc)))
	raw := dial(t, u.telnet, "Raw")
	rw := lineTypist("Raw", raw.conn, raw.r)
	typists := []*typist{mud, tel, tl, rw}
	before := map[string]map[string]string{}
	for _, ty := range typists {
		loginVia(t, ty)
		before[ty.name] = factsVia(t, ty)
	}
	if !m.compressed || before["Mud"]["mtts"] != "15" || before["Mud"]["width"] != "80" {
		t.Fatalf("the MUD client before the upgrade: compressed %v, %v", m.compressed, before["Mud"])
	}
	negotiated := negotiations(m.events)

	stop := make(chan struct{})
	done := make(chan *typist, len(typists))
	for _, ty := range typists {
		go ty.run(stop, done)
	}
	waitTyped := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for _, ty := range typists {
			for ty.answered.Load() < n && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond) // the typists count; nothing to wait on
			}
		}
	}
	waitTyped(5)
	copyFile(t, next, u.path) // the operator installs the new binary
	out := runTool(t, "gateway", "upgrade", "-control", u.control)
	if !strings.Contains(out, "version "+nextVersion) || !strings.Contains(out, "4 sessions moved") {
		t.Errorf("gateway upgrade printed %q", out)
	}
	newPID, newVersion := u.health()
	killOnCleanup(t, newPID)
	if newPID == oldPID || newVersion != nextVersion {
		t.Errorf("after the upgrade /healthz says pid %d version %q (before: %d)", newPID, newVersion, oldPID)
	}
	var said []string
	buf := make([]byte, 512)
	for len(said) < 2 {
		nc.SetReadDeadline(time.Now().Add(waitFor))
		n, err := nc.Read(buf)
		if err != nil {
			t.Fatalf("systemd was told %q, then: %v", said, err)
		}
		said = append(said, string(buf[:n]))
	}
	if want := []string{"READY=1", fmt.Sprintf("MAINPID=%d\nREADY=1", newPID)}; strings.Join(said, "|") != strings.Join(want, "|") {
		t.Errorf("systemd was told %q, want %q", said, want)
	}
	start := map[string]int64{}
	for _, ty := range typists {
		start[ty.name] = ty.answered.Load()
	}
	waitTyped(start["Mud"] + 10)
	close(stop)
	for range typists {
		ty := <-done
		if ty.problem != "" {
			t.Errorf("%s: %s (after %d lines)", ty.name, ty.problem, ty.answered.Load())
		}
		if ty.answered.Load() <= start[ty.name] {
			t.Errorf("%s typed nothing after the upgrade (%d lines)", ty.name, ty.answered.Load())
		}
	}
	for _, ty := range typists {
		after := factsVia(t, ty)
		for _, k := range []string{"id", "resumed", "terminal", "mtts", "width", "height", "client_ip"} {
			if after[k] != before[ty.name][k] {
				t.Errorf("%s: session %s was %q, is %q after the upgrade", ty.name, k, before[ty.name][k], after[k])
			}
		}
	}
	if n := negotiations(m.events); n != negotiated || !m.compressed {
		t.Errorf("the MUD client saw %d negotiations after the upgrade (compressed %v): %v", n-negotiated, m.compressed, m.events)
	}
	if n := be.count("talker: new player"); n != 4 {
		t.Errorf("the game met %d new players, want 4", n)
	}
	if n := be.count("talker: player left"); n != 0 {
		t.Errorf("the game saw %d players leave", n)
	}
	// The new gateway holds the TLS player through the old process,
	// which stays only to relay it, and exits when it leaves.
	if got := runTool(t, "gateway", "sessions", "-control", u.control); !strings.Contains(got, "4 sessions") || !strings.Contains(got, "telnet+tls") {
		t.Errorf("gateway sessions after the upgrade:\n%s", got)
	}
	u.gw.waitLog("gateway: relaying players for the new gateway until they leave", 1)
	select {
	case <-u.gw.exited:
		t.Fatal("the old gateway exited with a TLS player to relay")
	default:
	}
	tl.send("quit")
	for {
		l, err := tl.next()
		if err != nil {
			t.Fatalf("the TLS player, quitting: %v", err)
		}
		if strings.HasPrefix(l, "Goodbye, Tls.") {
			break
		}
	}
	select {
	case <-u.gw.exited:
	case <-time.After(waitFor):
		t.Error("the old gateway did not exit once its last TLS player left")
	}
}

// TestUpgradeBackendStopped: an upgrade while the backend is stopped
// (SIGSTOP: it answers nothing, its link still up) and the player's
// stream is parked. The move gives up on the backend after its wait and
// the upgrade completes, before the link's keepalive gives up on the
// backend; once the backend runs again the player's session resumes on
// the new process, logged in.
func TestUpgradeBackendStopped(t *testing.T) {
	next := nextBuild(t)
	u := startUpgradable(t, nil)
	be := u.startBackend()
	p := dial(t, u.telnet, "Sleepy")
	p.login()
	waitParked(t, u.admin)
	if scrape(t, u.admin)[`holdfast_streams{state="parked"}`] == 0 {
		t.Fatal("the idle player's stream was not parked")
	}
	be.kill(syscall.SIGSTOP)
	t.Cleanup(func() { be.kill(syscall.SIGCONT) })

	copyFile(t, next, u.path)
	out := runTool(t, "gateway", "upgrade", "-control", u.control)
	if !strings.Contains(out, "version "+nextVersion) || !strings.Contains(out, "1 sessions moved") {
		t.Errorf("gateway upgrade printed %q", out)
	}
	newPID, _ := u.health()
	killOnCleanup(t, newPID)
	if n := u.gw.count("link: the peer has said nothing, nor taken in what was sent; closing the link") +
		u.gw.count("link: the peer takes in what is sent but has said nothing, nor answered a ping; closing the link"); n != 0 {
		t.Errorf("the upgrade waited for the link to the stopped backend to be closed (%d)", n)
	}
	be.kill(syscall.SIGCONT)
	p.send("echo still here")
	p.expect("echo: still here")
	if got := p.facts()["resumed"]; got == "0" {
		t.Errorf("the session was not resumed on the new process: resumed %q", got)
	}
}

// TestUpgradeFailsSafe tries upgrades that cannot work: a binary that
// exits 1, a configuration that has gone bad, a binary that never becomes
// ready, and a second upgrade while one runs. Each time the command says
// why and exits non-zero, and the old gateway serves on: a typist notices
// nothing. Then SIGUSR2 upgrades for real.
func TestUpgradeFailsSafe(t *testing.T) {
	next := nextBuild(t)
	conf := filepath.Join(t.TempDir(), "gateway.conf")
	if err := os.WriteFile(conf, []byte("idle-timeout = 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := startUpgradable(t, nil, "-config", conf, "-upgrade-timeout", "2s")
	u.startBackend()
	pid, _ := u.health()
	raw := dial(t, u.telnet, "Raw")
	ty := lineTypist("Raw", raw.conn, raw.r)
	loginVia(t, ty)
	stop := make(chan struct{})
	done := make(chan *typist, 1)
	go ty.run(stop, done)

	good, err := os.ReadFile(u.path)
	if err != nil {
		t.Fatal(err)
	}
	install := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(u.path+".new", b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(u.path+".new", u.path); err != nil {
			t.Fatal(err)
		}
	}
	upgrade := func() (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "gateway"), "upgrade", "-control", u.control)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		name  string
		setup func()
		want  string
	}{
		{"a binary that exits 1", func() { install([]byte("#!/bin/sh\nexit 1\n")) }, "the new gateway exited before it was ready: exit status 1"},
		{"a bad configuration", func() {
			install(good)
			os.WriteFile(conf, []byte("idle-timeout = soon\n"), 0o600)
		}, `the new gateway refused to start: configuration: ` + conf + `:1: idle-timeout: invalid value "soon"`},
		{"a binary that never becomes ready", func() {
			os.WriteFile(conf, []byte("idle-timeout = 0\n"), 0o600)
			install([]byte("#!/bin/sh\nexec sleep 60\n"))
		}, "the new gateway was not ready within 2s"},
	} {
		tc.setup()
		out, err := upgrade()
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: gateway upgrade: %v\n%s\nwant it to fail saying %q", tc.name, err, out, tc.want)
		}
		if p, _ := u.health(); p != pid {
			t.Errorf("%s: another process (%d) serves", tc.name, p)
		}
	}

	// Two at once: the second is refused while the first waits.
	first := make(chan string, 1)
	go func() { out, _ := upgrade(); first <- out }()
	u.gw.waitLog("gateway: upgrade starting", 4)
	if out, err := upgrade(); err == nil || !strings.Contains(out, "an upgrade is already under way") {
		t.Errorf("a second upgrade at once: %v\n%s", err, out)
	}
	<-first

	close(stop)
	if ty := <-done; ty.problem != "" {
		t.Errorf("the typist, through the failed upgrades: %s", ty.problem)
	}

	// SIGUSR2 upgrades for real.
	copyFile(t, next, u.path)
	u.gw.kill(syscall.SIGUSR2)
	u.gw.waitLog("gateway: took over", 1)
	newPID, version := u.health()
	killOnCleanup(t, newPID)
	if newPID == pid || version != nextVersion {
		t.Errorf("after SIGUSR2: pid %d (was %d), version %q", newPID, pid, version)
	}
	ty.send("echo after")
	for {
		l, err := ty.next()
		if err != nil {
			t.Fatalf("after SIGUSR2: %v", err)
		}
		if l == "echo: after" {
			break
		}
	}
}

// TestGatewayKilled: a gateway that dies without an upgrade does not come
// back for its sessions; the game sees its players leave once the orphan
// timeout has passed, not at once and not never.
func TestGatewayKilled(t *testing.T) {
	sys := startSystem(t)
	n := sys.gw.count("gateway: backend linked")
	be := start(t, "backend", sys.env(), "-cookie-file", sys.cookie, "-orphan-timeout", "1s")
	sys.gw.waitLog("gateway: backend linked", n+1)
	p := dial(t, sys.telnet, "Ada")
	p.login()
	id := p.facts()["id"]
	sys.gw.kill(syscall.SIGKILL)
	killed := time.Now()
	be.waitLogged("talker: player left", "session", id)
	if d := time.Since(killed); d < time.Second {
		t.Errorf("the game saw the player leave %v after the gateway died, before the orphan timeout", d)
	}
	be.waitLogged("backend: session not claimed by a gateway in time; the player has gone", "session", id)
}
