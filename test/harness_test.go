package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"holdfast/gateway/telnet"
)

// binDir holds the binaries built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	if addr := os.Getenv("HOLDFAST_PROBE_ADDR"); addr != "" {
		runProbe(addr) // this binary runs as another host's client
	}
	if spec := os.Getenv("HOLDFAST_RELAY"); spec != "" {
		runRelay(spec) // this binary runs as a relay on the link
	}
	dir, err := os.MkdirTemp("", "holdfast-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	args := []string{"build", "-o", dir}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "holdfast/cmd/...", "holdfast/examples/...")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		os.Exit(2)
	}
	binDir = dir
	// Race-enabled binaries otherwise sleep a second on exit.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const waitFor = 20 * time.Second

// proc is a running binary whose JSON log lines the test can wait on.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	lines  []map[string]any
	raw    []string
	more   chan struct{} // closed and replaced when a line arrives
	exited chan struct{} // closed when the process has exited
	done   chan struct{} // closed when its output has ended: it, and any successor it started, exited
}

// start runs one of the project's binaries.
func start(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	if name == "gateway" && !slices.Contains(args, "-config") {
		// Tests run many gateways at once and open many sessions from
		// loopback: a free admin port, a control socket of its own, and
		// no per-address limits unless a
		// test sets them (a later flag wins; a config file says it all).
		args = append([]string{"-metrics", "127.0.0.1:0", "-control", filepath.Join(t.TempDir(), "gateway.sock"),
			"-max-per-ip", "0", "-conn-rate", "0", "-debug-addr", "127.0.0.1:0"}, args...)
	}
	return startPath(t, filepath.Join(binDir, name), env, args...)
}

// startPath runs any program, its output captured like the project's.
func startPath(t testing.TB, path string, env []string, args ...string) *proc {
	t.Helper()
	name := filepath.Base(path)
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	// A pipe of the test's own rather than StderrPipe, whose reading ends
	// when the process exits: a gateway's successor writes to it after.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, more: make(chan struct{}), exited: make(chan struct{}), done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	go p.scan(r)
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		p.wait()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s log:\n%s", name, strings.Join(p.raw, "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

func (p *proc) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		json.Unmarshal(sc.Bytes(), &m)
		p.mu.Lock()
		p.raw = append(p.raw, sc.Text())
		if m != nil {
			p.lines = append(p.lines, m)
		}
		close(p.more)
		p.more = make(chan struct{})
		p.mu.Unlock()
	}
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
	<-p.exited
	close(p.done)
}

// waitLog waits for the n-th log line (counting from 1) whose message is msg.
func (p *proc) waitLog(msg string, n int) map[string]any {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		p.mu.Lock()
		seen := 0
		for _, m := range p.lines {
			if m["msg"] == msg {
				if seen++; seen == n {
					p.mu.Unlock()
					return m
				}
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.done:
			p.t.Fatalf("%s exited before logging %q", p.name, msg)
		case <-deadline:
			p.t.Fatalf("%s did not log %q (#%d) within %v", p.name, msg, n, waitFor)
		}
	}
}

// first returns the first log line whose message is msg, or nil.
func (p *proc) first(msg string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.lines {
		if m["msg"] == msg {
			return m
		}
	}
	return nil
}

// count returns how many log lines have message msg.
func (p *proc) count(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.lines {
		if m["msg"] == msg {
			n++
		}
	}
	return n
}

func (p *proc) kill(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

func (p *proc) wait() {
	select {
	case <-p.done:
	case <-time.After(waitFor):
		p.t.Errorf("%s did not exit", p.name)
	}
}

// system is a gateway with its embedded registry and a cookie file.
type system struct {
	t        *testing.T
	cookie   string
	gw       *proc
	telnet   string // the gateway's player address
	admin    string // the gateway's -metrics address
	control  string // the gateway's control socket
	epmdPort int
	backends []*proc // every backend startBackend started
}

func writeCookie(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cookie")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSystem starts a gateway that embeds the registry on a free port,
// with extra gateway flags.
func startSystem(t *testing.T, flags ...string) *system {
	t.Helper()
	s := &system{t: t, cookie: writeCookie(t, "test-cookie")}
	args := append([]string{"-listen", "127.0.0.1:0", "-epmd-port", "0", "-cookie-file", s.cookie}, flags...)
	s.gw = start(t, "gateway", nil, args...)
	reg := s.gw.waitLog("gateway: registry listening", 1)
	s.epmdPort = int(reg["port"].(float64))
	s.admin = s.gw.waitLog("gateway: admin listening", 1)["addr"].(string)
	s.control = s.gw.waitLog("gateway: control listening", 1)["path"].(string)
	s.telnet = s.gw.waitLog("gateway: telnet listening", 1)["addr"].(string)
	return s
}

// startSystemOn starts a gateway for a registry on epmdPort, with extra
// gateway flags.
func startSystemOn(t *testing.T, epmdPort int, flags ...string) *system {
	t.Helper()
	s := &system{t: t, cookie: writeCookie(t, "test-cookie"), epmdPort: epmdPort}
	args := append([]string{"-listen", "127.0.0.1:0", "-cookie-file", s.cookie}, flags...)
	s.gw = start(t, "gateway", s.env(), args...)
	s.telnet = s.gw.waitLog("gateway: telnet listening", 1)["addr"].(string)
	return s
}

func (s *system) env() []string { return []string{"ERL_EPMD_PORT=" + strconv.Itoa(s.epmdPort)} }

// startBackend starts the demo backend and waits until the gateway has
// linked to it.
func (s *system) startBackend() *proc {
	s.t.Helper()
	n := s.gw.count("gateway: backend linked")
	b := start(s.t, "backend", s.env(), "-cookie-file", s.cookie)
	s.backends = append(s.backends, b)
	s.gw.waitLog("gateway: backend linked", n+1)
	return b
}

// player is a raw TCP telnet client that reads line by line.
type player struct {
	t    testing.TB
	name string
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr, name string) *player {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &player{t: t, name: name, conn: c, r: bufio.NewReader(telnet.Strip(c))}
}

func (p *player) send(line string) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := io.WriteString(p.conn, line+"\r\n"); err != nil {
		p.t.Fatalf("%s: send %q: %v", p.name, line, err)
	}
}

// next returns the next line without its line ending. A closed socket fails
// the test: a player must never be disconnected.
func (p *player) next() string {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	line, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("%s: read: %v (partial %q)", p.name, err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

// until reads lines until one satisfies ok and returns the lines read,
// that one included.
func (p *player) until(ok func(string) bool) []string {
	p.t.Helper()
	var seen []string
	for {
		l := p.next()
		seen = append(seen, l)
		if ok(l) {
			return seen
		}
	}
}

func (p *player) expect(prefix string) string {
	p.t.Helper()
	lines := p.until(func(l string) bool { return strings.HasPrefix(l, prefix) })
	return lines[len(lines)-1]
}

func (p *player) login() {
	p.t.Helper()
	p.expect("What is your name?")
	p.send(p.name)
	p.expect("Welcome, " + p.name + ".")
}

// facts runs the demo's session command and returns its key: value lines.
func (p *player) facts() map[string]string {
	p.t.Helper()
	p.send("session")
	lines := []string{p.expect("id: ")}
	lines = append(lines, p.until(func(l string) bool { return strings.HasPrefix(l, "client_ip:") })...)
	f := map[string]string{}
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, ": "); ok {
			f[k] = v
		}
		if k, ok := strings.CutSuffix(l, ":"); ok {
			f[k] = ""
		}
	}
	return f
}

// waitLogged waits for a log line with message msg and key set to value.
func (p *proc) waitLogged(msg, key, value string) {
	p.t.Helper()
	deadline := time.After(waitFor)
	for {
		// The check and the channel that announces the next line are taken
		// under one lock: a line logged between them would otherwise wake
		// nobody.
		ok, more := p.loggedOrNext(msg, key, value)
		if ok {
			return
		}
		select {
		case <-more:
		case <-p.done:
			if ok, _ := p.loggedOrNext(msg, key, value); !ok {
				p.t.Fatalf("%s exited before logging %q with %s=%q", p.name, msg, key, value)
			}
			return
		case <-deadline:
			p.t.Fatalf("%s did not log %q with %s=%q within %v", p.name, msg, key, value, waitFor)
		}
	}
}

// logged reports whether a log line with message msg has key set to value.
func (p *proc) logged(msg, key, value string) bool {
	ok, _ := p.loggedOrNext(msg, key, value)
	return ok
}

// loggedOrNext reports whether a log line with message msg has key set to
// value and, if not, returns the channel closed when the next line arrives.
func (p *proc) loggedOrNext(msg, key, value string) (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.lines {
		if m["msg"] == msg && m[key] == value {
			return true, nil
		}
	}
	return false, p.more
}

// expectClosed reads until the gateway closes the connection.
func (p *player) expectClosed() {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(waitFor))
	rest, err := io.ReadAll(p.r)
	if err != nil {
		p.t.Fatalf("%s: waiting for the gateway to close: %v (read %q)", p.name, err, rest)
	}
}

// lastField returns key of the last log line with message msg.
func (p *proc) lastField(msg, key string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.lines) - 1; i >= 0; i-- {
		if p.lines[i]["msg"] == msg {
			s, _ := p.lines[i][key].(string)
			return s
		}
	}
	return ""
}

// who runs `who` until it lists want. Right after a restart the new backend
// may not have taken every resumed session yet, so a first answer can be
// short; the list must become complete.
func (p *player) who(want string) {
	p.t.Helper()
	p.whoUntil(fmt.Sprintf("%q", "online: "+want), func(got string) bool { return got == "online: "+want })
}

// whoUntil runs `who` until its answer is one that ok accepts, described
// by want when it fails.
func (p *player) whoUntil(want string, ok func(online string) bool) {
	p.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		p.send("who")
		got := p.expect("online: ")
		if ok(got) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: who says %q, want %s", p.name, got, want)
		}
	}
}

// diagnosis says how the system looks, for a test that waited in vain:
// what the gateway and the backends have logged, message by message, and
// the gateway's goroutines that wait in the same place, grouped.
func (s *system) diagnosis() string {
	var b strings.Builder
	for _, p := range append([]*proc{s.gw}, s.backends...) {
		fmt.Fprintf(&b, "%s logged: %s\n", p.name, p.tally())
	}
	debug := s.gw.first("gateway: debug listening")
	if debug == nil {
		return b.String()
	}
	c := http.Client{Timeout: 5 * time.Second}
	if dir := os.Getenv("GOROUTINE_DUMPS"); dir != "" {
		// Every goroutine's whole stack, for a stall one goroutine makes.
		if resp, err := c.Get(fmt.Sprintf("http://%v/debug/pprof/goroutine?debug=2", debug["addr"])); err == nil {
			f, err := os.CreateTemp(dir, "gateway-goroutines-*.txt")
			if err == nil {
				io.Copy(f, resp.Body)
				f.Close()
				fmt.Fprintf(&b, "gateway goroutines: %s\n", f.Name())
			}
			resp.Body.Close()
		}
	}
	resp, err := c.Get(fmt.Sprintf("http://%v/debug/pprof/goroutine?debug=1", debug["addr"]))
	if err != nil {
		fmt.Fprintf(&b, "gateway goroutines: %v\n", err)
		return b.String()
	}
	defer resp.Body.Close()
	prof, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	b.WriteString("gateway goroutines, groups of 3 or more:\n")
	for _, group := range strings.Split(string(prof), "\n\n") {
		lines := strings.Split(group, "\n")
		count, _, _ := strings.Cut(lines[0], " @ ")
		if n, err := strconv.Atoi(count); err != nil || n < 3 {
			continue
		}
		var funcs []string
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "#" && len(funcs) < 6 {
				funcs = append(funcs, f[2])
			}
		}
		fmt.Fprintf(&b, "  %s: %s\n", count, strings.Join(funcs, " < "))
	}
	return b.String()
}

// tally counts the log lines by message, most first.
func (p *proc) tally() string {
	p.mu.Lock()
	counts := map[string]int{}
	for _, m := range p.lines {
		if msg, ok := m["msg"].(string); ok {
			counts[msg]++
		}
	}
	p.mu.Unlock()
	msgs := slices.Collect(maps.Keys(counts))
	slices.SortFunc(msgs, func(a, b string) int { return counts[b] - counts[a] })
	var parts []string
	for _, m := range msgs {
		parts = append(parts, fmt.Sprintf("%q %d", m, counts[m]))
	}
	return strings.Join(parts, ", ")
}
